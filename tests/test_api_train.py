"""The Train tab as a script meets it, through gradio_client on a real shared-mode server: start a
run from files in one call, follow it and stop another by name from fresh Clients, own runs only."""

from __future__ import annotations

import base64
import io
import time

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.conftest import FIXTURES, serve_app

IMAGES = sorted((FIXTURES / "images").iterdir())


@pytest.fixture(scope="module")
def url(tiny_weights, tmp_path_factory):
    url, demo = serve_app(tmp_path_factory.mktemp("api-runs"), shared=True, weights_dir=tiny_weights)
    yield url
    demo.close()


def follow(c: Client, run: str, owner: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = c.predict(run, owner, api_name="/train_status")
        if not status["active"]:
            return status
        time.sleep(0.3)
    raise AssertionError(f"{run} did not finish: {status}")


def test_a_script_starts_follows_and_stops_runs_by_name(url):
    first = Client(url, verbose=False)
    files = [handle_file(str(p)) for p in IMAGES]
    status = first.predict(files, "model:tiny16", steps=12, batch=4, preview_every=4, name="scripted",
                           api_name="/train")
    run, owner = status["run"], status["owner"]
    assert run == "scripted" and owner and status["state"] in ("queued", "running") and status["total"] == 12

    # A second script that never saw the first one's session follows the run to its end.
    second = Client(url, verbose=False)
    final = follow(second, run, owner)
    assert final["state"] == "finished" and final["step"] == final["total"] == 12
    assert {"d", "g"} <= set(final["losses"]) and final["history"] and final["has_model"]
    assert final["quality"].get("after")
    assert not any(isinstance(v, dict) and "__type__" in v for v in final.values())  # no UI update objects
    header, data = final["preview"].split(",", 1)
    assert header == "data:image/png;base64"
    assert Image.open(io.BytesIO(base64.b64decode(data))).width > 16

    # ... and stops another run by its name.
    long = first.predict(files, "model:tiny16", steps=5000, batch=2, name="long", owner=owner, api_name="/train")
    assert long["run"] == "long" and long["owner"] == owner
    stopped = second.predict("long", owner, api_name="/train_stop")
    assert stopped["state"] in ("stopping", "stopped")
    final = follow(second, "long", owner)
    assert final["state"] == "stopped" and final["step"] < 5000

    # A stranger (another token, or none) can neither follow nor stop these runs.
    stranger = "stranger-" + "z" * 30
    with pytest.raises(AppError, match="no run named"):
        second.predict(run, stranger, api_name="/train_status")
    with pytest.raises(AppError, match="no run named|owner token"):
        second.predict(run, None, api_name="/train_stop")


def test_train_refuses_what_it_cannot_use(url):
    c = Client(url, verbose=False)
    with pytest.raises(AppError, match="upload one or more"):
        c.predict([], "model:tiny16", api_name="/train")
    with pytest.raises(AppError, match="steps must be"):
        c.predict([handle_file(str(IMAGES[0]))], "model:tiny16", steps=-3, api_name="/train")
