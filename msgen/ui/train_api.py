"""The Train tab for scripts: start a run from files in one call, follow and stop it by name.

The page's own events keep their state in the browser session (the uploaded files, the job
id), so a script that lost its ``Client`` could not follow its run again, and polling answered
with UI update objects to merge. These three endpoints are plain functions of plain values,
registered with ``gr.api``:

* ``/train``: upload files (``gradio_client.handle_file``) and the settings -> the new run's
  status. The files are judged exactly as the page's upload is (``msgen.data``), and the run is
  queued as the page's Start button queues it.
* ``/train_status``: a run's name -> its status: state, place in line, step, total, images/s,
  ETA (from recent steps), the latest losses, the loss history, the latest preview grid (a
  ``data:image/png`` URL), the quality report and the message. A run that is not in memory (an
  earlier process, another page) is read from its folder.
* ``/train_stop``: a run's name -> its status after asking it to stop.

On a shared host every name is looked up in the caller's own folder (its ``owner`` token; a
call without one gets a fresh token back in ``status["owner"]`` to pass next time), so a
stranger's run can be neither followed nor stopped.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import gradio as gr

from .. import render
from ..run import Run
from . import common, runs, validate
from .jobs import JobManager

HISTORY_POINTS = 200  # loss history points per series in a status (the page's plot keeps more)


def file_paths(files: Any) -> list[str]:
    """Uploaded file payloads -> paths inside gradio's upload cache; anything else is refused."""
    if not isinstance(files, (list, tuple)) or not files:
        raise ValueError("files: upload one or more pictures or zips (gradio_client.handle_file)")
    out = []
    for f in files:
        path = f.get("path") if isinstance(f, dict) else None
        out.append(str(validate.in_upload_folder(path)))
    return out


def start_run(ctx: common.AppContext, manager: JobManager, files: Any, *, base: str | None, resolution: Any, fit: str,
              steps: Any, batch: Any, lr: Any, augment: Any, preview_every: Any, seed: Any, name: str | None,
              owner: str | None, client: str = "") -> dict[str, Any]:
    from . import train as T

    owner = common.ensure_owner(owner) if ctx.shared else owner
    try:
        paths = file_paths(files)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    base = base or T.default_base(ctx)
    if None in (steps, batch, lr):  # not given: the base family's fine-tune defaults, as the form proposes
        start = T.start_values(ctx, base, owner)
        steps, batch, lr = (start[0] if steps is None else steps, start[1] if batch is None else batch,
                            start[2] if lr is None else lr)
    job_id, text = T.start(ctx, manager, paths, base, resolution, fit, steps, batch, lr,
                           augment, preview_every, seed, name, owner, client)
    if job_id is None:
        raise gr.Error(text.replace("**", ""))
    job = manager.get(job_id, ctx.owner_key(owner))
    return run_status(ctx, manager, job.spec.name, owner)


def _job_of(ctx: common.AppContext, manager: JobManager, run_dir, owner):
    try:
        key = ctx.owner_key(owner)
    except ValueError:
        return None
    return manager.of_run(key, run_dir)


def _run_dir(ctx: common.AppContext, run: Any, owner: Any):
    try:
        return runs.run_dir_of(ctx.owner_dir(owner), validate.text(run, "run", 64))
    except ValueError as exc:
        raise gr.Error(str(exc)) from None


