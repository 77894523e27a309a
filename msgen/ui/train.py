"""Train tab: fine-tune a generator (or train a family from scratch) on uploaded images, live.

(About 550 lines: one tab's layout, wiring and handlers; its family options, limits and live view
are in train_family.py, train_limits.py and train_view.py.)

Layout in ``build(ctx)``; everything else is a plain function of plain values so tests call it
without a browser. Upload -> ``prepare`` (the accepted images exactly as they will be trained,
and every rejection with its reason) -> ``start`` (a ``JobSpec`` queued on the ``JobManager``)
-> a gr.Timer polls ``poll`` for the progress bar, loss curves, preview grid and quality report
-> the model appears in the Generate tab, and can be resumed, downloaded or pushed to the Hub.
The run uses ``msgen.data.load_image_set`` and ``TrainOptions`` exactly as
``python -m msgen train`` does, so the page and the CLI give the same weights for one seed.

An upload is decoded once (``staging.StagedSets``): Start and a change of base at the same
resolution reuse it. On a shared host (a Space, ``--shared``) every run is bounded
(``SHARED_LIMITS``): a global cap on runs training or in line, a wall-clock budget per run,
images seen per run, and batch x pixels (memory); the page states them.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from .. import checkpoint as ckpt
from ..augment import POLICIES
from ..defaults import FINETUNE
from ..models import families as registered, get_family, make_config
from ..train import TrainOptions
from ..report import read_quality
from . import common, runs, train_family, train_resume, validate
from .jobs import JobManager, JobSpec
from .staging import StagedSets, file_key
from .train_limits import (  # noqa: F401  (the tab's limits; tests and the API read them from here)
    FEW_IMAGES,
    MAX_STEPS,
    SHARED_LIMITS,
    SharedLimits,
    _budget,
    check_budget,
    check_disk,
    limits_text,
    upload_limits,
)
from .train_view import loss_frame, preview_grid, progress_html, quality_markdown, status_markdown

# The form's defaults are the CLI's (msgen.defaults.FINETUNE): one recipe, two front ends.
DEFAULT_STEPS = FINETUNE.steps
DEFAULT_BATCH = FINETUNE.batch_size
DEFAULT_LR = FINETUNE.lr
DEFAULT_PREVIEW_EVERY = FINETUNE.sample_every
CHECKPOINT_EVERY = FINETUNE.checkpoint_every
RESOLUTIONS = (16, 32, 64, 128)
GALLERY_MAX = 48  # thumbnails shown; the count says how many more were accepted


UPLOAD_CONCURRENCY = 2  # uploads decoding at once (each also waits for msgen.data's decode slots)


# --- choices -----------------------------------------------------------------------------------
def families() -> list[str]:
    return list(registered())  # every family module in msgen/models/, sorted


def base_choices(ctx: common.AppContext, owner: str | None) -> list[tuple[str, str]]:
    models = [(f"fine-tune {e.label}", f"model:{e.name}") for e in ctx.models(owner)]
    scratch = [(f"new {f} from scratch ({get_family(f).description or f})", f"scratch:{f}") for f in families()]
    return models + scratch


def default_base(ctx: common.AppContext) -> str:
    """The preselected base: ``FINETUNE.base`` when shipped, else a shipped 32 px GAN, else the first."""
    shipped = [e for e in ctx.models(None) if e.source == "shipped"]
    preferred = [e for e in shipped if e.name == FINETUNE.base] or [e for e in shipped if e.resolution == 32]
    pick = (preferred or shipped)[:1]
    return f"model:{pick[0].name}" if pick else base_choices(ctx, None)[0][1]


@dataclass
class Base:
    resolution: int
    path: Path | None = None  # fine-tune this exported model ...
    name: str | None = None
    config: Any = None  # ... or train this config from scratch
    family: str = ""


def resolve_base(ctx: common.AppContext, choice: str | None, resolution: Any, owner: str | None) -> Base:
    kind, _, value = validate.text(choice, "start from", 300).partition(":")
    if kind == "model":
        entry = ctx.find(value, owner)  # only shipped models and this visitor's runs
        return Base(resolution=entry.resolution, path=entry.path, name=entry.name, family=entry.family)
    if kind == "scratch":
        if value not in families():
            raise ValueError(f"unknown family {value!r}; choose one of: {', '.join(families())}")
        size = validate.choice(validate.whole(resolution, "resolution", 1, 4096, default=32), "resolution", RESOLUTIONS)
        config = make_config(value, resolution=size)
        return Base(resolution=config.resolution, config=config, family=value)
    raise ValueError("choose a model to fine-tune or a family to train from scratch")


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

    from .. import render

    pic = render.to_uint8(image)
    return Image.fromarray(render.upscale(pic, max(1, 96 // pic.shape[1])))


def staged_sets(ctx: common.AppContext) -> StagedSets:
    return ctx.components.setdefault("train_staged", StagedSets())


def load_upload(ctx: common.AppContext, paths: list[str], resolution: int, fit: str, owner: str | None):
    """The upload as an ``ImageSet`` at ``resolution``: decoded once, then served from the stage."""
    from ..data import ImageSet, load_image_set

    # Keyed by the files alone: gradio names an upload by its content, so a hit is the same bytes
    # (a fresh owner token gains no second decode, and learns nothing it did not upload).
    key = (file_key(paths), resolution, fit)
    cache = staged_sets(ctx)
    hit = cache.get(key)
    if hit is None:
        data = load_image_set(paths, resolution, fit=fit, limits=upload_limits(ctx))
        hit = cache.put(key, data.images, data.names, data.rejected, resolution)
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
    manager = ctx.components.get("train_jobs")
    ctx.touch(owner)
    ctx.expire_sessions(keep=manager.busy_run_dirs() if manager is not None else ())
    gallery, rows, summary, data = prepare(ctx, files, base, resolution, fit, owner)
    return gallery, rows, summary, _paths(files), owner


# --- start / resume / stop ---------------------------------------------------------------------
_int = validate.whole


def options_from_form(ctx, steps, batch, lr, augment, preview_every, seed, family: str | None = None,
                      family_values: dict | None = None) -> TrainOptions:
    """The run's options from the form; ``family``'s own from ``augment`` (where it has that option)
    and ``family_values`` (its other controls, ``train_family``)."""
    lr = validate.real(lr, "learning rate", 1e-7, 0.1)
    if augment is not None and not isinstance(augment, (list, tuple)):
        raise ValueError(f"augmentation must be a list of: {', '.join(POLICIES)}")
    chosen = {validate.choice(a, "augmentation", POLICIES) for a in (augment or ())}
    augment = tuple(p for p in POLICIES if p in chosen)  # POLICIES order, as the CLI's default
    if family_values is not None and not isinstance(family_values, dict):
        raise ValueError("family options must be a mapping of option names to values")
    return TrainOptions(
        steps=_int(steps, "steps", 1, MAX_STEPS[ctx.shared]),
        batch_size=_int(batch, "batch size", 1, 256),
        lr=lr,
        sample_every=_int(preview_every, "preview interval", 1, 1_000_000),
        checkpoint_every=CHECKPOINT_EVERY,
        seed=validate.seed(seed),
        family=train_family.options(family, augment, family_values) if family else None,
    )


def cli_command(ctx, base: Base, options: TrainOptions, data_dir: Path, run_dir: Path, threads: int) -> str:
    """The ``python -m msgen train`` line that repeats this run bit for bit (paths hidden on a shared
    host). It names the torch thread count because a convolution's summation order follows it."""
    where = ["--data", str(data_dir), "--out", str(run_dir)] if not ctx.shared else ["--data", "DATA", "--out", "OUT"]
    model = ["--model", base.name] if base.path is not None else ["--family", base.family, "--resolution",
                                                                   str(base.resolution)]
    own = train_family.flags(options.family) if options.family is not None else []
    words = ["train", *where, *model, "--steps", str(options.steps), "--batch", str(options.batch_size),
             "--lr", f"{options.lr:g}", *own,
             "--sample-every", str(options.sample_every), "--checkpoint-every", str(options.checkpoint_every),
             "--seed", str(options.seed), "--threads", str(threads)]
    return "python -m msgen " + shlex.join(words)


