"""Train tab handlers: plain functions of the form's values, testable without building Blocks.

(About 330 lines: every handler of the Train tab, none of its layout, which is train.py's.)

Upload -> ``prepare`` (the accepted images exactly as they will be trained, and every rejection
with its reason) -> ``start`` (a ``JobSpec`` queued on the ``JobManager``) -> the page's timer
polls ``poll`` for the progress bar, loss curves, preview grid and quality report -> the model
appears in the Generate tab's list (``list_updates``), and can be resumed, downloaded or pushed.
The run uses ``msgen.data.load_image_set`` and ``TrainOptions`` exactly as
``python -m msgen train`` does, so the page and the CLI give the same weights for one seed.

An upload is decoded once (``ctx.staged``): Start and a change of base at the same resolution
reuse it. On a shared host every run is bounded (``train_limits.SHARED_LIMITS``). Pictures come
from ``msgen.render``, rendering of the live view from ``train_view``, the form's values from
``train_form``. Handlers return values and ``gr.update``/``gr.skip`` markers, never components.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from .. import checkpoint as ckpt
from .. import render, validate
from ..report import read_quality
from . import common, runs
from .jobs import JobManager, JobSpec
from .staging import StagedSets, file_key
from .train_form import base_choices, cli_command, options_from_form, resolve_base
from .train_limits import FEW_IMAGES, MAX_STEPS, SHARED_LIMITS, _budget, check_budget, check_disk, upload_limits
from .train_view import loss_frame, preview_grid, progress_html, quality_markdown, status_markdown

GALLERY_MAX = 48  # thumbnails shown; the count says how many more were accepted
THUMB = 96  # a thumbnail's side in pixels (whole-factor nearest enlargement)
UPLOAD_CONCURRENCY = 2  # uploads decoding at once (each also waits for msgen.data's decode slots)


# --- upload ------------------------------------------------------------------------------------
def _paths(files: Any) -> list[str]:
    """The uploaded files' paths, as gradio's File component hands them over (preprocessed, so
    gradio has already refused any path outside its upload cache)."""
    if not files:
        return []
    files = files if isinstance(files, (list, tuple)) else [files]
    out = []
    for f in files:
        path = getattr(f, "path", None) or getattr(f, "name", None) or f
        if not isinstance(path, (str, Path)):
            raise ValueError("the upload did not arrive as files; upload them again")
        out.append(str(path))
    return out


def _thumb(image: torch.Tensor) -> Any:
    from PIL import Image

    return Image.fromarray(render.thumbnail(image, THUMB))


def staged_sets(ctx: common.AppContext) -> StagedSets:
    return ctx.staged


def load_upload(ctx: common.AppContext, paths: list[str], resolution: int, fit: str, owner: str | None):
    """The upload as an ``ImageSet`` at ``resolution``: decoded once, then served from the stage."""
    from ..data import ImageSet, load_image_set

    # Keyed by the files alone: gradio names an upload by its content, so a hit is the same bytes
    # (a fresh owner token gains no second decode, and learns nothing it did not upload).
    key = (file_key(paths), resolution, fit)
    hit = ctx.staged.get(key)
    if hit is None:
        data = load_image_set(paths, resolution, fit=fit, limits=upload_limits(ctx))
        ctx.staged.put(key, data.images, data.names, data.rejected, resolution)
        return data
    return ImageSet(hit.as_float(), list(hit.names), list(hit.rejected), hit.resolution)


def prepare(ctx: common.AppContext, files: Any, base: str | None, resolution: Any, fit: str, owner: str | None):
    """(gallery, rejected rows, summary markdown, image set or None) for the uploaded files."""
    from ..data import DataError

    try:
        paths = _paths(files)
    except ValueError as exc:
        return [], [], f"**Cannot use this upload:** {exc}", None
    if not paths:
        return [], [], "Upload images (many files at once) or a zip to begin.", None
    try:
        fit = validate.choice(fit or "crop", "fit", ("crop", "pad"))
        target = resolve_base(ctx, base, resolution, owner)
        data = load_upload(ctx, paths, target.resolution, fit, owner)
    except (DataError, ValueError) as exc:
        return [], [], f"**Cannot use this upload:** {exc}", None
    rows = [[r.name, r.reason] for r in data.rejected]
    n = int(data.images.shape[0])
    # Captioned with the file's own name (a zip member's, without the zip's), so a thumbnail can be
    # matched to its file; the full path is in the rejected table where it matters.
    gallery = [(_thumb(img), name.rsplit("/", 1)[-1]) for img, name in zip(data.images[:GALLERY_MAX], data.names)]
    lines = [f"**{n} image{'s' * (n != 1)} accepted** at {data.resolution}x{data.resolution} ({fit or 'crop'}), "
             f"{len(rows)} rejected."]
    if n > GALLERY_MAX:
        lines.append(f"Showing the first {GALLERY_MAX}.")
    if n == 0:
        lines.append("**No usable images: training cannot start.** See the reasons below.")
    elif n < FEW_IMAGES:
        lines.append(f"**Warning:** only {n} images. The generator will likely memorise them; "
                     f"{FEW_IMAGES} or more (50-200 ideal) give it something to generalise from.")
    return gallery, rows, " ".join(lines), data


def upload(ctx: common.AppContext, files: Any, base: str | None, resolution: Any, fit: str, owner: str | None = None):
    """Upload event: (gallery, rejected rows, summary, files kept for ``start``, owner token)."""
    owner = common.ensure_owner(owner) if ctx.shared else owner
    ctx.touch(owner)
    ctx.expire_sessions(keep=ctx.jobs.busy_run_dirs())
    gallery, rows, summary, data = prepare(ctx, files, base, resolution, fit, owner)
    return gallery, rows, summary, _paths(files), owner


# --- start / resume / stop ---------------------------------------------------------------------
def _per_owner(ctx) -> int:
    return 1 if ctx.shared else 8  # runs one visitor may have training or in line


def start(ctx, manager: JobManager, files, base, resolution, fit, steps, batch, lr, augment, preview_every, seed,
          name, owner, client: str = "", family_values: dict | None = None) -> tuple[str | None, str]:
    """Queue a new run; returns (job id or None, status markdown). ``client``: the caller's address;
    ``family_values``: the chosen family's own controls ("family.field" -> value, ``train_family``)."""
    try:
        root = ctx.owner_dir(owner)
        if manager.active_count(ctx.owner_key(owner)) >= _per_owner(ctx):
            raise ValueError("you already have a run training or in line; stop it or wait for it to finish")
        if ctx.shared and client and manager.client_count(client) >= SHARED_LIMITS.per_client:
            raise ValueError("a run from your address is already training or in line; wait for it to finish")
        check_disk(ctx, root)
        target = resolve_base(ctx, base, resolution, owner)
        options = options_from_form(ctx, steps, batch, lr, augment, preview_every, seed, target.family, family_values)
        check_budget(ctx, options, target.resolution)
        name = validate.text(name, "name", validate.NAME_MAX)
        ctx.touch(owner)
        _gallery, _rows, summary, data = prepare(ctx, files, base, resolution, fit, owner)
        if data is None:
            reason = summary.replace("**Cannot use this upload:** ", "")
            raise ValueError(reason if summary.startswith("**Cannot use") else "no usable images: upload some first")
        if data.images.shape[0] == 0:
            raise ValueError("no usable images in this upload, so there is nothing to train on")
        ctx.expire_sessions(keep=manager.busy_run_dirs())
        root.mkdir(parents=True, exist_ok=True)
        ctx.touch(owner)
        shipped = {e.name for e in ctx.models(owner) if e.source == "shipped"}
        run_dir = runs.new_run_dir(root, name or f"{target.name or target.family}-ft", taken=shipped, create=True)
        data_dir = runs.write_data(run_dir, data.images, data.names)
    except (ValueError, OSError) as exc:
        return None, f"**Cannot start:** {exc}"
    meta = {"title": run_dir.name, "dataset": f"{data.images.shape[0]} uploaded images", "dataset_short": "your images",
            "command": cli_command(ctx, target, options, data_dir, run_dir, manager.threads), "source": "msgen web app"}
    if target.name:
        meta["base_name"] = target.name
    spec = JobSpec(run_dir=run_dir, name=run_dir.name, owner_key=ctx.owner_key(owner), data=data_dir,
                   options=options, base=target.path, config=target.config, meta=meta, budget_s=_budget(ctx),
                   client=client)
    try:
        job = manager.submit(spec, max_per_owner=_per_owner(ctx),
                             max_per_client=SHARED_LIMITS.per_client if ctx.shared and client else None)
    except ValueError as exc:  # the line is full: the data snapshot goes, nothing else was written
        shutil.rmtree(run_dir, ignore_errors=True)
        return None, f"**Cannot start:** {exc}"
    return job.id, f"**{run_dir.name}** queued ({data.images.shape[0]} images, {options.steps} steps)."


