"""Train tab through gradio_client on a real server: upload report, a 10-step run that is listed,
generates and downloads; Stop; resume after SIGKILL; hostile uploads; a second visitor's privacy."""

from __future__ import annotations

import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

import msgen
from msgen import render
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parent.parent
IMAGES = sorted((FIXTURES / "images").iterdir())
BROKEN = sorted((FIXTURES / "broken").iterdir())
AUG = ["color", "translation", "cutout"]
OWNER_A = "visitor-a-" + "a" * 30
OWNER_B = "visitor-b-" + "b" * 30


def files(paths) -> list:
    return [handle_file(str(p)) for p in paths]


def client(url: str) -> Client:
    return Client(url, verbose=False)


def upload(c: Client, paths, owner=None, base="model:tiny16"):
    gallery, rejected, summary, owner_out = c.predict(files(paths), base, 32, "crop", owner, api_name="/train_upload")
    return gallery, rejected["data"], summary, owner_out


def start(c: Client, *, steps=10, name="run", owner=None, base="model:tiny16", every=5, batch=4, seed=0):
    status, _timer = c.predict(base, 32, "crop", steps, batch, 2e-4, AUG, every, seed, name, owner,
                               api_name="/train_start")
    return status


def poll(c: Client, owner=None) -> dict:
    out = c.predict(owner, api_name="/train_poll")
    keys = ["status", "progress", "plot", "preview", "quality", "timer", "runs", "bases", "generate"]
    return dict(zip(keys, out)) | {"status": out[0] if not skipped(out[0]) else ""}


def skipped(value) -> bool:
    return isinstance(value, dict) and set(value) == {"__type__"}


