"""Train tab handlers without a server: names and paths, the upload report, the job manager
(queue, stop, thread limit), the live view, privacy between owners, CLI parity, hostile bytes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import msgen
from msgen.ui import common, runs
from msgen.ui import train as T
from msgen.ui import train_view as TV
from msgen.ui.jobs import JobManager, JobSpec
from msgen.train import TrainOptions
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parent.parent
IMAGES = sorted(str(p) for p in (FIXTURES / "images").iterdir())
BROKEN = sorted(str(p) for p in (FIXTURES / "broken").iterdir())
OWNER_A = "owner-a-" + "A" * 24
OWNER_B = "owner-b-" + "B" * 24
AUG = list(T.POLICIES)


@pytest.fixture
def ctx(tmp_path, tiny_weights):
    c = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=tiny_weights)
    c.jobs = JobManager()
    return c


@pytest.fixture
def shared_ctx(tmp_path, tiny_weights):
    c = common.AppContext(runs_dir=tmp_path / "shared-runs", weights_dir=tiny_weights, shared=True)
    c.jobs = JobManager()
    return c


def start(ctx, files=IMAGES, *, owner=None, steps=10, name="run", base="model:tiny16", seed=0, batch=4, every=5):
    return T.start(ctx, ctx.jobs, files, base, 16, "crop", steps, batch, 2e-4, AUG, every, seed,
                   name, owner)


def finish(ctx, job_id, owner=None, timeout=120):
    manager = ctx.jobs
    job = manager.get(job_id, ctx.owner_key(owner))
    assert manager.wait(job, timeout), "run did not finish"
    return job


# --- names and paths ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("my cats!", "my-cats"), ("../../etc/passwd", "etc-passwd"), ("a/b\\c", "a-b-c"), (".hidden", "hidden"),
    ("..", None), ("", None), ("  ", None), ("x" * 200, "x" * 64),
])
def test_sanitise_name_never_yields_a_path(text, expected):
    name = runs.sanitise_name(text)
    assert runs.RUN_NAME.match(name) and "/" not in name and ".." not in name
    if expected is not None:
        assert name == expected


def test_new_run_dir_never_reuses_a_name(tmp_path):
    (tmp_path / "cats").mkdir()
    assert runs.new_run_dir(tmp_path, "cats").name == "cats-2"
    assert runs.new_run_dir(tmp_path, "tiny16", taken={"tiny16"}).name == "tiny16-2"  # a shipped model's name
    assert runs.new_run_dir(tmp_path, "sessions").name == "sessions-2"


@pytest.mark.parametrize("name", ["../x", "sessions", "nope", "", None, "a/b", "/etc"])
def test_run_dir_of_refuses_anything_but_an_existing_run(tmp_path, name):
    with pytest.raises(ValueError):
        runs.run_dir_of(tmp_path, name)


# --- upload report ----------------------------------------------------------------------------------
def test_prepare_reports_accepted_and_rejected(ctx):
    gallery, rows, summary, data = T.prepare(ctx, IMAGES + BROKEN, "model:tiny16", 32, "crop", None)
    assert data.images.shape == (16, 3, 16, 16) and len(gallery) == 16
    assert {r[0] for r in rows} == {"empty.jpg", "page.png", "truncated.png"}
    assert all(r[1] for r in rows) and "16 images accepted" in summary and "3 rejected" in summary
    assert "Warning" not in summary
    # A from-scratch base trains at the chosen resolution, so the preview follows it.
    _g, _r, summary, data = T.prepare(ctx, IMAGES[:3], "scratch:msggan", 32, "pad", None)
    assert data.images.shape == (3, 3, 32, 32) and "memorise" in summary


def test_zero_usable_images_refuses_to_start(ctx):
    _g, rows, summary, data = T.prepare(ctx, BROKEN, "model:tiny16", 32, "crop", None)
    assert data.images.shape[0] == 0 and "cannot start" in summary and len(rows) == 3
    job_id, text = start(ctx, BROKEN)
    assert job_id is None and "Cannot start" in text and "no usable images" in text
    job_id, text = start(ctx, [])
    assert job_id is None and "upload" in text


@pytest.mark.parametrize("field, value, words", [
    ("steps", 0, "steps"), ("steps", 2.5, "steps"), ("batch", -1, "batch size"), ("lr", "x", "learning rate"),
    ("seed", -3, "seed"),
])
def test_bad_settings_give_a_clear_message(ctx, field, value, words):
    kwargs = {"steps": 10, "batch": 4, "seed": 0} | {field: value}
    args = dict(steps=kwargs["steps"], batch=kwargs["batch"], lr=value if field == "lr" else 2e-4, seed=kwargs["seed"])
    job_id, text = T.start(ctx, ctx.jobs, IMAGES, "model:tiny16", 16, "crop", args["steps"],
                           args["batch"], args["lr"], AUG, 5, args["seed"], "x", None)
    assert job_id is None and words in text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=4096), suffix=st.sampled_from([".png", ".jpg", ".zip", ".gif", ""]))
def test_random_bytes_get_a_reason_and_crash_nothing(ctx, tmp_path, blob, suffix):
    path = tmp_path / f"blob{suffix}"
    path.write_bytes(blob)
    gallery, rows, summary, data = T.prepare(ctx, [str(path)], "model:tiny16", 32, "crop", None)
    if data is None:
        assert summary.startswith("**Cannot use this upload:**")
    else:
        assert len(rows) + data.images.shape[0] >= (1 if blob else 0)
        assert all(reason for _name, reason in rows)


# --- training through the page's code path ---------------------------------------------------------
def test_page_run_exports_a_loadable_model_with_quality_and_data_snapshot(ctx):
    job_id, text = start(ctx, IMAGES + BROKEN, name="my cats!")
    assert job_id and "my-cats" in text
    job = finish(ctx, job_id)
    assert job.state == "finished" and job.step == 10, job.message
    run_dir = ctx.runs_dir / "my-cats"
    g = msgen.load(run_dir / "model")
    assert g.meta["steps"] == 10 and g.meta["base_name"] == "tiny16" and "python -m msgen train" in g.meta["command"]
    assert len(list((run_dir / "data").iterdir())) == 16  # accepted images only, at 16 px
    v = T.view(ctx, ctx.jobs, job_id, None)
    assert "finished" in v["status"] and 'data-step="10"' in v["progress"]
    assert set(v["losses"]["series"]) >= {"d", "g"} and v["losses"]["step"].max() == 10
    assert "| mean |" in v["quality"] and "SWD" in (run_dir / "model" / "README.md").read_text()
    # Every level's SWD (4x4 included) and the diversity figures, each beside the real-vs-real floor.
    q = job.quality
    assert set(q["after"]) == {"16", "8", "4", "mean"} and set(q["floor"]["swd"]) == set(q["after"])
    assert {"coverage", "near_duplicates"} <= set(q["diversity_after"]) and "coverage" in q["floor"]
    assert "| 4px |" in v["quality"] and "| coverage |" in v["quality"] and "| near-duplicate share |" in v["quality"]
    assert "coverage" in (run_dir / "model" / "README.md").read_text()
    assert TV.preview_grid(v["preview"]).size == (3 * 98 + 2, TV.PREVIEW_ROWS * 98 + 2)  # 3 levels, 96 px cells
    assert "tiny16" in {e.name for e in ctx.models(None)} and "my-cats" in {e.name for e in ctx.models(None)}
    assert [n for _label, n in T.run_choices(ctx, ctx.jobs, None)] == ["my-cats"]


def test_page_and_cli_give_the_same_weights(ctx, tiny_weights, tmp_path):
    job_id, _ = start(ctx, IMAGES, name="page", seed=3, steps=6, every=3)
    finish(ctx, job_id)
    cli = tmp_path / "cli"
    # One torch thread, as the page's worker uses on this 2-core machine: the summation order of a
    # convolution depends on the thread count, so only equal counts promise equal bits.
    env = os.environ | {"OMP_NUM_THREADS": str(ctx.jobs.threads), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "msgen", "train", "--data", str(FIXTURES / "images"), "--model",
           str(tiny_weights / "tiny16"), "--out", str(cli), "--steps", "6", "--batch", "4", "--seed", "3",
           "--sample-every", "3", "--device", "cpu"]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True, timeout=120)
    page = load_file(str(ctx.runs_dir / "page" / "model" / "model.safetensors"))
    ref = load_file(str(cli / "model" / "model.safetensors"))
    assert page.keys() == ref.keys()
    for k in page:
        assert torch.equal(page[k], ref[k]), k


def test_stop_ends_after_the_current_step_and_keeps_a_checkpoint(ctx):
    manager = ctx.jobs
    job_id, _ = start(ctx, steps=100_000, name="long")
    job = manager.get(job_id, ctx.owner_key(None))
    deadline = time.monotonic() + 60
    while job.step < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "stopping" in T.stop(ctx, manager, job_id, None)
    at_stop = job.step  # read after the flag is up: at most the step in progress still finishes
    assert manager.wait(job, 10)  # a hang guard, not a speed claim
    assert job.state == "stopped" and job.step <= at_stop + 1  # it stops after the step it was in
    g = msgen.load(ctx.runs_dir / "long" / "model")
    assert g.meta["steps"] == job.step and 3 <= job.step < 100_000
    info = runs.read_run(ctx.runs_dir / "long")
    assert info.status == "stopped" and info.resumable
    # Resume it from the page for a few more steps: the step count carries on.
    job_id, text = T.resume(ctx, manager, "long", info.step + 4, None)
    assert job_id, text
    job = finish(ctx, job_id)
    assert job.state == "finished" and job.step == info.step + 4 and job.history[0][0] == info.step + 1


def test_queue_shows_place_in_line_and_a_queued_run_can_leave(ctx):
    manager = ctx.jobs
    first, _ = start(ctx, steps=100_000, name="first")
    second, _ = start(ctx, steps=10, name="second")
    job1, job2 = manager.get(first, ctx.owner_key(None)), manager.get(second, ctx.owner_key(None))
    deadline = time.monotonic() + 30
    while job1.state != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert manager.position(job1) == 0 and manager.position(job2) == 1
    assert "in line: number 1" in T.view(ctx, manager, second, None)["status"]
    T.stop(ctx, manager, second, None)
    assert job2.state == "stopped" and manager.position(job2) == -1
    T.stop(ctx, manager, first, None)
    assert manager.wait(job1, 10)


def test_loss_history_stays_bounded_and_plots_thinned():
    from msgen.train import Progress
    from msgen.ui.jobs import HISTORY_MAX, Job

    job = Job(JobSpec(run_dir=Path("r"), name="r", owner_key="k", data=Path("d"), options=TrainOptions()))
    for step in range(1, 20_001):
        job.on_progress(Progress(step, 20_000, {"d": 1.0, "g": float(step)}, 1.0, 1.0))
    assert len(job.history) <= HISTORY_MAX and job.history[-1][0] == 20_000
    frame = TV.loss_frame(job.history)
    assert set(frame["series"]) == {"d", "g"} and len(frame) <= 2 * (TV.HISTORY_POINTS + 1)
    assert all(group["step"].is_monotonic_increasing for _series, group in frame.groupby("series"))


def test_training_thread_uses_fewer_torch_threads(tmp_path, monkeypatch):
    import msgen.ui.jobs as jobs_module

    seen = {}

    def fake_run(job):
        seen["threads"] = torch.get_num_threads()
        job.state = "finished"

    monkeypatch.setattr(jobs_module, "run_job", fake_run)
    before = torch.get_num_threads()
    manager = JobManager(threads=1)
    spec = JobSpec(run_dir=tmp_path / "r", name="r", owner_key="k", data=Path(IMAGES[0]),
                   options=TrainOptions(steps=1, batch_size=2, device="cpu"))
    assert manager.wait(manager.submit(spec), 10)
    assert seen["threads"] == 1 and torch.get_num_threads() == before


# --- privacy --------------------------------------------------------------------------------------------
def test_other_owner_cannot_see_stop_resume_or_download(shared_ctx):
    ctx, manager = shared_ctx, shared_ctx.jobs
    job_id, text = start(ctx, owner=OWNER_A, name="secret")
    assert job_id, text
    finish(ctx, job_id, OWNER_A)
    assert "secret" in {e.name for e in ctx.models(OWNER_A)}
    assert "secret" not in {e.name for e in ctx.models(OWNER_B)}
    assert T.run_choices(ctx, manager, OWNER_B) == []
    assert T.view(ctx, manager, job_id, OWNER_B) is None and manager.latest(ctx.owner_key(OWNER_B)) is None
    assert "Nothing is training" in T.stop(ctx, manager, job_id, OWNER_B)
    assert T.resume(ctx, manager, "secret", 20, OWNER_B)[0] is None
    with pytest.raises(Exception, match="no run named"):
        T.download(ctx, "secret", OWNER_B)
    with pytest.raises(ValueError):
        ctx.find("secret", OWNER_B)
    # No token, no storage: a visitor without one is asked to reload.
    assert "owner token" in start(ctx, owner=None)[1]


def test_expired_sessions_go_but_busy_ones_stay(shared_ctx):
    ctx = shared_ctx
    a, b = ctx.owner_dir(OWNER_A), ctx.owner_dir(OWNER_B)
    for d in (a, b):
        (d / "x").mkdir(parents=True)
        (d / "x" / "f").write_text("1")
        os.utime(d / "x" / "f", (0, 0))
        os.utime(d / "x", (0, 0))
        os.utime(d, (0, 0))
    assert ctx.expire_sessions(keep={b / "x"}) == 1
    assert not a.exists() and b.exists()
    # A visit (the .seen marker) keeps a folder alive however old its files are.
    os.utime(b, (0, 0))
    ctx.touch(OWNER_B)
    assert ctx.expire_sessions(now=time.time()) == 0 and b.exists()
    assert ctx.expire_sessions(now=time.time() + ctx.ttl_s + 10) == 1 and not b.exists()


def test_eta_follows_the_pace_of_recent_steps(monkeypatch):
    import collections

    from msgen.train import Progress
    from msgen.ui import jobs as J

    clock = [0.0]
    monkeypatch.setattr(J.time, "monotonic", lambda: clock[0])
    recent = collections.deque(maxlen=J.ETA_WINDOW_STEPS)
    for step in range(1, 101):  # 100 fast steps (0.1 s each), then the machine gets 10x busier
        clock[0] += 0.1
        J.eta_from_recent(recent, Progress(step, 1000, {}, clock[0], 1.0, eta_s=999.0))
    for step in range(101, 201):
        clock[0] += 1.0
        eta = J.eta_from_recent(recent, Progress(step, 1000, {}, clock[0], 1.0, eta_s=999.0))
    assert eta == pytest.approx(800 * 1.0)  # the recent pace (1 s/step), not the run's average (0.55 s/step)
    assert J.eta_from_recent(recent, Progress(1000, 1000, {}, clock[0], 1.0, done=True)) == 0.0


def test_the_quality_report_says_when_samples_collapse():
    floor = {"coverage": 0.9, "near_duplicates": 0.0, "swd": {"8": 10.0, "4": 20.0, "mean": 15.0}}
    collapsed = {"coverage": 0.1, "precision": 0.5, "recall": 0.0, "near_duplicates": 0.8}
    healthy = {"coverage": 0.8, "precision": 0.7, "recall": 0.6, "near_duplicates": 0.02}
    base = {"before": {"8": 50.0, "4": 60.0, "mean": 55.0}, "after": {"8": 12.0, "4": 22.0, "mean": 17.0},
            "floor": floor}
    text = TV.quality_markdown(base | {"diversity_after": collapsed})
    assert "look collapsed" in text and "coverage 0.10" in text and "80% of samples" in text
    assert "| coverage | - | 0.10 | 0.90 |" in text
    assert "collapsed" not in TV.quality_markdown(base | {"diversity_after": healthy})