def resume(ctx, manager: JobManager, run_name, until, owner, client: str = "") -> tuple[str | None, str]:
    try:
        if ctx.shared and client and manager.client_count(client) >= SHARED_LIMITS.per_client:
            raise ValueError("a run from your address is already training or in line; wait for it to finish")
        run_dir = runs.run_dir_of(ctx.owner_dir(owner), validate.text(run_name, "run", validate.RUN_MAX))
        if run_dir.resolve() in manager.busy_run_dirs():
            raise ValueError(f"{run_name} is already training or in line")
        if manager.active_count(ctx.owner_key(owner)) >= _per_owner(ctx):
            raise ValueError("you already have a run training or in line; stop it or wait for it to finish")
        goal = MAX_STEPS[ctx.shared]
        until = validate.whole(until, "train until step", 1, goal) if until not in (None, "") else None
        ctx.touch(owner)
        spec = runs.resume_spec(run_dir, owner_key=ctx.owner_key(owner), until=until, resolve_base=_resumable_base(ctx, owner))
        check_budget(ctx, spec.options, _spec_resolution(spec))
        spec.budget_s, spec.client = _budget(ctx), client
        job = manager.submit(spec, max_per_owner=_per_owner(ctx),
                             max_per_client=SHARED_LIMITS.per_client if ctx.shared and client else None)
    except (ValueError, OSError, KeyError) as exc:
        return None, f"**Cannot resume:** {exc}"
    return job.id, f"**{run_dir.name}** resuming from its last checkpoint, towards step {spec.options.steps}."


