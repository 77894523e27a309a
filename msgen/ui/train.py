"""Train tab: fine-tune a generator (or train a family from scratch) on uploaded images, live.

Layout and event wiring only, as the Generate tab: the work is in ``train_handlers`` (upload,
start, resume, stop, the live view's poll, the lists), the form's values in ``train_form``, the
family's own options in ``train_family``, the live view's rendering in ``train_view``, a shared
host's limits in ``train_limits``, the resumable zip and Hub runs in ``train_resume`` and the
script endpoints in ``train_api``; pictures come from ``msgen.render``. Upload -> ``prepare`` ->
``start`` -> a gr.Timer polls ``poll`` -> the model appears in the Generate tab's list
(``ctx.model_dropdown``, made before the tabs, so the build order does not matter).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import gradio as gr

from . import common, train_family, train_resume
from .train_form import (  # noqa: F401  (re-exported: train_api, train_resume, benches and tests use them from here)
    CHECKPOINT_EVERY,
    DEFAULT_BATCH,
    DEFAULT_LR,
    DEFAULT_PREVIEW_EVERY,
    DEFAULT_STEPS,
    POLICIES,
    RESOLUTIONS,
    Base,
    base_choices,
    cli_command,
    default_base,
    families,
    options_from_form,
    resolve_base,
    start_values,
)
from .train_handlers import (  # noqa: F401  (re-exported, as above)
    GALLERY_MAX,
    UPLOAD_CONCURRENCY,
    download,
    generate_update,
    list_updates,
    load_upload,
    poll,
    prepare,
    push,
    restore,
    restore_note,
    resume,
    run_choices,
    staged_sets,
    start,
    stop,
    upload,
    view,
)
from .train_limits import (  # noqa: F401  (the tab's limits; tests and the API read them from here)
    FEW_IMAGES,
    MAX_STEPS,
    SHARED_LIMITS,
    SharedLimits,
    check_budget,
    check_disk,
    limits_text,
    upload_limits,
)

# --- layout and wiring ---------------------------------------------------------------------------
INTRO = ("Upload your pictures, pick a model to fine-tune (or a family to train from scratch) and watch it learn: "
         "the loss curves and a preview of every scale update as it trains. One run trains at a time; "
         "generating keeps working meanwhile.")


def build(ctx: common.AppContext) -> None:
    ui = _layout(ctx)
    _wire(ctx, ui)


def _layout(ctx: common.AppContext) -> SimpleNamespace:
    """The tab's components, top to bottom, as one namespace for ``_wire``."""
    ui = SimpleNamespace()
    gr.Markdown(INTRO)
    gr.Markdown(limits_text(ctx.shared), elem_id="train-limits")
    with gr.Row():
        with gr.Column(scale=1):
            ui.files = gr.File(label="Images, or a zip of them", file_count="multiple", height=240,
                               elem_id="train-files")
            ui.fit = gr.Radio(["crop", "pad"], value="crop", label="Non-square images: crop the centre or pad")
            ui.summary = gr.Markdown("Upload images (many files at once) or a zip to begin.", elem_id="train-summary")
        with gr.Column(scale=2):
            ui.gallery = gr.Gallery(label="Accepted, as they will be trained", columns=8, height=280, format="png",
                                    object_fit="contain", elem_id="train-gallery", interactive=False)
            ui.rejected = gr.Dataframe(headers=["file", "reason"], label="Rejected files", interactive=False,
                                       wrap=True, elem_id="train-rejected")
    start_from = default_base(ctx)
    with gr.Row():
        # Custom values pass the dropdown so that ctx.find, the one privacy check, judges them.
        ui.base = gr.Dropdown(base_choices(ctx, None), value=start_from, label="Start from", scale=3,
                              elem_id="train-base", allow_custom_value=True)
        ui.resolution = gr.Dropdown(list(RESOLUTIONS), value=32, label="Resolution (from scratch only)", scale=1)
        ui.name = gr.Textbox(label="Name of the result", placeholder="e.g. my-cats", scale=2, elem_id="train-name")
    with gr.Row():
        ui.steps = gr.Number(DEFAULT_STEPS, label="Steps", precision=0, minimum=1, elem_id="train-steps")
        ui.batch = gr.Number(DEFAULT_BATCH, label="Batch size", precision=0, minimum=1, elem_id="train-batch")
        ui.lr = gr.Number(DEFAULT_LR, label="Learning rate")
        ui.preview_every = gr.Number(DEFAULT_PREVIEW_EVERY, label="Preview every N steps", precision=0, minimum=1,
                                     elem_id="train-preview-every")
        ui.seed = gr.Number(0, label="Seed", precision=0, minimum=0)
    # The chosen family's own options (its options dataclass's labelled fields); the others hidden.
    ui.family_groups, ui.family_controls, ui.augment = train_family.layout(
        train_family.family_of(ctx, start_from, None))
    with gr.Row():
        ui.start_btn = gr.Button("Start training", variant="primary", elem_id="train-start")
        ui.stop_btn = gr.Button("Stop", variant="stop", elem_id="train-stop")
    ui.status = gr.Markdown(elem_id="train-status")
    ui.progress = gr.HTML(elem_id="train-progress")
    with gr.Row():
        ui.plot = gr.LinePlot(x="step", y="value", color="series", label="Losses", elem_id="train-plot")
        with gr.Column():
            gr.Markdown("**Preview** (EMA generator): one row per fixed seed, one column per level, coarse to fine")
            ui.preview = gr.Image(show_label=False, format="png", interactive=False, elem_id="train-preview")
    ui.quality = gr.Markdown(elem_id="train-quality")
    with gr.Accordion("Your runs: resume, download, push to the Hub", open=False):
        with gr.Row():
            ui.run = gr.Dropdown([], label="Run", scale=3, elem_id="train-run", allow_custom_value=True)
            ui.refresh_btn = gr.Button("Refresh list", scale=1)
        with gr.Row():
            ui.until = gr.Number(None, label="Resume: train until step (empty = the run's own goal)", precision=0)
            ui.resume_btn = gr.Button("Resume", elem_id="train-resume")
        with gr.Row():
            ui.download_btn = gr.Button("Download model zip")
            ui.zip_file = gr.File(label="config.json + model.safetensors + README.md", interactive=False)
        with gr.Row():
            ui.repo = gr.Textbox(label="Hub repo id", placeholder="your-name/my-model")
            ui.token = gr.Textbox(label="Hugging Face token (write access; not stored)", type="password")
            ui.private = gr.Checkbox(True, label="private")
        ui.push_btn = gr.Button("Push to the Hub")
        ui.push_msg = gr.Markdown()
        ui.resume_ui = train_resume.layout()  # resumable run zip and Hub push / resume
    ui.timer = gr.Timer(1.0, active=False)
    ui.job, ui.seen, ui.upload_files, ui.family_values = gr.State(None), gr.State(None), gr.State([]), gr.State({})
    return ui