def run_status(ctx: common.AppContext, manager: JobManager, run: Any, owner: Any) -> dict[str, Any]:
    """A plain dict: what a script needs to follow one run (see the module docstring)."""
    run_dir = _run_dir(ctx, run, owner)
    ctx.touch(owner)
    job = _job_of(ctx, manager, run_dir, owner)
    info = runs.read_run(run_dir, manager.busy_run_dirs())
    out: dict[str, Any] = {"run": run_dir.name, "owner": owner if ctx.shared else None}
    if job is not None:
        snap = job.snapshot()
        latest: dict[str, float] = {}
        for _step, series, value in snap["history"]:
            latest[series] = value
        out |= {"state": snap["state"], "position": manager.position(job), "step": snap["step"],
                "total": snap["total"], "images_per_s": round(snap["images_per_s"], 2),
                "eta_s": None if snap["eta_s"] is None else round(snap["eta_s"], 1),
                "elapsed_s": round(snap["elapsed"], 1), "losses": latest, "history": _thin(snap["history"]),
                "preview": _preview_url(snap["preview"]), "preview_step": snap["preview_step"],
                "message": snap["message"]}
    else:
        out |= {"state": info.status if info else "unknown", "position": -1, "step": info.step if info else 0,
                "total": info.steps if info else 0, "images_per_s": None, "eta_s": None, "elapsed_s": None,
                "losses": {}, "history": [], "preview": _samples_url(run_dir), "preview_step": info.step if info else -1,
                "message": ""}
    out["active"] = out["state"] in ("queued", "running", "stopping")
    out["has_model"] = bool(info and info.has_model)
    out["resumable"] = bool(info and info.resumable)
    out["quality"] = (job.quality if job is not None and job.quality else None) or Run(run_dir).quality()
    out["time"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return out


def stop_run(ctx: common.AppContext, manager: JobManager, run: Any, owner: Any) -> dict[str, Any]:
    run_dir = _run_dir(ctx, run, owner)
    job = _job_of(ctx, manager, run_dir, owner)
    if job is None or not job.active:
        raise gr.Error(f"{run_dir.name} is not training or in line")
    manager.stop(job)
    return run_status(ctx, manager, run_dir.name, owner) if run_dir.exists() else {
        "run": run_dir.name, "state": "stopped", "active": False, "message": job.message}


def _thin(history: list[tuple[int, str, float]]) -> list[list]:
    by_series: dict[str, list] = {}
    for step, series, value in history:
        by_series.setdefault(series, []).append([step, series, round(float(value), 5)])
    out = []
    for points in by_series.values():
        stride = max(1, len(points) // HISTORY_POINTS)
        out += points[::stride]
    return sorted(out, key=lambda p: (p[0], p[1]))


def _png_url(image) -> str:
    return "data:image/png;base64," + base64.b64encode(render.png_bytes(image)).decode()


def _preview_url(preview) -> str | None:
    if preview is None:
        return None
    from .train_view import preview_grid

    return _png_url(preview_grid(preview))


def _samples_url(run_dir) -> str | None:
    path = Run(run_dir).samples_png
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def register(ctx: common.AppContext, manager: JobManager) -> None:
    """Add the three endpoints to the Blocks being built (inside ``gr.Blocks()``)."""
    from . import train as T

    def train(files: list[gr.FileData], base: str = "", resolution: int = 32, fit: str = "crop",
              steps: int | None = None, batch: int | None = None, lr: float | None = None,
              augment: list[str] | None = None, preview_every: int = T.DEFAULT_PREVIEW_EVERY, seed: int = 0,
              name: str = "", owner: str | None = None, request: gr.Request = None) -> dict:
        """Start a training run from uploaded pictures in one call; returns the run's status.

        Parameters:
            files: pictures and/or zips of pictures (gradio_client.handle_file each)
            base: "model:NAME" to fine-tune a listed model, or "scratch:FAMILY"; empty: the page's default
            resolution: training resolution, used only when training from scratch (16, 32, 64 or 128)
            fit: "crop" (centre square) or "pad" non-square pictures
            steps: optimisation steps in total; None: the base family's fine-tune default
            batch: images per step; None: the base family's default
            lr: learning rate; None: the base family's default
            augment: DiffAugment policies among "color", "translation", "cutout"; None: all three
            preview_every: steps between preview grids
            seed: seed of the run (0 to 4294967295)
            name: name of the result; empty: "<base>-ft"; a clash gets -2, -3 ...
            owner: on a shared server, your token (from an earlier status); None: a new one is made
        Returns:
            status: a dict (see /train_status)
        """
        aug = list(T.POLICIES) if augment is None else augment
        return start_run(ctx, manager, files, base=base or None, resolution=resolution, fit=fit, steps=steps,
                         batch=batch, lr=lr, augment=aug, preview_every=preview_every, seed=seed, name=name,
                         owner=owner, client=common.client_id(request))

    def train_status(run: str, owner: str | None = None) -> dict:
        """A run's status by name: state, position in line, step, total, images_per_s, eta_s, losses,
        history ([step, series, value]), preview (data:image/png URL), quality, message.

        Parameters:
            run: the run's name (as /train returned it)
            owner: on a shared server, the token the run was started with
        Returns:
            status: a dict
        """
        return run_status(ctx, manager, run, owner)

    def train_stop(run: str, owner: str | None = None) -> dict:
        """Stop a run by name after its current step (a final checkpoint is kept); returns its status.

        Parameters:
            run: the run's name
            owner: on a shared server, the token the run was started with
        Returns:
            status: a dict
        """
        return stop_run(ctx, manager, run, owner)

    gr.api(train, api_name="train", concurrency_limit=T.UPLOAD_CONCURRENCY, concurrency_id="train-decode")
    gr.api(train_status, api_name="train_status", concurrency_limit=None)
    gr.api(train_stop, api_name="train_stop", concurrency_limit=None)