def _resumable_base(ctx, owner):
    """Base models a run that never started may name again: shipped ones and the visitor's own."""
    def find(name: str) -> Path:
        return ctx.find(name, owner).path
    return find


def _spec_resolution(spec: JobSpec) -> int:
    if spec.base is not None:  # a run that never started fine-tunes this model: its resolution
        return int(ckpt.read_config(spec.base)[0].resolution)
    return int(spec.config.resolution)


def stop(ctx, manager: JobManager, job_id, owner) -> str:
    job = manager.get(job_id, _key(ctx, owner))
    if job is None or not job.active:
        return "Nothing is training for you right now."
    manager.stop(job)
    return f"**{job.spec.name}**: stopping after this step; the last checkpoint is kept."


def _key(ctx, owner) -> str:
    try:
        return ctx.owner_key(owner)
    except ValueError:
        return ""


# --- live view (rendering in train_view.py) ----------------------------------------------------
def view(ctx, manager: JobManager, job_id, owner) -> dict[str, Any] | None:
    """Everything the page shows about the visitor's job, or None if there is none."""
    job = manager.get(job_id, _key(ctx, owner))
    if job is None:
        return None
    snap = job.snapshot()
    quality = snap["quality"] or read_quality(job.spec.run_dir)
    return {"status": status_markdown(manager, job, snap), "progress": progress_html(snap),
            "losses": loss_frame(snap["history"]), "preview": snap["preview"], "preview_step": snap["preview_step"],
            "quality": quality_markdown(quality), "state": snap["state"], "active": job.active,
            "history_len": len(snap["history"]), "name": snap["name"]}