def poll_until(c: Client, done, owner=None, timeout=90.0) -> dict:
    """Poll like the page's timer does, keeping each output's latest value (unchanged ones are skipped)."""
    deadline, seen = time.monotonic() + timeout, {}
    while True:
        seen |= {k: v for k, v in poll(c, owner).items() if not skipped(v)}
        if done(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def step_of(p: dict) -> int:
    html = p["progress"] or ""
    at = html.find('data-step="')
    return int(html[at + 11 : html.index('"', at + 11)]) if at >= 0 else -1


def choices(update: dict) -> list[str]:
    return [c[1] if isinstance(c, (list, tuple)) else c for c in (update or {}).get("choices", [])]


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def server(app_server):
    url, demo = app_server
    return url, demo.ctx


@pytest.fixture(scope="module")
def trained(server):
    """A 10-step fine-tune of tiny16 on the fixture images, started through the page's API."""
    url, ctx = server
    c = client(url)
    _g, rejected, summary, _o = upload(c, IMAGES + BROKEN)
    assert "16 images accepted" in summary
    assert "queued" in start(c, name="api-run")
    final = poll_until(c, lambda p: "finished" in p["status"] or "failed" in p["status"])
    assert "finished" in final["status"], final["status"]
    return c, final, ctx.runs_dir / "api-run"


def test_upload_reports_accepted_and_rejected(server):
    c = client(server[0])
    gallery, rejected, summary, _owner = upload(c, IMAGES + BROKEN)
    assert len(gallery) == 16 and "16 images accepted" in summary and "3 rejected" in summary
    reasons = {name: reason for name, reason in rejected}
    assert set(reasons) == {"empty.jpg", "page.png", "truncated.png"}
    assert "0 bytes" in reasons["empty.jpg"] and "HTML" in reasons["page.png"]
    _g, _r, summary, _o = upload(c, IMAGES[:5])
    assert "memorise" in summary
    _g, _r, summary, _o = upload(c, BROKEN)
    assert "cannot start" in summary
    assert "Cannot start" in start(c, name="nothing")


def test_ten_step_run_is_listed_generates_and_downloads(server, trained):
    url, ctx = server
    c, final, run_dir = trained
    assert step_of(final) == 10 and "| mean |" in final["quality"]
    assert final["plot"]["data"] and {row[1] for row in final["plot"]["data"]} >= {"d", "g"}
    assert "api-run" in choices(final["runs"]) and "model:api-run" in choices(final["bases"])
    if ctx.model_dropdown is not None:  # the Generate tab's list was refreshed when the run ended
        assert any("api-run" in str(ch) for ch in final["generate"]["choices"])
    # The Generate tab lists it and generates from it, through its own endpoints.
    assert "api-run" in [m["name"] for m in c.predict(None, api_name="/models")]
    image, _levels, _stats, info = c.predict("api-run", 16, 1, 1.0, 1, 0, None, api_name="/generate")
    pixels = np.asarray(render.from_data_uri(image).convert("RGB"))  # pictures come inline, as data URIs
    assert "api-run" in info and pixels.std() > 0
    zip_path = c.predict("api-run", None, api_name="/train_download")
    with zipfile.ZipFile(zip_path) as zf:
        assert {"api-run/config.json", "api-run/model.safetensors", "api-run/README.md"} <= set(zf.namelist())
        zf.extractall(Path(zip_path).parent / "unzipped")
    g = msgen.load(Path(zip_path).parent / "unzipped" / "api-run")
    assert g.meta["steps"] == 10 and g.config.resolution == 16


def test_push_without_network_fails_clearly_and_keeps_the_model(server, trained):
    _c, _final, run_dir = trained
    c = client(server[0])
    before = digest(run_dir / "model")
    msg = c.predict("api-run", "someone/api-run", "hf_not_a_real_token", True, None, api_name="/train_push")
    assert msg.startswith("**Not pushed:**") and "unchanged" in msg
    assert digest(run_dir / "model") == before


def test_stop_ends_the_run_within_seconds_and_its_checkpoint_loads(server):
    url, ctx = server
    c = client(url)
    upload(c, IMAGES)
    assert "queued" in start(c, steps=100_000, name="stop-me", every=2)
    poll_until(c, lambda p: step_of(p) >= 3)
    t0 = time.monotonic()
    assert "stopping" in c.predict(None, api_name="/train_stop_current")
    final = poll_until(c, lambda p: "stopped" in p["status"], timeout=30)
    # Training ends within a step; the last seconds are the quality report (SWD, coverage) and export.
    assert "stopped" in final["status"] and time.monotonic() - t0 < 25
    g = msgen.load(ctx.runs_dir / "stop-me" / "model")
    assert 3 <= g.meta["steps"] < 100_000
    assert final["preview"] is not None


def test_generation_keeps_working_while_a_run_trains(server):
    c = client(server[0])
    upload(c, IMAGES)
    assert "queued" in start(c, steps=100_000, name="busy")
    poll_until(c, lambda p: step_of(p) >= 2)
    for seed in range(3):
        t0 = time.monotonic()
        _image, _levels, _stats, info = c.predict("tiny16", 16, seed, 1.0, 1, 0, None, api_name="/generate")
        assert "tiny16" in info and time.monotonic() - t0 < 10
    assert "training" in poll(c)["status"]  # the run was going on all the while
    c.predict(None, api_name="/train_stop_current")
    assert "stopped" in poll_until(c, lambda p: "stopped" in p["status"], timeout=30)["status"]


def test_sigkilled_cli_run_resumes_from_the_page_with_its_step_count(server, tiny_weights):
    url, ctx = server
    run_dir = ctx.runs_dir / "killed"
    cmd = [sys.executable, "-m", "msgen", "train", "--data", str(FIXTURES / "images"), "--model",
           str(tiny_weights / "tiny16"), "--out", str(run_dir), "--steps", "100000", "--batch", "4",
           "--checkpoint-every", "5", "--seed", "1", "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not (run_dir / "state" / "state.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (run_dir / "state" / "state.json").is_file(), "no checkpoint was written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    import json

    saved = json.loads((run_dir / "state" / "state.json").read_text())["step"]
    assert saved >= 5 and saved % 5 == 0
    c = client(url)
    runs_update = c.predict(None, api_name="/train_runs")[0]
    label = next(ch[0] for ch in runs_update["choices"] if ch[1] == "killed")
    assert "interrupted" in label and f"step {saved}/" in label
    status, _timer = c.predict("killed", saved + 5, None, api_name="/train_resume")
    assert "resuming" in status
    final = poll_until(c, lambda p: "finished" in p["status"] or "failed" in p["status"])
    assert "finished" in final["status"], final["status"]
    assert step_of(final) == saved + 5
    assert min(row[0] for row in final["plot"]["data"]) == saved + 1  # it carried on, not restarted
    assert msgen.load(run_dir / "model").meta["steps"] == saved + 5


# --- hostile uploads ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("hostile")
    with zipfile.ZipFile(d / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("huge.png", b"\0" * (20 * 2**20))  # ~1000:1
    with zipfile.ZipFile(d / "slip.zip", "w") as zf:
        zf.writestr("../../evil.png", (FIXTURES / "images" / "00_circles.png").read_bytes())
        zf.writestr("ok.png", (FIXTURES / "images" / "01_stripes.png").read_bytes())
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, format="PNG")  # 100 megapixels, ~12 kB on disk
    (d / "huge.png").write_bytes(buf.getvalue())
    (d / "empty.png").write_bytes(b"")
    (d / "page.png").write_bytes(b"<!DOCTYPE html><html><body>hi</body></html>")
    # Fixed noise: the same bytes every run (os.urandom could, rarely, begin with an image signature).
    (d / "noise.png").write_bytes(random.Random(0).randbytes(3000))
    return d


@pytest.mark.parametrize("name, words", [
    ("bomb.zip", "zip bomb"), ("slip.zip", "unsafe path"), ("huge.png", "MP"), ("empty.png", "0 bytes"),
    ("page.png", "HTML"), ("noise.png", "not an image"),
])
def test_hostile_uploads_get_a_clear_message_and_harm_nothing(server, trained, hostile, name, words):
    url, ctx = server
    _c, _final, run_dir = trained
    before = digest(run_dir / "model")
    c = client(url)
    _g, rejected, summary, _o = upload(c, [hostile / name])
    text = summary + " " + " ".join(reason for _n, reason in rejected)
    assert words in text, text
    if name == "slip.zip":
        assert "1 image accepted" in summary  # the safe member still counts
        assert not (ROOT / "evil.png").exists() and not (ctx.runs_dir.parent / "evil.png").exists()
    assert digest(run_dir / "model") == before
    assert "api-run" in [e.name for e in ctx.models(None)]
    assert c.predict(None, api_name="/train_runs")  # the server still answers


# --- privacy on a shared host --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared_server(tiny_weights, tmp_path_factory):
    from tests.conftest import serve_app

    url, demo = serve_app(tmp_path_factory.mktemp("shared-runs"), shared=True, weights_dir=tiny_weights)
    yield url, demo.ctx
    demo.close()


def test_second_visitor_cannot_list_or_load_the_first_visitors_model(shared_server):
    url, ctx = shared_server
    a, b = client(url), client(url)
    _g, _r, summary, token = upload(a, IMAGES, owner=None)  # a first visit is given a token
    assert token and len(token) >= 16 and "16 images accepted" in summary
    upload(a, IMAGES, owner=OWNER_A)
    assert "queued" in start(a, name="private", owner=OWNER_A)
    final = poll_until(a, lambda p: "finished" in p["status"] or "failed" in p["status"], owner=OWNER_A)
    assert "private" in choices(final["runs"])
    runs_b, bases_b, *gen_b = b.predict(OWNER_B, api_name="/train_runs")
    assert "private" not in choices(runs_b) and "model:private" not in choices(bases_b)
    for update in gen_b:
        assert not any("private" in str(ch) for ch in update.get("choices", []))
    with pytest.raises(Exception, match="no run named"):
        b.predict("private", OWNER_B, api_name="/train_download")
    assert "no run named" in b.predict("private", 99, OWNER_B, api_name="/train_resume")[0]
    upload(b, IMAGES, owner=OWNER_B)
    status = start(b, base="model:private", name="steal", owner=OWNER_B)
    assert "Cannot start" in status and "unknown model" in status
    with pytest.raises(ValueError):
        ctx.find("private", OWNER_B)
    assert "private" not in [m["name"] for m in b.predict(OWNER_B, api_name="/models")]
    assert "private" in [m["name"] for m in a.predict(OWNER_A, api_name="/models")]
    with pytest.raises(Exception, match="unknown model"):
        b.predict("private", 16, 1, 1.0, 1, 0, OWNER_B, api_name="/generate")
    assert ctx.find("private", OWNER_A).path.is_dir()
    # Visitor B polling finds nothing of A's, even in the same process.
    assert "private" not in str(poll(b, OWNER_B)["status"] or "")