def start(ctx, manager: JobManager, files, base, resolution, fit, steps, batch, lr, augment, preview_every, seed,
          name, owner, client: str = "", family_values: dict | None = None) -> tuple[str | None, str]:
    """Queue a new run; returns (job id or None, status markdown). ``client``: the caller's address;
    ``family_values``: the chosen family's own controls ("family.field" -> value, ``train_family``)."""
    try:
        root = ctx.owner_dir(owner)
        if manager.active_count(ctx.owner_key(owner)) >= (1 if ctx.shared else 8):
            raise ValueError("you already have a run training or in line; stop it or wait for it to finish")
        if ctx.shared and client and manager.client_count(client) >= SHARED_LIMITS.per_client:
            raise ValueError("a run from your address is already training or in line; wait for it to finish")
        check_disk(ctx, root)
        target = resolve_base(ctx, base, resolution, owner)
        options = options_from_form(ctx, steps, batch, lr, augment, preview_every, seed, target.family, family_values)
        check_budget(ctx, options, target.resolution)
        name = validate.text(name, "name", 200)
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
        job = manager.submit(spec, max_per_owner=1 if ctx.shared else 8,
                             max_per_client=SHARED_LIMITS.per_client if ctx.shared and client else None)
    except ValueError as exc:  # the line is full: the data snapshot goes, nothing else was written
        shutil.rmtree(run_dir, ignore_errors=True)
        return None, f"**Cannot start:** {exc}"
    return job.id, f"**{run_dir.name}** queued ({data.images.shape[0]} images, {options.steps} steps)."


