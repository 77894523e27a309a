"""The Train tab's job manager: one training run at a time in a background thread, the rest in line.

(About 340 lines: the manager, its one worker and the job it runs share the lock and the job's fields.)

A web page must not train inside a request: a run outlives the request, the visitor may reload
the page, and other visitors must keep generating while it trains. So ``JobManager`` owns a
single worker thread that takes ``Job``s first come first served; the page polls a job's
``snapshot()`` (a gr.Timer) for the progress bar, the loss curves and the latest preview, and
``stop()`` sets the ``Trainer``'s stop flag, which it honours between two steps and answers with
a final checkpoint. The worker trains with fewer torch threads than the process has (one on a
2-core host), so generation requests keep a core of their own.

Each job reads its images with ``msgen.data.load_image_set`` and builds the same ``Trainer`` and
``TrainOptions`` as ``python -m msgen train``, so a run started on the page gives the weights the
CLI gives for the same data, seed and options, and the same quality report around the training
(``msgen.report.train_with_report``: SWD at every level, coverage and near-duplicates, before and
after training, beside a half-vs-half floor). The run folder's files are ``msgen.run.Run``'s.

On a shared host one stranger must not hold the only worker: ``JobManager(max_jobs=...)`` caps
the runs training or in line at once (whoever sends them: owner tokens are the browser's own
choice, so a per-visitor cap alone bounds nothing), and each job may carry a wall-clock budget
(``JobSpec.budget_s``) after which it stops as if the visitor had pressed Stop, keeping its last
checkpoint. A queued run writes its ``run.json`` at once, so it is still listed (and can be
started again) after a server restart; a run that fails records "failed" and the reason there.
"""

from __future__ import annotations

import collections
import dataclasses
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import checkpoint as ckpt
from ..defaults import training_threads
from ..options import options_to_dict
from ..report import train_with_report
from ..run import DataRecord, Run, RunRecord
from ..train import Progress, Trainer, TrainOptions, fine_tune_config

HISTORY_POINTS = 400  # loss curves are thinned to about this many points per series for the plot
HISTORY_MAX = 20_000  # (step, series, value) entries a job keeps; older steps are thinned beyond it
ETA_WINDOW_STEPS = 50  # the ETA follows the pace of the latest steps, not the run's average
ACTIVE = ("queued", "running", "stopping")


@dataclass
class JobSpec:
    """Everything a run needs, resolved by the page (or a test) before it is queued."""

    run_dir: Path
    name: str
    owner_key: str  # the folder of the visitor who started it: only they may see or stop it
    data: Path | list[Path]  # what load_image_set reads: the run's data/ folder, a zip, or files
    options: TrainOptions
    fit: str = "crop"
    background: tuple[int, int, int] = (255, 255, 255)
    base: Path | None = None  # exported model to fine-tune ...
    config: Any = None  # ... or the config to train from scratch (also used to resume)
    meta: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    budget_s: float | None = None  # wall-clock training budget of this job; None = unbounded
    client: str = ""  # the address that asked for it (shared hosts cap runs per address)


@dataclass(eq=False)  # identity, not field-by-field: jobs hold tensors and events
class Job:
    spec: JobSpec
    id: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    state: str = "queued"  # queued, running, stopping, finished, stopped, failed
    step: int = 0
    total: int = 0
    images_per_s: float = 0.0
    eta_s: float | None = None
    elapsed: float = 0.0
    history: list[tuple[int, str, float]] = field(default_factory=list)  # (step, series, value)
    stride: int = 1  # steps between kept history entries
    preview: Any = None  # MultiScaleOutput of the EMA generator on the fixed preview seeds
    preview_step: int = -1
    message: str = ""
    quality: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    stop_event: threading.Event = field(default_factory=threading.Event)
    recent: collections.deque = field(default_factory=lambda: collections.deque(maxlen=ETA_WINDOW_STEPS))

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def on_progress(self, p: Progress) -> None:
        self.step, self.total, self.elapsed = p.step, p.total, p.elapsed
        self.images_per_s, self.eta_s = p.images_per_s, eta_from_recent(self.recent, p)
        if p.step % self.stride == 0:
            self.history.extend((p.step, key, float(value)) for key, value in p.losses.items())
        if len(self.history) > HISTORY_MAX:  # a long run keeps every 2nd, 4th ... step: bounded memory
            self.stride *= 2
            self.history = [h for h in self.history if h[0] % self.stride == 0]
        if p.preview is not None:
            self.preview, self.preview_step = p.preview, p.step

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy for the page (the worker keeps appending while it is read)."""
        return {"id": self.id, "name": self.spec.name, "state": self.state, "step": self.step, "total": self.total,
                "images_per_s": self.images_per_s, "eta_s": self.eta_s, "elapsed": self.elapsed,
                "history": list(self.history), "preview": self.preview, "preview_step": self.preview_step,
                "message": self.message, "quality": dict(self.quality)}


def eta_from_recent(recent: collections.deque, p: Progress) -> float | None:
    """Seconds left at the pace of the last ``ETA_WINDOW_STEPS`` steps: a machine that got busier
    mid-run (another visitor generating, a second run) shows it at once, unlike the run's average."""
    now = time.monotonic()
    recent.append((now, p.step))
    if p.done or p.step >= p.total:
        return 0.0
    if len(recent) < 2:
        return p.eta_s
    (t0, s0), (t1, s1) = recent[0], recent[-1]
    if s1 <= s0 or t1 <= t0:
        return p.eta_s
    return (p.total - p.step) * (t1 - t0) / (s1 - s0)


