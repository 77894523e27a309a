"""Generate tab through gradio_client on the real app: images non-blank at the right sizes, the
same seed the same pixels as the Python API, one feature card and one statistics row per level,
every picture inline (nothing for the default client to download), bad parameters refused with a
clear message while the server keeps serving, every endpoint, and 20 simultaneous requests that
all come back right."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

import msgen
from msgen.zoo import serving_form
from msgen import render
from tests.conftest import pixels

GOOD = dict(model="tiny32", scale=32, seed=5, truncation=1.0, mix_seed=1, mix_level=0)


@pytest.fixture(scope="module")
def client(app_server) -> Client:
    return Client(app_server[0], verbose=False)


def generate(client: Client, **kw):
    args = GOOD | kw
    return client.predict(*args.values(), api_name="/generate")


def expected(weights, name: str, seed: int, scale: int, **kw) -> np.ndarray:
    # the Python API on the model in the form the server runs it (msgen.zoo.serving_form)
    out = msgen.generate(serving_form(msgen.load(weights / name)), seed=seed, scale=scale, **kw)
    return render.to_uint8(out.images[scale][0])


@pytest.mark.parametrize("model, scale", [("tiny32", 32), ("tiny32", 8), ("tiny16", 16), ("tinyvae16", 16)])
def test_images_are_non_blank_at_the_right_sizes(client, model, scale):
    image, cards, stats, info = generate(client, model=model, scale=scale, seed=11)
    img = pixels(image)
    assert img.shape == (scale, scale, 3) and img.std() > 1
    levels = [lvl for lvl in (4, 8, 16, 32) if lvl <= scale]
    assert image.startswith("data:image/webp;base64,")
    assert [c["caption"].split(":")[0] for c in cards] == [f"{lvl}x{lvl}" for lvl in levels]
    assert [c["level"] for c in cards] == levels
    for card, lvl in zip(cards, levels):
        tile = max(lvl, render.MIN_TILE)
        assert pixels(card["image"]).shape == (3 * tile + 2, 3 * tile + 2, 3)
    assert [row[0] for row in stats["data"]] == levels and stats["headers"][:3] == ["level", "channels", "size"]
    assert f"{scale}x{scale} from seed 11" in info


def test_same_seed_same_pixels_as_the_python_api(client, tiny_weights):
    a = pixels(generate(client, model="tinyvae16", scale=16, seed=77)[0])
    assert np.array_equal(a, expected(tiny_weights, "tinyvae16", 77, 16))
    assert np.array_equal(a, pixels(generate(client, model="tinyvae16", scale=16, seed=77)[0]))
    assert not np.array_equal(a, pixels(generate(client, model="tinyvae16", scale=16, seed=78)[0]))
    mixed = pixels(generate(client, model="tinyvae16", scale=16, seed=77, mix_seed=78, mix_level=8)[0])
    assert np.array_equal(mixed, expected(tiny_weights, "tinyvae16", 77, 16, mix_seed=78, mix_level=8))


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(model="no-such-model"), "unknown model 'no-such-model'"),
        (dict(seed=-1), "seed must be a whole number from 0 to 4294967295, got -1"),
        (dict(seed=2**32), "seed must be a whole number from 0 to 4294967295, got 4294967296"),
        (dict(seed="seven"), "seed must be a whole number"),
        (dict(scale=64), "scale must be one of this model's levels [4, 8, 16, 32], got 64"),
        (dict(scale=5), "scale must be one of this model's levels"),
        (dict(truncation=3), "truncation must be a number from 0 to 2, got 3"),
        (dict(truncation=-0.5), "truncation must be a number from 0 to 2"),
        (dict(mix_level=7), "mix level must be one of this model's levels"),
    ],
)
def test_bad_parameters_get_a_clear_error_and_the_server_keeps_serving(client, kw, message):
    with pytest.raises(Exception) as err:
        generate(client, **kw)
    text = str(err.value)
    assert message in text and "Traceback" not in text and 'File "' not in text
    assert pixels(generate(client)[0]).shape == (32, 32, 3)


def test_the_default_client_downloads_nothing_for_generate(client, monkeypatch):
    """gradio_client fetches every file in a response one request at a time: /generate has none."""
    from gradio_client.client import Endpoint

    fetched = []
    real = Endpoint._download_file
    monkeypatch.setattr(Endpoint, "_download_file", lambda self, x: (fetched.append(x), real(self, x))[1])
    image, cards, _, _ = generate(client, seed=123)
    assert fetched == [] and pixels(image).shape == (32, 32, 3) and len(cards) == 4
    tiles = client.predict("tiny16", 16, 3, 1.0, 2, api_name="/grid")  # the grid still sends files
    assert len(fetched) == 2 and all(pixels(t["image"]).shape == (16, 16, 3) for t in tiles)


def test_channel_grid_walk_models_and_random_seed_endpoints(client):
    ch = client.predict("tiny32", 32, 5, 1.0, 1, 0, 16, 3, True, api_name="/channel")
    assert pixels(ch).shape == (16, 16, 3)
    with pytest.raises(Exception, match="channel must be a whole number from 0 to 15"):
        client.predict("tiny32", 32, 5, 1.0, 1, 0, 16, 99, True, api_name="/channel")
    tiles = client.predict("tinyvae16", 16, 3, 1.0, 6, api_name="/grid")
    assert [t["caption"] for t in tiles] == [f"seed {s}" for s in range(3, 9)]
    assert all(pixels(t["image"]).shape == (16, 16, 3) for t in tiles)
    gif = client.predict("tinyvae16", 16, 3, 4, 1.0, 6, api_name="/walk")
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 10
    listed = client.predict(api_name="/models")
    shipped = {m["name"]: m["levels"] for m in listed if m["source"] == "shipped"}  # runs of other tests may follow
    assert shipped == {"tiny16": [4, 8, 16], "tiny32": [4, 8, 16, 32], "tinyvae16": [4, 8, 16]}
    assert 0 <= client.predict(api_name="/random_seed") <= 2**32 - 1


def test_twenty_simultaneous_requests_all_succeed_with_correct_images(client, tiny_weights):
    jobs = [(("tinyvae16", 16) if i % 2 else ("tiny32", 32)) + (1000 + i,) for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(generate, client, model=m, scale=s, seed=seed) for m, s, seed in jobs]
        results = [f.result(timeout=120) for f in futures]
    models = {name: serving_form(msgen.load(tiny_weights / name)) for name in ("tiny32", "tinyvae16")}
    for (model, scale, seed), (image, cards, stats, info) in zip(jobs, results):
        want = render.to_uint8(msgen.generate(models[model], seed=seed, scale=scale).images[scale][0])
        assert np.array_equal(pixels(image), want), (model, seed)
        assert len(cards) == len(stats["data"]) == (4 if model == "tiny32" else 3)
        assert f"from seed {seed}" in info