def resume(ctx, manager: JobManager, run_name, until, owner, client: str = "") -> tuple[str | None, str]:
    try:
        if ctx.shared and client and manager.client_count(client) >= SHARED_LIMITS.per_client:
            raise ValueError("a run from your address is already training or in line; wait for it to finish")
        run_dir = runs.run_dir_of(ctx.owner_dir(owner), validate.text(run_name, "run", 64))
        if run_dir.resolve() in manager.busy_run_dirs():
            raise ValueError(f"{run_name} is already training or in line")
        if manager.active_count(ctx.owner_key(owner)) >= (1 if ctx.shared else 8):
            raise ValueError("you already have a run training or in line; stop it or wait for it to finish")
        until = _int(until, "train until step", 1, MAX_STEPS[ctx.shared]) if until not in (None, "") else None
        ctx.touch(owner)
        spec = runs.resume_spec(run_dir, owner_key=ctx.owner_key(owner), until=until, resolve_base=_resumable_base(ctx, owner))
        check_budget(ctx, spec.options, _spec_resolution(spec))
        spec.budget_s, spec.client = _budget(ctx), client
        job = manager.submit(spec, max_per_owner=1 if ctx.shared else 8,
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


# --- after -------------------------------------------------------------------------------------------
def run_choices(ctx, manager: JobManager, owner) -> list[tuple[str, str]]:
    try:
        root = ctx.owner_dir(owner)
    except ValueError:
        return []
    return [(r.label, r.name) for r in runs.list_runs(root, manager.busy_run_dirs())]


def download(ctx, run_name, owner) -> str:
    try:
        return str(runs.zip_model(runs.run_dir_of(ctx.owner_dir(owner), validate.text(run_name, "run", 64))))
    except ValueError as exc:  # CheckpointError is a ValueError
        raise gr.Error(f"Cannot download: {exc}") from None


def push(ctx, run_name, repo_id, token, private, owner) -> str:
    try:
        run_dir = runs.run_dir_of(ctx.owner_dir(owner), validate.text(run_name, "run", 64))
        token = validate.text(token, "token", 400).strip() or None
        if token is None and ctx.shared:
            # Never the server's own credential (HF_TOKEN, a cached login) for a stranger's push.
            raise ValueError("give your Hugging Face token (write access); this server pushes with yours only")
        url = ckpt.push_to_hub(run_dir / "model", validate.text(repo_id, "repo id", 200).strip(), token=token,
                               private=bool(private), use_server_login=not ctx.shared)
    except ValueError as exc:
        return f"**Not pushed:** {exc}. The local model is unchanged."
    return f"Pushed to {url}"


def restore_note(job) -> str:
    """What a fresh page says about the visitor's last (finished) run, or nothing."""
    if job is None:
        return ""
    ago = max(0, int(time.time() - job.created))
    when = f"{ago // 3600} h {ago % 3600 // 60} min" if ago >= 3600 else f"{ago // 60} min"
    return (f"Your last run, **{job.spec.name}**, was started {when} ago and is {job.state}; it is under "
            f"*Your runs* below (resume, download, push). Upload pictures to start a new one.")


def generate_update(ctx, owner, select: str | None = None) -> dict:
    """The Generate tab's model list with this visitor's runs; ``select`` picks a new one there."""
    from .generate import model_choices, model_dropdown_update

    if select:
        return model_dropdown_update(ctx, owner, select=select)
    return gr.update(choices=model_choices(ctx, owner))  # keep whatever the visitor has picked


# --- layout and wiring ---------------------------------------------------------------------------
INTRO = ("Upload your pictures, pick a model to fine-tune (or a family to train from scratch) and watch it learn: "
         "the loss curves and a preview of every scale update as it trains. One run trains at a time; "
         "generating keeps working meanwhile.")


def build(ctx: common.AppContext) -> None:
    manager: JobManager = ctx.components.setdefault(
        "train_jobs", JobManager(max_jobs=SHARED_LIMITS.max_jobs if ctx.shared else None))
    owner = ctx.components["owner"]
    gr.Markdown(INTRO)
    gr.Markdown(limits_text(ctx.shared), elem_id="train-limits")
    with gr.Row():
        with gr.Column(scale=1):
            files = gr.File(label="Images, or a zip of them", file_count="multiple", height=240, elem_id="train-files")
            fit = gr.Radio(["crop", "pad"], value="crop", label="Non-square images: crop the centre or pad")
            summary = gr.Markdown("Upload images (many files at once) or a zip to begin.", elem_id="train-summary")
        with gr.Column(scale=2):
            gallery = gr.Gallery(label="Accepted, as they will be trained", columns=8, height=280, format="png",
                                 object_fit="contain", elem_id="train-gallery", interactive=False)
            rejected = gr.Dataframe(headers=["file", "reason"], label="Rejected files", interactive=False, wrap=True,
                                    elem_id="train-rejected")
    choices = base_choices(ctx, None)
    with gr.Row():
        # Custom values pass the dropdown so that ctx.find, the one privacy check, judges them.
        base = gr.Dropdown(choices, value=default_base(ctx), label="Start from", scale=3, elem_id="train-base",
                           allow_custom_value=True)
        resolution = gr.Dropdown(list(RESOLUTIONS), value=32, label="Resolution (from scratch only)", scale=1)
        name = gr.Textbox(label="Name of the result", placeholder="e.g. my-cats", scale=2, elem_id="train-name")
    with gr.Row():
        steps = gr.Number(DEFAULT_STEPS, label="Steps", precision=0, minimum=1, elem_id="train-steps")
        batch = gr.Number(DEFAULT_BATCH, label="Batch size", precision=0, minimum=1, elem_id="train-batch")
        lr = gr.Number(DEFAULT_LR, label="Learning rate")
        preview_every = gr.Number(DEFAULT_PREVIEW_EVERY, label="Preview every N steps", precision=0, minimum=1,
                                  elem_id="train-preview-every")
        seed = gr.Number(0, label="Seed", precision=0, minimum=0)
    # The chosen family's own options (its options dataclass's labelled fields); the others hidden.
    family_groups, family_controls, augment = train_family.layout(train_family.family_of(ctx, default_base(ctx), None))
    with gr.Row():
        start_btn = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop_btn = gr.Button("Stop", variant="stop", elem_id="train-stop")
    status = gr.Markdown(elem_id="train-status")
    progress = gr.HTML(elem_id="train-progress")
    with gr.Row():
        plot = gr.LinePlot(x="step", y="value", color="series", label="Losses", elem_id="train-plot")
        with gr.Column():
            gr.Markdown("**Preview** (EMA generator): one row per fixed seed, one column per level, coarse to fine")
            preview = gr.Image(show_label=False, format="png", interactive=False, elem_id="train-preview")
    quality = gr.Markdown(elem_id="train-quality")
    with gr.Accordion("Your runs: resume, download, push to the Hub", open=False):
        with gr.Row():
            run = gr.Dropdown([], label="Run", scale=3, elem_id="train-run", allow_custom_value=True)
            refresh_btn = gr.Button("Refresh list", scale=1)
        with gr.Row():
            until = gr.Number(None, label="Resume: train until step (empty = the run's own goal)", precision=0)
            resume_btn = gr.Button("Resume", elem_id="train-resume")
        with gr.Row():
            download_btn = gr.Button("Download model zip")
            zip_file = gr.File(label="config.json + model.safetensors + README.md", interactive=False)
        with gr.Row():
            repo = gr.Textbox(label="Hub repo id", placeholder="your-name/my-model")
            token = gr.Textbox(label="Hugging Face token (write access; not stored)", type="password")
            private = gr.Checkbox(True, label="private")
        push_btn = gr.Button("Push to the Hub")
        push_msg = gr.Markdown()
        resume_ui = train_resume.layout()  # resumable run zip and Hub push / resume
    timer = gr.Timer(1.0, active=False)
    job, seen, upload_files, family_values = gr.State(None), gr.State(None), gr.State([]), gr.State({})
    train_family.wire(family_controls, family_values)
    gen_dropdown = ctx.components.get("model_dropdown")
    lists = [run, base] + ([gen_dropdown] if gen_dropdown is not None else [])

    # Inner functions' parameter names are the API's (gradio_client) parameter names.
    def list_updates(owner=None, select: str | None = None) -> list:
        out = [gr.update(choices=run_choices(ctx, manager, owner), **({"value": select} if select else {})),
               gr.update(choices=base_choices(ctx, owner))]
        if gen_dropdown is not None:  # a finished run is also picked there, ready to generate from
            out.append(generate_update(ctx, owner, select))
        return out

    def on_prepare(files, base, resolution, fit, owner=None):
        return prepare(ctx, files, base, resolution, fit, owner)[:3]

    def on_start(files, base, resolution, fit, steps, batch, lr, augment, preview_every, seed, name="", owner=None,
                 family_values=None, request: gr.Request = None):
        job_id, text = start(ctx, manager, files, base, resolution, fit, steps, batch, lr, augment, preview_every,
                             seed, name, owner, common.client_id(request), family_values)
        return (job_id, text, gr.Timer(active=True), None) if job_id else (gr.skip(), text, gr.skip(), gr.skip())

    def on_resume(run, until, owner=None, request: gr.Request = None):
        job_id, text = resume(ctx, manager, run, until, owner, common.client_id(request))
        return (job_id, text, gr.Timer(active=True), None) if job_id else (gr.skip(), text, gr.skip(), gr.skip())

    def on_stop(job, owner=None):
        return stop(ctx, manager, job, owner)

    def on_poll(job, seen, owner=None):
        v = view(ctx, manager, job, owner)
        if v is None:
            return [gr.skip()] * 5 + [gr.Timer(active=False), seen] + [gr.skip()] * len(lists)
        seen = seen or {}
        fresh_preview = v["preview"] is not None and v["preview_step"] != seen.get("preview_step")
        fresh_losses = v["history_len"] != seen.get("history_len") and v["history_len"] > 0
        ended = not v["active"] and seen.get("active", True)
        new_seen = {"preview_step": v["preview_step"], "history_len": v["history_len"], "active": v["active"]}
        return [v["status"], v["progress"], v["losses"] if fresh_losses else gr.skip(),
                preview_grid(v["preview"]) if fresh_preview else gr.skip(), v["quality"],
                gr.Timer(active=v["active"]), new_seen,
                *(list_updates(owner, v["name"]) if ended else [gr.skip()] * len(lists))]

    def on_restore(owner=None):
        ctx.touch(owner)
        ctx.expire_sessions(keep=manager.busy_run_dirs())  # page loads are the periodic tick
        latest = manager.latest(_key(ctx, owner))
        if latest is not None and latest.active:  # a run still training or in line is this page's run
            return [latest.id, None, gr.Timer(active=True), gr.skip(), *list_updates(owner)]
        # A finished run is not presented as the current one: the page starts clean and says
        # where the last run is.
        note = restore_note(latest)
        return [None, None, gr.Timer(active=False), note, *list_updates(owner)]

    def on_download(run, owner=None):
        return download(ctx, run, owner)

    def on_push(run, repo, token, private, owner=None):
        return push(ctx, run, repo, token, private, owner)

    # Decoding is the costly part of an upload: a shared concurrency id keeps at most
    # UPLOAD_CONCURRENCY of these events decoding at once, whoever sends them.
    decode = dict(concurrency_limit=UPLOAD_CONCURRENCY, concurrency_id="train-decode")
    files.change(functools.partial(upload, ctx), [files, base, resolution, fit, owner],
                 [gallery, rejected, summary, upload_files, owner], api_name="train_upload", **decode)
    for i, comp in enumerate((base, resolution, fit)):
        comp.change(on_prepare, [upload_files, base, resolution, fit, owner], [gallery, rejected, summary],
                    api_name="train_prepare" if i == 0 else None, api_visibility="public" if i == 0 else "private",
                    **decode)
    start_btn.click(on_start, [upload_files, base, resolution, fit, steps, batch, lr, augment, preview_every, seed,
                               name, owner, family_values], [job, status, timer, seen], api_name="train_start",
                   **decode)
    base.change(lambda base, owner=None: train_family.visibility(train_family.family_of(ctx, base, owner), family_groups),
                [base, owner], list(family_groups.values()), api_visibility="private", show_progress="hidden",
                queue=False)
    stop_btn.click(on_stop, [job, owner], [status], api_name="train_stop_current",
                   concurrency_limit=None)
    timer.tick(on_poll, [job, seen, owner], [status, progress, plot, preview, quality, timer, seen, *lists],
               api_name="train_poll", show_progress="hidden", concurrency_limit=None)
    refresh_btn.click(list_updates, [owner], lists, api_name="train_runs", concurrency_limit=None)
    resume_btn.click(on_resume, [run, until, owner], [job, status, timer, seen], api_name="train_resume")
    download_btn.click(on_download, [run, owner], [zip_file], api_name="train_download")
    push_btn.click(on_push, [run, repo, token, private, owner], [push_msg],
                   api_name="train_push")
    train_resume.wire(ctx, manager, resume_ui, run=run, until=until, owner=owner, job=job, status=status, timer=timer,
                      seen=seen, lists=lists, list_updates=list_updates)
    from . import train_api

    train_api.register(ctx, manager)  # /train, /train_status, /train_stop: the same runs, for scripts
    root = gr.context.Context.root_block
    if root is not None:
        # The owner token first (a first visit has none), then this visitor's runs and live job.
        root.load(common.ensure_owner, [owner], [owner], api_visibility="private").then(
            on_restore, [owner], [job, seen, timer, status, *lists], api_visibility="private")