class JobManager:
    """First come, first served; one job trains at a time; thread-safe."""

    def __init__(self, threads: int | None = None, keep_finished: int = 64, max_jobs: int | None = None):
        self.threads = threads or training_threads()
        self.keep_finished = keep_finished
        self.max_jobs = max_jobs  # runs training or in line at once, everyone's together; None = no cap
        self._jobs: dict[str, Job] = {}
        self._queue: collections.deque[Job] = collections.deque()
        self._current: Job | None = None
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None

    # --- what the page calls -----------------------------------------------------------------
    def submit(self, spec: JobSpec, *, max_per_owner: int | None = None, max_per_client: int | None = None) -> Job:
        """Queue ``spec``; every cap is checked here, under the lock, so two simultaneous requests
        cannot both take the last place."""
        with self._cond:
            active = [j for j in self._jobs.values() if j.active]
            busy = {j.spec.run_dir.resolve() for j in active}
            if spec.run_dir.resolve() in busy:
                raise ValueError(f"run {spec.name!r} is already training or in line")
            if max_per_owner is not None and sum(j.spec.owner_key == spec.owner_key for j in active) >= max_per_owner:
                raise ValueError("you already have a run training or in line; stop it or wait for it to finish")
            if max_per_client is not None and spec.client and \
                    sum(j.spec.client == spec.client for j in active) >= max_per_client:
                raise ValueError("a run from your address is already training or in line; wait for it to finish")
            if self.max_jobs is not None and len(busy) >= self.max_jobs:
                raise ValueError(f"the training line is full ({self.max_jobs} runs training or waiting); "
                                 "try again when one has finished")
            job = Job(spec, total=spec.options.steps)
            if not spec.resume:
                _write_queued(spec)
            self._jobs[job.id] = job
            self._queue.append(job)
            self._prune()
            self._ensure_worker()
            self._cond.notify_all()
            return job

    def get(self, job_id: str | None, owner_key: str) -> Job | None:
        """The job, if it exists and belongs to ``owner_key``; a stranger's id is as good as none."""
        with self._cond:
            job = self._jobs.get(job_id if isinstance(job_id, str) else "")
        return job if job is not None and job.spec.owner_key == owner_key else None

    def jobs(self) -> list[Job]:
        """A snapshot of the table (the worker and other requests change it meanwhile)."""
        with self._cond:
            return list(self._jobs.values())

    def of_run(self, owner_key: str, run_dir: Path) -> Job | None:
        """The newest job of ``owner_key`` on ``run_dir``, or None."""
        mine = [j for j in self.jobs() if j.spec.owner_key == owner_key and j.spec.run_dir.resolve() == run_dir.resolve()]
        return max(mine, key=lambda j: j.created) if mine else None

    def latest(self, owner_key: str) -> Job | None:
        mine = [j for j in self.jobs() if j.spec.owner_key == owner_key]
        active = [j for j in mine if j.active]
        pool = active or mine
        return max(pool, key=lambda j: j.created) if pool else None

    def position(self, job: Job) -> int:
        """0 while training, k for the k-th in line, -1 when it is over."""
        with self._cond:
            if job is self._current:
                return 0
            for i, queued in enumerate(self._queue, start=1):
                if queued is job:
                    return i
            return -1

    def stop(self, job: Job) -> None:
        with self._cond:
            if job in self._queue:
                self._queue.remove(job)
                job.state, job.message = "stopped", "removed from the line before it started"
                if not job.spec.resume and not Run(job.spec.run_dir).state_dir.exists():
                    shutil.rmtree(job.spec.run_dir, ignore_errors=True)  # only its data snapshot
            elif job.state == "running":
                job.state = "stopping"
            job.stop_event.set()

    def busy_run_dirs(self) -> set[Path]:
        with self._cond:
            return {j.spec.run_dir.resolve() for j in self._jobs.values() if j.active}

    def client_count(self, client: str) -> int:
        return sum(1 for j in self.jobs() if j.active and client and j.spec.client == client)

    def active_count(self, owner_key: str) -> int:
        return sum(1 for j in self.jobs() if j.active and j.spec.owner_key == owner_key)

    def wait(self, job: Job, timeout: float = 60.0) -> bool:
        """Block until ``job`` is over (tests, the bench); True if it ended in time."""
        deadline = time.monotonic() + timeout
        while job.active and time.monotonic() < deadline:
            time.sleep(0.05)
        return not job.active

    # --- the worker ----------------------------------------------------------------------------
    def _prune(self) -> None:
        done = sorted((j for j in self._jobs.values() if not j.active), key=lambda j: j.created)
        for job in done[: max(0, len(done) - self.keep_finished)]:
            del self._jobs[job.id]

    def _ensure_worker(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            return
        ready = threading.Event()
        restore = torch.get_num_threads()
        self._worker = threading.Thread(target=self._loop, args=(ready,), name="msgen-train", daemon=True)
        self._worker.start()
        ready.wait(5)
        # torch.set_num_threads sets the calling thread's OpenMP count *and* the default that new
        # threads copy; the worker has taken its own count, so put the default back for the rest.
        torch.set_num_threads(restore)

    def _loop(self, ready: threading.Event) -> None:
        torch.get_num_threads()  # initialise this thread's OpenMP state before changing it
        torch.set_num_threads(self.threads)
        ready.set()
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                job = self._current = self._queue.popleft()
                job.state = "stopping" if job.stop_event.is_set() else "running"
            try:
                run_job(job)
            except Exception as exc:  # one bad run must never take the worker down
                job.state, job.message = "failed", _brief(exc)
                Run(job.spec.run_dir).mark_failed(job.message)
            finally:
                with self._cond:
                    self._current = None


def run_job(job: Job) -> None:
    """Train one job in the calling thread: the same data loading, Trainer and report as the CLI."""
    from ..data import load_image_set

    spec = job.spec
    run = Run(spec.run_dir)
    run.sweep_temp_files()  # only this worker writes this run: any temp file is a killed write's
    data = load_image_set(spec.data, _resolution(spec), fit=spec.fit, background=spec.background)
    if data.images.shape[0] == 0:
        raise ValueError("no usable images in this run's data")
    started: list[float] = []  # the budget counts training time: from the loop's first stop check

    def stop_now() -> bool:
        if not started:
            started.append(time.monotonic())
        if spec.budget_s is not None and time.monotonic() - started[0] > spec.budget_s:
            if not job.stop_event.is_set():
                job.message = f"stopped: the {spec.budget_s / 60:g}-minute budget of one run on this server is spent"
                job.stop_event.set()
        return job.stop_event.is_set()

    trainer = Trainer(images=data.images, run_dir=spec.run_dir, config=spec.config if spec.base is None else None,
                      base=spec.base, options=spec.options, callbacks=(job.on_progress,), stop=stop_now,
                      meta=spec.meta, data=_data_record(spec, int(data.images.shape[0])))
    job.step = run.step()
    budget_note: list[str] = []

    def note(text: str) -> None:
        if job.message.startswith("stopped:"):
            budget_note.append(job.message)
        job.message = text

    job.quality = train_with_report(trainer, data.images, note=note)  # re-exports: the card carries the report
    job.step = trainer.step
    job.state = "stopped" if job.stop_event.is_set() and trainer.step < spec.options.steps else "finished"
    job.message = budget_note[-1] if budget_note else ""


def _data_record(spec: JobSpec, count: int | None = None) -> DataRecord:
    """Where a job's images are: None for the run's own snapshot, else the one file or folder."""
    source = spec.data if isinstance(spec.data, Path) and spec.data != Run(spec.run_dir).data_dir else None
    return DataRecord(source=str(source.resolve()) if source is not None else None, fit=spec.fit,
                      background=tuple(spec.background), images=count)


def _write_queued(spec: JobSpec) -> None:
    """``run.json`` for a run in line: the record the Trainer writes, status "queued"."""
    config = spec.config if spec.config is not None else (
        fine_tune_config(_model_config(spec.base)) if spec.base else None)  # what the Trainer will build
    Run(spec.run_dir).write(RunRecord(
        status="queued", step=0, steps=spec.options.steps, family=getattr(config, "family", None),
        resolution=getattr(config, "resolution", 0), config=dataclasses.asdict(config) if config is not None else None,
        options=options_to_dict(spec.options), base=str(spec.base) if spec.base is not None else None,
        data=_data_record(spec),
        command=spec.meta.get("command"), meta=spec.meta))


def sweep_temp_files(run_dir: Path) -> int:
    """``Run.sweep_temp_files``: what a killed atomic write left in a run."""
    return Run(run_dir).sweep_temp_files()


def _model_config(path: Path) -> Any:
    """The config of a model folder from its config.json alone (checked; no tensors are read)."""
    return ckpt.read_config(path)[0]


def _resolution(spec: JobSpec) -> int:
    if spec.base is not None:
        return int(_model_config(spec.base).resolution)
    return int(spec.config.resolution)


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