def _wire(ctx: common.AppContext, ui: SimpleNamespace) -> None:
    manager, owner = ctx.jobs, ctx.owner_state()
    train_family.wire(ui.family_controls, ui.family_values)
    gen_models = ctx.model_dropdown  # made before the tabs (app.py); None when this tab is built alone
    with_generate = gen_models is not None
    lists = [ui.run, ui.base] + ([gen_models] if with_generate else [])

    # Inner functions' parameter names are the API's (gradio_client) parameter names.
    def on_lists(owner=None, select: str | None = None) -> list:
        return list_updates(ctx, manager, owner, select, generate=with_generate)

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
        return poll(ctx, manager, job, seen, owner, generate=with_generate)

    def on_restore(owner=None):
        return restore(ctx, manager, owner, generate=with_generate)

    def on_download(run, owner=None):
        return download(ctx, run, owner)

    def on_push(run, repo, token, private, owner=None):
        return push(ctx, run, repo, token, private, owner)

    def on_base(base, owner=None):
        return train_family.visibility(train_family.family_of(ctx, base, owner), ui.family_groups)

    # Decoding is the costly part of an upload: a shared concurrency id keeps at most
    # UPLOAD_CONCURRENCY of these events decoding at once, whoever sends them.
    decode = dict(concurrency_limit=UPLOAD_CONCURRENCY, concurrency_id="train-decode")
    form = [ui.base, ui.resolution, ui.fit, owner]
    ui.files.change(functools.partial(upload, ctx), [ui.files, *form],
                    [ui.gallery, ui.rejected, ui.summary, ui.upload_files, owner], api_name="train_upload", **decode)
    for i, comp in enumerate((ui.base, ui.resolution, ui.fit)):
        comp.change(on_prepare, [ui.upload_files, *form], [ui.gallery, ui.rejected, ui.summary],
                    api_name="train_prepare" if i == 0 else None, api_visibility="public" if i == 0 else "private",
                    **decode)
    ui.start_btn.click(on_start, [ui.upload_files, ui.base, ui.resolution, ui.fit, ui.steps, ui.batch, ui.lr,
                                  ui.augment, ui.preview_every, ui.seed, ui.name, owner, ui.family_values],
                       [ui.job, ui.status, ui.timer, ui.seen], api_name="train_start", **decode)
    ui.base.change(on_base, [ui.base, owner], list(ui.family_groups.values()), api_visibility="private",
                   show_progress="hidden", queue=False)
    # A base picked by the visitor proposes its family's steps, batch and learning rate (a list
    # refresh changes no value, so what the visitor typed stays until they pick another base).
    ui.base.input(lambda base, owner=None: start_values(ctx, base, owner), [ui.base, owner],
                  [ui.steps, ui.batch, ui.lr], api_visibility="private", show_progress="hidden", queue=False)
    ui.stop_btn.click(on_stop, [ui.job, owner], [ui.status], api_name="train_stop_current", concurrency_limit=None)
    ui.timer.tick(on_poll, [ui.job, ui.seen, owner],
                  [ui.status, ui.progress, ui.plot, ui.preview, ui.quality, ui.timer, ui.seen, *lists],
                  api_name="train_poll", show_progress="hidden", concurrency_limit=None)
    ui.refresh_btn.click(on_lists, [owner], lists, api_name="train_runs", concurrency_limit=None)
    ui.resume_btn.click(on_resume, [ui.run, ui.until, owner], [ui.job, ui.status, ui.timer, ui.seen],
                        api_name="train_resume")
    ui.download_btn.click(on_download, [ui.run, owner], [ui.zip_file], api_name="train_download")
    ui.push_btn.click(on_push, [ui.run, ui.repo, ui.token, ui.private, owner], [ui.push_msg], api_name="train_push")
    train_resume.wire(ctx, manager, ui.resume_ui, run=ui.run, until=ui.until, owner=owner, job=ui.job,
                      status=ui.status, timer=ui.timer, seen=ui.seen, lists=lists, list_updates=on_lists)
    from . import train_api

    train_api.register(ctx, manager)  # /train, /train_status, /train_stop: the same runs, for scripts
    root = gr.context.Context.root_block
    if root is not None:
        # The owner token first (a first visit has none), then this visitor's runs and live job.
        root.load(common.ensure_owner, [owner], [owner], api_visibility="private").then(
            on_restore, [owner], [ui.job, ui.seen, ui.timer, ui.status, *lists], api_visibility="private")
