"""Train tab, runs that outlive the machine: download a resumable zip, upload it back (or go
through a Hub repo) and the run continues its step count; strangers, busy runs, tampered zips
and bad input get a clear message; the runs folder defaults to the Space's /data."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import gradio as gr
import pytest
from safetensors.torch import load, load_file

from msgen.ui import common, runs
from msgen.ui import train_resume as R
from msgen.ui.jobs import JobManager
from tests.conftest import hub_cache, load_app_module, offline_hub
from tests.test_ui_train import IMAGES, OWNER_A, OWNER_B, finish, start


@pytest.fixture
def shared_ctx(tmp_path, tiny_weights):
    c = common.AppContext(runs_dir=tmp_path / "shared-runs", weights_dir=tiny_weights, shared=True)
    c.jobs = JobManager()
    return c


def trained(ctx, owner, steps=4, name="cats"):
    job_id, text = start(ctx, owner=owner, steps=steps, name=name)
    assert job_id, text
    finish(ctx, job_id, owner)
    return runs.run_dir_of(ctx.owner_dir(owner), name)


def step_of(run_dir: Path) -> int:
    return json.loads((run_dir / "state" / "state.json").read_text())["step"]


def test_download_upload_resume_continues_the_step_count(shared_ctx):
    ctx, manager = shared_ctx, shared_ctx.jobs
    original = trained(ctx, OWNER_A)
    before = (original / "state" / "state.safetensors").read_bytes()
    archive = Path(R.download_run(ctx, manager, "cats", OWNER_A))
    assert archive.name == "cats-run.zip" and archive.is_file()
    # The Space restarts: the disk is wiped, the visitor uploads the zip again, to a new owner even.
    shutil.rmtree(ctx.runs_dir)
    job_id, text, name = R.resume_zip(ctx, manager, str(archive), 7, OWNER_B)
    assert job_id and "resuming from step 4, towards step 7" in text and name == "cats"
    finish(ctx, job_id, OWNER_B)
    run = runs.run_dir_of(ctx.owner_dir(OWNER_B), "cats")
    assert step_of(run) == 7
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["resumed"] is True
    assert load_file(str(run / "state" / "state.safetensors")).keys() == load(before).keys()
    assert [r.name for r in runs.list_runs(ctx.owner_dir(OWNER_B))] == ["cats"]  # no staging folder listed


def test_uploading_a_run_at_its_goal_imports_it_without_training(shared_ctx):
    ctx, manager = shared_ctx, shared_ctx.jobs
    trained(ctx, OWNER_A)
    archive = R.download_run(ctx, manager, "cats", OWNER_A)
    job_id, text, name = R.resume_zip(ctx, manager, archive, None, OWNER_A)
    assert job_id is None and "at step 4, its goal" in text and name == "cats-2"
    assert ctx.find("cats-2", OWNER_A).source == "run"  # listed in Generate at once
    job_id, text, _ = R.resume_zip(ctx, manager, archive, 10**7, OWNER_A)
    assert job_id is None and "not resumed" in text and "20,000" in text


def test_strangers_busy_runs_and_bad_uploads_get_clear_messages(shared_ctx, tmp_path):
    ctx, manager = shared_ctx, shared_ctx.jobs
    trained(ctx, OWNER_A)
    with pytest.raises(gr.Error, match="no run named 'cats'"):
        R.download_run(ctx, manager, "cats", OWNER_B)
    assert "Run not pushed" in R.push_run(ctx, manager, "cats", "someone/x", "", True, OWNER_B)
    assert "upload one run zip" in R.resume_zip(ctx, manager, None, None, OWNER_A)[1]
    images_zip = tmp_path / "images.zip"
    with zipfile.ZipFile(images_zip, "w") as zf:
        for p in IMAGES[:3]:
            zf.write(p, Path(p).name)
    job_id, text, _ = R.resume_zip(ctx, manager, str(images_zip), None, OWNER_A)
    assert job_id is None and "Cannot resume from this zip" in text and "top folder" in text
    archive = R.download_run(ctx, manager, "cats", OWNER_A)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(archive) as zin, zipfile.ZipFile(tampered, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info.filename, data.replace(b'"steps": 4', b'"steps": 9') if info.filename.endswith("/run.json") else data)
    job_id, text, _ = R.resume_zip(ctx, manager, str(tampered), None, OWNER_A)
    assert job_id is None and "run.json does not match its manifest" in text
    # A run in training can be neither downloaded nor pushed half-written.
    job_id, _ = start(ctx, owner=OWNER_A, steps=2000, name="busy")
    try:
        with pytest.raises(gr.Error, match="is training"):
            R.download_run(ctx, manager, "busy", OWNER_A)
        assert "you already have a run" in R.resume_zip(ctx, manager, archive, None, OWNER_A)[1]
    finally:
        manager.stop(manager.get(job_id, ctx.owner_key(OWNER_A)))
        finish(ctx, job_id, OWNER_A)


def test_hub_push_and_resume_from_a_local_hub_layout(shared_ctx, tmp_path, monkeypatch):
    ctx, manager = shared_ctx, shared_ctx.jobs
    trained(ctx, OWNER_A)
    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: f"https://huggingface.co/{repo_id}")
    monkeypatch.setattr(HfApi, "upload_folder",
                        lambda self, *, folder_path, **kw: shutil.copytree(folder_path, tmp_path / "pushed"))
    assert "full state" in R.push_run(ctx, manager, "cats", "someone/cats-run", "hf_fake", True, OWNER_A)
    hub_cache(tmp_path / "cache", "someone/cats-run", tmp_path / "pushed")
    offline_hub(monkeypatch, tmp_path / "cache")
    job_id, text, name = R.resume_hub(ctx, manager, " someone/cats-run ", "", 6, OWNER_B)
    assert job_id and "fetched from someone/cats-run: resuming from step 4, towards step 6" in text
    finish(ctx, job_id, OWNER_B)
    assert step_of(runs.run_dir_of(ctx.owner_dir(OWNER_B), name)) == 6
    job_id, text, _ = R.resume_hub(ctx, manager, "someone/nothing-here", "", None, OWNER_B)
    assert job_id is None and "Cannot resume from the Hub" in text and "someone/nothing-here" in text


def test_runs_live_on_persistent_storage_when_the_space_has_it(tmp_path, monkeypatch):
    app = load_app_module()
    monkeypatch.delenv("MSGEN_RUNS", raising=False)
    assert app.default_runs_dir(tmp_path) == tmp_path / "msgen-runs"
    assert app.default_runs_dir(tmp_path / "absent") == Path("runs")
    monkeypatch.setenv("MSGEN_RUNS", str(tmp_path / "mine"))
    assert app.default_runs_dir(tmp_path) == tmp_path / "mine"
