"""Train tab through gradio_client on a real server: a run downloaded as a resumable zip goes
back in through Gradio's upload, continues its step count and finishes."""

from __future__ import annotations

import json
import zipfile

from gradio_client import handle_file

from tests.test_app_train import IMAGES, client, poll_until, start, step_of, upload


def test_download_run_upload_it_back_and_it_resumes(app_server):
    url, demo = app_server
    c = client(url)
    upload(c, IMAGES)
    assert "queued" in start(c, steps=4, name="roundtrip")
    final = poll_until(c, lambda p: "finished" in p["status"] or "failed" in p["status"])
    assert "finished" in final["status"], final["status"]
    archive = c.predict("roundtrip", None, api_name="/train_download_run")
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
    assert {"roundtrip/state/state.safetensors", "roundtrip/run.json", "roundtrip/manifest.json"} <= names
    out = c.predict(handle_file(archive), 6, None, api_name="/train_resume_zip")
    assert "resuming from step 4, towards step 6" in out[0], out
    final = poll_until(c, lambda p: "finished" in p["status"] or "failed" in p["status"])
    assert "finished" in final["status"] and step_of(final) == 6
    state = json.loads((demo.ctx.runs_dir / "roundtrip-2" / "state" / "state.json").read_text())
    assert state["step"] == 6