def poll(ctx, manager: JobManager, job_id, seen, owner, *, generate: bool) -> list:
    """One tick of the page's timer: (status, progress, losses, preview, quality, timer, seen, *lists).
    Losses and preview are sent only when new (``seen`` remembers what the page has); when the run
    ends the lists (``list_updates``; ``generate``: with the Generate tab's) pick it."""
    v = view(ctx, manager, job_id, owner)
    lists = 3 if generate else 2
    if v is None:
        return [gr.skip()] * 5 + [gr.Timer(active=False), seen] + [gr.skip()] * lists
    seen = seen or {}
    fresh_preview = v["preview"] is not None and v["preview_step"] != seen.get("preview_step")
    fresh_losses = v["history_len"] != seen.get("history_len") and v["history_len"] > 0
    ended = not v["active"] and seen.get("active", True)
    new_seen = {"preview_step": v["preview_step"], "history_len": v["history_len"], "active": v["active"]}
    return [v["status"], v["progress"], v["losses"] if fresh_losses else gr.skip(),
            preview_grid(v["preview"]) if fresh_preview else gr.skip(), v["quality"],
            gr.Timer(active=v["active"]), new_seen,
            *(list_updates(ctx, manager, owner, v["name"], generate=generate) if ended else [gr.skip()] * lists)]


def restore(ctx, manager: JobManager, owner, *, generate: bool) -> list:
    """A page load: (job, seen, timer, status, *lists). A run still training or in line is this
    page's run; a finished one is not presented as the current one, only said where it is."""
    ctx.touch(owner)
    ctx.expire_sessions(keep=manager.busy_run_dirs())  # page loads are the periodic tick
    latest = manager.latest(_key(ctx, owner))
    lists = list_updates(ctx, manager, owner, generate=generate)
    if latest is not None and latest.active:
        return [latest.id, None, gr.Timer(active=True), gr.skip(), *lists]
    return [None, None, gr.Timer(active=False), restore_note(latest), *lists]


def restore_note(job) -> str:
    """What a fresh page says about the visitor's last (finished) run, or nothing."""
    if job is None:
        return ""
    ago = max(0, int(time.time() - job.created))
    when = f"{ago // 3600} h {ago % 3600 // 60} min" if ago >= 3600 else f"{ago // 60} min"
    return (f"Your last run, **{job.spec.name}**, was started {when} ago and is {job.state}; it is under "
            f"*Your runs* below (resume, download, push). Upload pictures to start a new one.")


# --- after -------------------------------------------------------------------------------------------
def run_choices(ctx, manager: JobManager, owner) -> list[tuple[str, str]]:
    try:
        root = ctx.owner_dir(owner)
    except ValueError:
        return []
    return [(r.label, r.name) for r in runs.list_runs(root, manager.busy_run_dirs())]


def list_updates(ctx, manager: JobManager, owner=None, select: str | None = None, *, generate: bool = True) -> list:
    """Updates for the lists that show runs: the tab's run list (``select`` picked), its base list
    and, with ``generate``, the Generate tab's model list (a finished run picked, ready to generate)."""
    out = [gr.update(choices=run_choices(ctx, manager, owner), **({"value": select} if select else {})),
           gr.update(choices=base_choices(ctx, owner))]
    if generate:
        out.append(generate_update(ctx, owner, select))
    return out


def generate_update(ctx, owner, select: str | None = None) -> dict:
    """The Generate tab's model list with this visitor's runs; ``select`` picks a new one there."""
    from .generate import model_choices, model_dropdown_update

    if select:
        return model_dropdown_update(ctx, owner, select=select)
    return gr.update(choices=model_choices(ctx, owner))  # keep whatever the visitor has picked


def download(ctx, run_name, owner) -> str:
    try:
        return str(runs.zip_model(runs.run_dir_of(ctx.owner_dir(owner), validate.text(run_name, "run", validate.RUN_MAX))))
    except ValueError as exc:  # CheckpointError is a ValueError
        raise gr.Error(f"Cannot download: {exc}") from None


def push(ctx, run_name, repo_id, token, private, owner) -> str:
    try:
        run_dir = runs.run_dir_of(ctx.owner_dir(owner), validate.text(run_name, "run", validate.RUN_MAX))
        token = validate.text(token, "token", validate.TOKEN_MAX).strip() or None
        if token is None and ctx.shared:
            # Never the server's own credential (HF_TOKEN, a cached login) for a stranger's push.
            raise ValueError("give your Hugging Face token (write access); this server pushes with yours only")
        url = ckpt.push_to_hub(run_dir / "model", validate.text(repo_id, "repo id", validate.REPO_ID_MAX).strip(),
                               token=token, private=bool(private), use_server_login=not ctx.shared)
    except ValueError as exc:
        return f"**Not pushed:** {exc}. The local model is unchanged."
    return f"Pushed to {url}"
