"""Decompose tab: its pure handlers, and the flow through gradio_client on a real server."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from msgen.ui import common, decompose
from tests.conftest import FIXTURES

IMAGES = sorted((FIXTURES / "images").iterdir())
NOT_AN_IMAGE = FIXTURES / "broken" / "page.png"


@pytest.fixture
def ctx(tmp_path, tiny_weights):
    return common.AppContext(runs_dir=tmp_path / "runs", weights_dir=tiny_weights)


def test_only_hvae_models_are_offered(ctx):
    assert [name for _label, name in decompose.model_choices(ctx, None)] == ["tinyvae16"]
    assert decompose.level_choices((4, 8, 16, 32)) == [("8x8", 8), ("16x16", 16), ("32x32", 32)]
    assert decompose.default_level((4, 8, 16, 32, 64)) == 16


def test_decompose_shows_every_level(ctx, tmp_path, monkeypatch):
    recon, latents, rows = decompose.decompose(ctx, "tinyvae16", str(IMAGES[0]))
    assert [c for _img, c in recon] == ["input (16x16)", "4x4", "8x8", "16x16"]
    assert [c.split(":")[0] for _img, c in latents] == ["4x4", "8x8", "16x16"]
    assert all("nats" in c for _img, c in latents)
    assert all(isinstance(img, Image.Image) and img.width >= decompose.TILE for img, _c in recon)
    assert [r[0] for r in rows] == ["4x4", "8x8", "16x16"] and all(r[2] >= 0 for r in rows)
    # A FileData dict of a file in gradio's upload cache (what gradio hands over with
    # preprocess=False), a PIL image and bytes work alike; a dict naming any other path does not.
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    cached = tmp_path / "gradio" / "abc123" / IMAGES[0].name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(IMAGES[0].read_bytes())
    again = decompose.decompose(ctx, "tinyvae16", {"path": str(cached), "orig_name": IMAGES[0].name})[2]
    assert again == rows
    with pytest.raises(gr.Error, match="not uploaded to this page"):
        decompose.decompose(ctx, "tinyvae16", {"path": str(IMAGES[0]), "orig_name": IMAGES[0].name})
    assert decompose.decompose(ctx, "tinyvae16", Image.open(IMAGES[1]))[2][0][0] == "4x4"
    assert decompose.decompose(ctx, "tinyvae16", IMAGES[1].read_bytes())[2][0][0] == "4x4"


@pytest.mark.parametrize("mode", list(decompose.MODES))
def test_resample_gallery(ctx, mode):
    out = decompose.resample(ctx, "tinyvae16", str(IMAGES[2]), "crop", mode, 8, 5, 0.8, 3)
    assert [c for _img, c in out][1:] == ["seed 5", "seed 6", "seed 7"]
    assert out[0][1].startswith("reconstruction")
    same = decompose.resample(ctx, "tinyvae16", str(IMAGES[2]), "crop", mode, 8, 5, 0.8, 3)
    assert [a.tobytes() for a, _ in out] == [b.tobytes() for b, _ in same]  # a seed is one picture


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c: decompose.decompose(c, "tinyvae16", str(NOT_AN_IMAGE)), "Not a usable image"),
        (lambda c: decompose.decompose(c, "tinyvae16", None), "Upload an image"),
        (lambda c: decompose.decompose(c, "tiny16", str(IMAGES[0])), "msggan model, which has no encoder"),
        (lambda c: decompose.decompose(c, "nope", str(IMAGES[0])), "unknown model"),
        (lambda c: decompose.decompose(c, None, str(IMAGES[0])), "Pick a model that can encode pictures"),
        (lambda c: decompose.resample(c, "tinyvae16", str(IMAGES[0]), "crop", "detail", 6), "split level"),
        (lambda c: decompose.resample(c, "tinyvae16", str(IMAGES[0]), "crop", "sideways", 8), "mode must be"),
        (lambda c: decompose.resample(c, "tinyvae16", str(IMAGES[0]), "crop", "detail", 8, 0, 0.8, 99), "variants"),
        (lambda c: decompose.resample(c, "tinyvae16", str(IMAGES[0]), "crop", "detail", 8, 0, 5.0), "temperature"),
        (lambda c: decompose.resample(c, "tinyvae16", str(IMAGES[0]), "crop", "detail", 8, -1), "seed"),
    ],
)
def test_bad_input_is_one_clear_error(ctx, call, message):
    with pytest.raises(gr.Error, match=message):
        call(ctx)


def test_without_an_hvae_model_the_tab_says_how_to_train_one(tmp_path):
    from msgen.ui.common import AppContext

    ctx = AppContext(runs_dir=tmp_path / "runs", weights_dir=tmp_path / "empty")
    assert decompose.model_choices(ctx, None) == []
    with pytest.raises(gr.Error, match="train one in the Train tab"):
        decompose.decompose(ctx, None, str(IMAGES[0]))
    with gr.Blocks() as demo:
        ctx.owner = gr.BrowserState(None)
        decompose.build(ctx)
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert by_id["decompose-notice"].visible and "--family hvae" in by_id["decompose-notice"].value
    assert not by_id["decompose-main"].visible


def path_of(item) -> str:
    image = item["image"]
    return image if isinstance(image, str) else image["path"]


# --- real server ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(app_server):
    url, _demo = app_server
    return Client(url, verbose=False)


def test_decompose_flow_through_gradio_client(client):
    model, notice, *_ = client.predict(None, None, api_name="/decompose_models")
    assert [c[1] for c in model["choices"]] == ["tinyvae16"] and model["value"] == "tinyvae16"
    recon, latents, table = client.predict("tinyvae16", handle_file(str(IMAGES[3])), "crop", None,
                                           api_name="/decompose")
    assert [item["caption"] for item in recon] == ["input (16x16)", "4x4", "8x8", "16x16"]
    assert all(Path(path_of(item)).is_file() for item in recon + latents)
    assert [row[0] for row in table["data"]] == ["4x4", "8x8", "16x16"]
    for mode in decompose.MODES:
        variants = client.predict("tinyvae16", handle_file(str(IMAGES[3])), "crop", mode, 8, 11, 0.7, 4, None,
                                  api_name="/decompose_resample")
        assert [v["caption"] for v in variants][1:] == ["seed 11", "seed 12", "seed 13", "seed 14"]


def test_bad_input_through_gradio_client(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Not a usable image"):
        client.predict("tinyvae16", handle_file(str(NOT_AN_IMAGE)), "crop", None, api_name="/decompose")
    with pytest.raises(AppError, match="no encoder"):
        client.predict("tiny16", handle_file(str(IMAGES[0])), "crop", None, api_name="/decompose")
