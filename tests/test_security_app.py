"""What a hostile visitor can do to the web app, tried on a real shared-mode server (raw HTTP and
gradio_client) and on the handlers: read files by path, fill the disk, exhaust the training
queue, send odd values. Each case must be refused with a clear message while the server keeps
serving. Ingestion (zips, decoders) and untrusted checkpoints have suites of their own
(test_security_data.py, test_security_checkpoint.py)."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from msgen.ui import common, jobs, runs, server, validate
from msgen.ui import decompose as D
from msgen.ui import train as T
from msgen.ui.jobs import JobManager
from tests.conftest import FIXTURES, serve_app

IMAGES = sorted((FIXTURES / "images").iterdir())
OWNER = "visitor-s-" + "s" * 30
SECRET_PNG = IMAGES[0]  # stands in for another visitor's runs/sessions/<hash>/<run>/data/*.png


@pytest.fixture(scope="module")
def shared(tiny_weights, tmp_path_factory):
    url, demo = serve_app(tmp_path_factory.mktemp("sec-runs"), shared=True, weights_dir=tiny_weights)
    yield url.rstrip("/"), demo
    demo.close()


def call(url: str, api: str, data: list, timeout: float = 60) -> tuple[str, object]:
    """POST /gradio_api/call/<api>, then read its event stream: ("complete"|"error", payload)."""
    r = httpx.post(f"{url}/gradio_api/call/{api}", json={"data": data}, timeout=timeout)
    r.raise_for_status()
    text = httpx.get(f"{url}/gradio_api/call/{api}/{r.json()['event_id']}", timeout=timeout).text
    kind = "error" if "event: error" in text else "complete"
    payload = text.split("data:", 1)[1].split("\n", 1)[0].strip() if "data:" in text else ""
    return kind, json.loads(payload) if payload else None


def run_async(coro) -> None:
    """Run a coroutine to its end in a thread of its own (the browser tests keep a loop running here)."""
    import threading

    errors: list[BaseException] = []
    t = threading.Thread(target=_runner(coro, errors))
    t.start()
    t.join(60)
    if errors:
        raise errors[0]


def _runner(coro, errors):
    import asyncio

    def run():
        try:
            asyncio.run(coro)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)
    return run


def alive(url: str) -> bool:
    return httpx.get(f"{url}/gradio_api/info", timeout=30).status_code == 200


# --- reading server files by path ---------------------------------------------------------------
@pytest.mark.parametrize("api", ["decompose", "decompose_resample"])
def test_decompose_never_opens_a_path_the_caller_names(shared, api, tmp_path):
    url, _demo = shared
    extra = ["Keep coarse, vary detail", 8, 0, 0.8, 2] if api == "decompose_resample" else []
    errors = set()
    for path in (str(SECRET_PNG), "/etc/passwd", "/nonexistent/file.png", "/tmp/gradio/../../etc/passwd"):
        kind, payload = call(url, api, ["tinyvae16", {"path": path}, "crop", *extra, OWNER])
        assert kind == "error", (path, payload)
        errors.add(payload["error"])
    # One message for every path: an image, a text file and nothing at all look the same (no oracle).
    assert errors == {"that file was not uploaded to this page; upload the picture again"}
    # A bare string is no upload either.
    kind, _ = call(url, api, ["tinyvae16", str(SECRET_PNG), "crop", *extra, OWNER])
    assert kind == "error"
    assert alive(url)


def test_a_link_planted_in_the_upload_folder_is_not_followed(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache" / "abc").mkdir(parents=True)
    link = tmp_path / "cache" / "abc" / "x.png"
    link.symlink_to(SECRET_PNG)
    with pytest.raises(ValueError, match="not uploaded"):
        validate.uploaded_image({"path": str(link)})
    inside = tmp_path / "cache" / "abc" / "y.png"
    inside.write_bytes(SECRET_PNG.read_bytes())
    assert validate.uploaded_image({"path": str(inside)}) == str(inside.resolve())


def test_decompose_accepts_real_uploads_and_inline_data(shared):
    url, _demo = shared
    c = Client(url + "/", verbose=False)
    recon, _latents, _table = c.predict("tinyvae16", handle_file(str(IMAGES[1])), "crop", OWNER, api_name="/decompose")
    assert len(recon) == 4
    inline = "data:image/png;base64," + base64.b64encode(IMAGES[1].read_bytes()).decode()
    kind, payload = call(url, "decompose", ["tinyvae16", {"url": inline}, "crop", OWNER])
    assert kind == "complete" and len(payload[0]) == 4
    kind, payload = call(url, "decompose", ["tinyvae16", {"url": "data:image/png;base64,!!notbase64"}, "crop", OWNER])
    assert kind == "error" and "base64" in payload["error"]


def test_train_upload_refuses_paths_that_were_not_uploaded(shared):
    url, _demo = shared
    # The Train tab's File component is preprocessed: gradio itself refuses a path it did not store.
    kind, _ = call(url, "train_upload", [[{"path": str(SECRET_PNG), "meta": {"_type": "gradio.FileData"}}],
                                         "model:tiny16", 32, "crop", OWNER])
    assert kind == "error"
    kind, _ = call(url, "train_upload", [[{"path": str(SECRET_PNG)}], "model:tiny16", 32, "crop", OWNER])
    assert kind == "error"
    assert alive(url)


# --- disk: upload caps and cache expiry ------------------------------------------------------------
def test_an_upload_over_the_request_cap_is_refused_before_it_is_stored(shared):
    import socket
    from urllib.parse import urlparse

    url, _demo = shared
    cap = server.caps(True).max_request_bytes
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as sock:
        sock.sendall(f"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                     f"boundary=x\r\nContent-Length: {cap + 1}\r\n\r\n".encode() + b"--x\r\n")
        reply = ""
        while "MB limit" not in reply and (chunk := sock.recv(65536)):
            reply += chunk.decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413") and "MB limit per upload request" in reply
    assert alive(url)


def test_a_body_longer_than_its_cap_is_cut_off(monkeypatch):
    got = []

    async def app(scope, receive, send):  # reads the whole body, as a route would
        while True:
            message = await receive()
            got.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                return

    chunks = [{"type": "http.request", "body": b"x" * 1000, "more_body": True} for _ in range(50)]

    async def receive():
        return chunks.pop(0)

    monkeypatch.setattr(server, "MAX_BODY_BYTES", 10_000)
    guard = server.UploadGuard(app, max_request_bytes=10**9, min_free_bytes=0)
    scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "headers": []}
    run_async(guard(scope, receive, None))
    assert got[-1] == "http.disconnect" and len(got) == 11  # cut as soon as 10 kB had passed


def test_uploads_without_a_length_and_bodies_over_the_cap_are_refused(shared):
    url, _demo = shared
    r = httpx.post(f"{url}/gradio_api/upload", headers={"content-type": "multipart/form-data; boundary=x"},
                   content=iter([b"--x\r\n", b"x" * 100]), timeout=30)  # chunked: no Content-Length
    assert r.status_code == 411
    r = httpx.post(f"{url}/gradio_api/queue/join", content=b"{" + b" " * (server.MAX_BODY_BYTES + 10) + b"}",
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413
    assert alive(url)


def test_stale_partial_uploads_are_swept(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    (tmp_path / "abc").mkdir()
    stale, fresh, cached = tmp_path / "tmpdfcfp39r", tmp_path / "tmpnew", tmp_path / "abc" / "kept.png"
    for f in (stale, fresh, cached):
        f.write_bytes(b"x" * 100)
    os.utime(stale, (0, 0))
    os.utime(cached, (0, 0))
    monkeypatch.setattr(server, "_last_sweep", [0.0])
    assert server.sweep_stale_uploads() == 1 and not stale.exists() and fresh.exists() and cached.exists()


def test_remote_file_payloads_are_never_fetched(shared):
    url, _demo = shared
    for api, data in (("decompose", ["tinyvae16", {"path": "https://huggingface.co/x.png", "meta":
                                                   {"_type": "gradio.FileData"}}, "crop", OWNER]),
                      ("train", [[{"path": "//example.org/a.zip", "meta": {"_type": "gradio.FileData"}}]]),
                      ("train_upload", [[{"path": " HTTP://example.org/a.png", "meta": {"_type": "gradio.FileData"}}],
                                        "model:tiny16", 32, "crop", OWNER])):
        kind, payload = call(url, api, data)
        assert kind == "error" and "does not fetch URLs" in payload["error"], (api, payload)


def test_a_strangers_push_never_uses_the_servers_token(tmp_path, tiny_weights, monkeypatch):
    ctx = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=tiny_weights, shared=True)
    monkeypatch.setenv("HF_TOKEN", "hf_SERVER_SECRET")
    called = []
    monkeypatch.setattr("msgen.checkpoint.push_to_hub", lambda *a, **k: called.append(k) or "url")
    run = ctx.owner_dir(OWNER) / "r" / "model"
    run.mkdir(parents=True)
    (run.parent / "run.json").write_text('{"step": 1, "steps": 1}')
    text = T.push(ctx, "r", "someone/repo", "", False, OWNER)
    assert text.startswith("**Not pushed:**") and "your Hugging Face token" in text and not called
    T.push(ctx, "r", "someone/repo", "hf_visitor", False, OWNER)
    assert called[0]["token"] == "hf_visitor" and called[0]["use_server_login"] is False


def test_runs_kept_per_visitor_and_in_all_are_bounded(shared_ctx, monkeypatch):
    root = shared_ctx.owner_dir(OWNER)
    for i in range(T.SHARED_LIMITS.runs_per_visitor):
        (root / f"old-{i}").mkdir(parents=True)
    job_id, text = start(shared_ctx, OWNER)
    assert job_id is None and "runs, this server's limit" in text
    from msgen.ui import train_limits

    monkeypatch.setattr(train_limits, "SHARED_LIMITS", dataclasses.replace(T.SHARED_LIMITS, runs_per_visitor=100, max_runs=3))
    job_id, text = start(shared_ctx, OWNER)
    assert job_id is None and "as many runs as it can keep" in text


def test_one_address_holds_one_place_in_the_line(shared_ctx):
    a, b = "visitor-a-" + "a" * 20, "visitor-b-" + "b" * 20
    first = T.start(shared_ctx, shared_ctx.jobs, [str(p) for p in IMAGES], "model:tiny16", 16,
                    "crop", 200, 4, 2e-4, [], 50, 0, "one", a, "10.0.0.1")
    second = T.start(shared_ctx, shared_ctx.jobs, [str(p) for p in IMAGES], "model:tiny16", 16,
                     "crop", 200, 4, 2e-4, [], 50, 0, "two", b, "10.0.0.1")
    assert first[0] and second[0] is None and "from your address" in second[1]
    manager = shared_ctx.jobs
    for job in list(manager._jobs.values()):
        manager.stop(job)
        assert manager.wait(job, 120)


def test_a_file_over_the_per_file_cap_is_refused(shared, tmp_path):
    url, demo = shared
    assert demo.max_file_size == server.caps(True).max_file_bytes
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(server.caps(True).max_file_bytes + 1)
    r = httpx.post(f"{url}/gradio_api/upload", files={"files": ("big.png", big.open("rb"), "image/png")}, timeout=60)
    assert r.status_code == 413 and "maximum allowed size" in r.text
    assert alive(url)


def test_the_disk_guard_refuses_uploads_when_the_disk_is_nearly_full(monkeypatch):
    monkeypatch.setattr(server, "_free_bytes", lambda: 10)
    sent = []

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send_):  # never reached
        raise AssertionError("the upload reached the app")

    guard = server.UploadGuard(app, max_request_bytes=2**20, min_free_bytes=2**30)
    scope = {"type": "http", "method": "POST", "path": "/gradio_api/upload", "headers": [(b"content-length", b"10")]}
    run_async(guard(scope, None, send))
    assert sent[0]["status"] == 507 and b"disk" in sent[1]["body"]


def test_cached_files_expire(shared):
    _url, demo = shared
    assert demo.delete_cache == server.CACHE_EXPIRY
    assert server.CACHE_EXPIRY[1] <= common.SESSION_TTL_S  # nothing cached outlives its visitor's folder


def test_session_expiry_reads_no_visitor_files(tmp_path, monkeypatch):
    ctx = common.AppContext(runs_dir=tmp_path / "runs", shared=True, ttl_s=100)
    for i in range(20):
        d = ctx.owner_dir(f"visitor-{i:02d}-" + "x" * 20)
        (d / "run" / "data").mkdir(parents=True)
        for j in range(50):
            (d / "run" / "data" / f"{j}.png").write_bytes(b"x")
        os.utime(d, (0, 0))

    def walked(*_a, **_k):
        raise AssertionError("expiry walked a visitor's files")

    monkeypatch.setattr(Path, "rglob", walked)
    monkeypatch.setattr(os, "walk", walked)
    assert ctx.expire_sessions(now=time.time()) == 20
    assert ctx.expire_sessions() == 0  # at most once a minute without an explicit clock


# --- the training queue --------------------------------------------------------------------------
@pytest.fixture
def shared_ctx(tmp_path, tiny_weights):
    ctx = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=tiny_weights, shared=True)
    ctx.jobs = JobManager(max_jobs=2)
    return ctx


def start(ctx, owner, **kw):
    args = dict(files=[str(p) for p in IMAGES], base="model:tiny16", resolution=16, fit="crop", steps=200, batch=4,
                lr=2e-4, augment=list(T.POLICIES), preview_every=50, seed=0, name="run")
    args |= kw
    return T.start(ctx, ctx.jobs, args["files"], args["base"], args["resolution"], args["fit"],
                   args["steps"], args["batch"], args["lr"], args["augment"], args["preview_every"], args["seed"],
                   args["name"], owner)


def test_forged_visitors_cannot_queue_more_than_the_line_holds(shared_ctx):
    ctx, manager = shared_ctx, shared_ctx.jobs
    started = [start(ctx, f"forged-{i:02d}-" + "f" * 20) for i in range(4)]
    assert [bool(job_id) for job_id, _ in started] == [True, True, False, False]
    assert "training line is full (2 runs" in started[2][1]
    assert len(list((ctx.runs_dir / "sessions").glob("*/*/data"))) == 2  # the refused ones left nothing
    for job_id, _ in started[:2]:
        for job in manager._jobs.values():
            manager.stop(job)
    for job in list(manager._jobs.values()):
        assert manager.wait(job, 120)


@pytest.mark.parametrize("kw, message", [
    (dict(base="scratch:msggan", resolution=128, batch=256, steps=20_000), "batch size 256 is over this server's limit"),
    (dict(base="scratch:msggan", resolution=128, batch=4, steps=20_000), "steps x batch size"),
    (dict(steps=20_001), "steps must be a whole number"),
    (dict(batch=65), "batch size 65 is over"),
])
def test_runs_over_the_shared_budget_are_refused(shared_ctx, kw, message):
    job_id, text = start(shared_ctx, OWNER, **kw)
    assert job_id is None and message in text


def test_a_run_stops_when_its_time_budget_is_spent(tmp_path, tiny_weights):
    from msgen.train import TrainOptions

    manager = JobManager(threads=1)
    run_dir = tmp_path / "r"
    from msgen.data import load_image_set

    data = runs.write_data(run_dir, load_image_set([str(p) for p in IMAGES], 16).images, [p.name for p in IMAGES])
    spec = jobs.JobSpec(run_dir=run_dir, name="r", owner_key="k", data=data, base=tiny_weights / "tiny16",
                        options=TrainOptions(steps=100_000, batch_size=2, checkpoint_every=50, sample_every=1000),
                        budget_s=1.0)
    job = manager.submit(spec)
    assert manager.wait(job, 120)
    assert job.state == "stopped" and "budget" in job.message and 0 < job.step < 100_000
    assert (run_dir / "state" / "state.json").is_file()  # kept: resume it later


def test_the_page_states_the_shared_limits():
    text = T.limits_text(shared=True)
    for value in (f"{T.SHARED_LIMITS.max_jobs} in all", f"{T.SHARED_LIMITS.budget_min:g} minutes", "deleted 6 hours"):
        assert value in text


def test_an_upload_is_decoded_once(tmp_path, tiny_weights):
    ctx = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=tiny_weights)
    manager = ctx.jobs = JobManager()
    files = [str(p) for p in IMAGES]
    T.upload(ctx, files, "model:tiny16", 16, "crop", None)
    T.prepare(ctx, files, "model:tinyvae16", 16, "crop", None)  # another base at the same resolution
    job_id, _ = T.start(ctx, manager, files, "model:tiny16", 16, "crop", 2, 2, 2e-4, [], 1, 0, "once", None)
    assert job_id and T.staged_sets(ctx).decodes == 1
    T.prepare(ctx, files, "model:tiny16", 16, "pad", None)  # a different fit is a different set
    assert T.staged_sets(ctx).decodes == 2
    assert manager.wait(manager.get(job_id, ctx.owner_key(None)), 120)


def test_decoding_events_share_one_concurrency_limit(shared):
    _url, demo = shared
    fns = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    for name in ("train_upload", "train_prepare", "train_start"):
        assert fns[name].concurrency_id == "train-decode" and fns[name].concurrency_limit == T.UPLOAD_CONCURRENCY


# --- odd values ----------------------------------------------------------------------------------
@pytest.mark.parametrize("owner", [{"a": 1}, ["x"], 12345, 1.5, True])
def test_an_owner_of_any_type_is_a_clear_error(shared, owner):
    url, demo = shared
    with pytest.raises(ValueError, match="owner token"):
        demo.ctx.owner_dir(owner)
    for api, data in (("train_runs", [owner]), ("decompose_models", [owner, None]), ("models", [owner])):
        kind, payload = call(url, api, data)
        assert kind == "complete", (api, payload)  # lists simply show the shipped models
    kind, payload = call(url, "train_start", ["model:tiny16", 16, "crop", 10, 4, 2e-4, [], 5, 0, "x", owner])
    assert kind == "complete" and "owner token" in json.dumps(payload)


@pytest.mark.parametrize("field, value", [("steps", "ten"), ("batch", {"n": 4}), ("lr", [1]), ("seed", 1.5),
                                          ("resolution", {"x": 1}), ("augment", "color"), ("name", {"a": 1})])
def test_odd_values_in_train_fields_are_clear_errors(shared_ctx, field, value):
    kw = {"base": "scratch:msggan"} if field == "resolution" else {}
    job_id, text = start(shared_ctx, OWNER, **(kw | {field: value}))
    assert job_id is None and text.startswith("**Cannot start:**") and "Traceback" not in text


@pytest.mark.parametrize("count, seed, message", [(0, 0, "variants"), (2.5, 0, "variants"), (3, 1.5, "seed"),
                                                  ("x", 0, "variants"), (3, -1, "seed")])
def test_decompose_counts_and_seeds_are_whole_numbers(tmp_path, tiny_weights, count, seed, message):
    import gradio as gr

    ctx = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=tiny_weights)
    with pytest.raises(gr.Error, match=message):
        D.resample(ctx, "tinyvae16", str(IMAGES[0]), "crop", "detail", 8, seed, 0.8, count)


# --- runs that outlive a restart or a failure ---------------------------------------------------
def test_a_queued_run_is_listed_after_a_restart_and_can_be_started(tmp_path, tiny_weights):
    ctx = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=tiny_weights)
    blocked = JobManager()
    blocked._ensure_worker = lambda: None  # a server that stops before its worker takes the job
    ctx.jobs = blocked
    files = [str(p) for p in IMAGES]
    job_id, _ = T.start(ctx, blocked, files, "model:tiny16", 16, "crop", 3, 2, 2e-4, [], 1, 0, "waiting", None)
    assert job_id
    # The server restarts: a new manager knows nothing of the job, the run folder says "queued".
    fresh = ctx.jobs = JobManager()
    listed = {r.name: r for r in runs.list_runs(ctx.runs_dir, fresh.busy_run_dirs())}
    assert listed["waiting"].status == "not started" and listed["waiting"].resumable
    job_id, text = T.resume(ctx, fresh, "waiting", None, None)
    assert job_id, text
    job = fresh.get(job_id, ctx.owner_key(None))
    assert fresh.wait(job, 120) and job.state == "finished" and job.step == 3


def test_a_failed_run_says_failed_and_orphan_temp_files_are_swept(tmp_path, tiny_weights):
    from msgen.train import TrainOptions

    run_dir = tmp_path / "r"
    (run_dir / "state").mkdir(parents=True)
    orphan = run_dir / "state" / ".state.safetensors.abc123.tmp"
    orphan.write_bytes(b"\0" * 1000)
    (run_dir / ".model.new-xyz").mkdir()
    assert jobs.sweep_temp_files(run_dir) == 2 and not orphan.exists()
    manager = JobManager(threads=1)
    spec = jobs.JobSpec(run_dir=run_dir, name="r", owner_key="k", data=tmp_path / "no-such-data",
                        base=tiny_weights / "tiny16", options=TrainOptions(steps=2, batch_size=2))
    job = manager.submit(spec)
    assert manager.wait(job, 60) and job.state == "failed"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert runs.read_run(run_dir).status == "failed"


def test_odd_run_json_never_breaks_a_listing(tmp_path):
    root = tmp_path / "runs"
    for name, text in (("a", "[]"), ("b", '{"step": {}, "steps": 1}'), ("c", '{"step": 1, "steps": 2, "meta": 5, '
                                                                           '"resolution": {"x": 1}}'), ("d", "{")):
        (root / name).mkdir(parents=True)
        (root / name / "run.json").write_text(text)
    assert runs.list_runs(root) == []


def test_values_gradio_cannot_read_get_a_message(shared):
    url, _demo = shared
    kind, payload = call(url, "train_resume", ["some-run", "x", OWNER])
    assert kind == "error" and payload["error"] and "could not be read" in payload["error"]


def test_run_archives_never_use_the_servers_hub_login(tmp_path, tiny_weights, monkeypatch):
    from msgen import runzip
    from msgen.ui import train_resume as TR

    ctx = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=tiny_weights, shared=True)
    manager = JobManager()
    run = ctx.owner_dir(OWNER) / "r"
    (run / "model").mkdir(parents=True)
    (run / "run.json").write_text('{"step": 1, "steps": 1}')
    pushed, fetched = [], []
    monkeypatch.setattr(runzip, "push_run", lambda *a, **k: pushed.append(k) or "url")
    monkeypatch.setattr(runzip, "fetch_run", lambda *a, **k: fetched.append(k) or (_ for _ in ()).throw(ValueError("x")))
    text = TR.push_run(ctx, manager, "r", "someone/repo", "", False, OWNER)
    assert "your Hugging Face token" in text and not pushed
    TR.push_run(ctx, manager, "r", "someone/repo", "hf_visitor", False, OWNER)
    assert pushed[0]["token"] == "hf_visitor" and pushed[0]["use_server_login"] is False
    TR.resume_hub(ctx, manager, "someone/private-run", "", None, OWNER)
    assert fetched[0]["token"] is None and fetched[0]["use_server_login"] is False
    # ... and the real functions honour it: token=False reaches huggingface_hub, never HF_TOKEN.
    monkeypatch.undo()
    monkeypatch.setenv("HF_TOKEN", "hf_SERVER_SECRET")
    with pytest.raises(ValueError, match="token is needed"):
        runzip.push_run(run, "someone/repo", token=None, use_server_login=False)


def test_two_simultaneous_starts_never_share_or_delete_a_folder(tmp_path, tiny_weights):
    import threading

    ctx = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=tiny_weights)
    manager = ctx.jobs = JobManager()
    manager._ensure_worker = lambda: None  # both stay in line
    files = [str(p) for p in IMAGES]
    out = []

    def go():
        out.append(T.start(ctx, manager, files, "model:tiny16", 16, "crop", 5, 2, 2e-4, [], 1, 0, "cats", None))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    names = sorted(job.spec.run_dir.name for job in manager.jobs())
    assert all(job_id for job_id, _ in out) and names == ["cats", "cats-2"]
    assert all((ctx.runs_dir / n / "data").is_dir() for n in names)


def test_resuming_a_never_started_run_is_budgeted_at_its_own_resolution(tmp_path):
    from tests.conftest import make_tiny_model

    weights = tmp_path / "w"
    make_tiny_model(weights / "tiny64", resolution=64, seed=4)
    ctx = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=weights, shared=True)
    blocked = ctx.jobs = JobManager()
    blocked._ensure_worker = lambda: None
    job_id, text = T.start(ctx, blocked, [str(p) for p in IMAGES], "model:tiny64", 64, "crop", 10, 4, 2e-4, [], 5, 0,
                           "waiting", OWNER)
    assert job_id, text
    fresh = ctx.jobs = JobManager()  # the server restarted
    limit_64 = T.SHARED_LIMITS.max_images // 4 // 4  # steps at batch 4 and 64 px (a 32 px reading allows 4x)
    job_id, text = T.resume(ctx, fresh, "waiting", limit_64 + 1, OWNER)
    assert job_id is None and "steps x batch size" in text and "64 px" in text


@pytest.mark.parametrize("resolution", [32, 64])
def test_the_default_fine_tune_fits_a_shared_hosts_budget_and_four_times_it_does_not(resolution, tmp_path):
    from msgen.defaults import FINETUNE
    from msgen.train import TrainOptions
    from msgen.ui import train_limits

    ctx = common.AppContext(runs_dir=tmp_path / "runs", shared=True)
    default = TrainOptions(steps=FINETUNE.steps, batch_size=FINETUNE.batch_size, lr=FINETUNE.lr)
    train_limits.check_budget(ctx, default, resolution)  # a stranger's default run is not refused
    with pytest.raises(ValueError, match="steps x batch size"):
        train_limits.check_budget(ctx, dataclasses.replace(default, steps=default.steps * 4 + 1), resolution)
