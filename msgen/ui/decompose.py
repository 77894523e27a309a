"""Decompose tab: take a picture apart by granularity with a model that can encode pictures, and
put it back together differently.

Layout and event wiring only, as the Generate tab: the work is in ``decompose_handlers``
(``decompose``, ``resample``, the model and level lists, the checks on every request's image)
and the pictures come from ``msgen.render``. The image events run with ``preprocess=False`` so
that a file that is not an image reaches ``msgen.data.load_image`` and comes back as one clear
``gr.Error`` instead of a decoder traceback, and no request can make the server open a path of
its choosing (``decompose_handlers.request_image``).
"""

from __future__ import annotations

import gradio as gr

from . import common
from .decompose_handlers import (  # noqa: F401  (re-exported: tests and scripts use them from here)
    CAPABILITY,
    DEFAULT_COUNT,
    EXAMPLES_DIR,
    MAX_COUNT,
    MODES,
    TILE,
    can_encode,
    decompose,
    default_level,
    default_temperature,
    encoding_families,
    encoding_models,
    examples,
    level_choices,
    level_update,
    load_input,
    load_model,
    model_choices,
    models_update,
    opening,
    request_image,
    resample,
    train_hint,
)

TEMPERATURE_SLIDER_MAX = 1.5  # the slider's end (a family's range may go further: the API takes it)

INTRO = (
    "Take a picture apart by granularity with a **hierarchical VAE**: every level from 4x4 up holds its own "
    "latent group, and the coarse ones decide the layout. Upload an image (or click an example), see its "
    "reconstruction at every level and what each level's latent encodes, then re-sample around a level: "
    "**keep the coarse structure and vary the detail**, or **keep the detail and vary the layout**."
)


def build(ctx: common.AppContext) -> None:
    owner = ctx.owner_state()
    choices = model_choices(ctx, None)
    first = choices[0][1] if choices else None
    entry = ctx.find(first, None) if first else None
    levels = entry.levels if entry else (4, 8, 16, 32)
    pictures = examples()
    start = pictures[0][0] if pictures and first else None
    opened = opening(ctx, first, start, levels)
    gr.Markdown(INTRO)
    notice = gr.Markdown(train_hint(), visible=not choices, elem_id="decompose-notice")
    with gr.Column(visible=bool(choices), elem_id="decompose-main") as main:
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                model = gr.Dropdown(choices, value=first, label="Model (one that can encode a picture)", elem_id="decompose-model")
                # The page opens on an example already taken apart, so the first look shows what the tab does.
                image = gr.Image(start, type="filepath",
                                 label="Image to decompose", sources=["upload", "clipboard"], height=240,
                                 elem_id="decompose-image")
                fit = gr.Radio(["crop", "pad"], value="crop", label="Non-square images: crop the centre or pad")
                with gr.Row():
                    run_btn = gr.Button("Decompose", variant="primary", elem_id="decompose-run")
                    refresh_btn = gr.Button("Refresh models", size="sm")
                if pictures:
                    gr.Examples(pictures, inputs=[image], label="Examples (click one)", examples_per_page=12)
            with gr.Column(scale=2):
                recon = gr.Gallery(opened[0], label="The picture as the model sees it, then its reconstruction at every level "
                                   "(each level adds detail on top of the coarser one)", columns=6, height=210,
                                   format="png", object_fit="contain", interactive=False, elem_id="decompose-recon")
                latents = gr.Gallery(opened[1], label="Each level's latent: posterior mean as PCA colours | where the level "
                                     "spends information (KL per position; nats in the caption)", columns=5,
                                     height=210, format="png", object_fit="contain", interactive=False,
                                     elem_id="decompose-latents")
                table = gr.Dataframe(opened[2], headers=["level", "latent channels", "KL (nats)", "share of KL (%)",
                                              "reconstruction MSE"], label="Per level", interactive=False,
                                     elem_id="decompose-table")
        gr.Markdown("### Re-sample around a level")
        with gr.Row():
            mode = gr.Radio(list(MODES), value=list(MODES)[0], label="What to keep", scale=2, elem_id="decompose-mode")
            level = gr.Dropdown(level_choices(levels), value=default_level(levels), label="Split at level", scale=1,
                                info="re-drawn: this level and finer (vary detail), or the coarser ones (vary layout)",
                                elem_id="decompose-level")
            seed = gr.Number(0, label="Seed", precision=0, minimum=0, scale=1, elem_id="decompose-seed")
            temperature = gr.Slider(0.0, TEMPERATURE_SLIDER_MAX, value=default_temperature(entry.family if entry else None),
                                    step=0.05, label="Temperature", scale=2, elem_id="decompose-temperature")
            count = gr.Slider(1, MAX_COUNT, value=DEFAULT_COUNT, step=1, label="Variants", scale=1)
        resample_btn = gr.Button("Re-sample", variant="primary", elem_id="decompose-resample")
        variants = gr.Gallery(opened[3], label="Variants (the first tile is the reconstruction they start from)", columns=9,
                              height=210, format="png", object_fit="contain", interactive=False,
                              elem_id="decompose-variants")

    # Inner functions' parameter names are the API's (gradio_client) parameter names.
    # Every image arrives raw (preprocess=False): request_image admits only gradio's own uploads
    # and inline data, so no request can make the server open a path of its choosing.
    def on_decompose(model, image, fit, owner=None):
        return decompose(ctx, model, request_image(image), fit, owner)

    def on_auto(model, image, fit, owner=None):
        if image is None or not model:
            return [], [], None
        return decompose(ctx, model, request_image(image), fit, owner)

    def on_resample(model, image, fit, mode, level, seed, temperature, count, owner=None):
        return resample(ctx, model, request_image(image), fit, mode, level, seed, temperature, count, owner)

    def on_auto_resample(model, image, fit, mode, level, seed, temperature, count, owner=None):
        if image is None or not model:
            return []
        return resample(ctx, model, request_image(image), fit, mode, level, seed, temperature, count, owner)

    def on_models(owner=None, model=None):
        return models_update(ctx, owner, model)

    def on_model(model, level, owner=None):
        return level_update(ctx, model, level, owner, levels)

    raw = dict(preprocess=False)  # see the module docstring: our decoder judges the upload
    quiet = dict(api_visibility="private", **raw)
    run_inputs = [model, image, fit, owner]
    run_outputs = [recon, latents, table]
    resample_inputs = [model, image, fit, mode, level, seed, temperature, count, owner]
    run_btn.click(on_decompose, run_inputs, run_outputs, api_name="decompose", **raw)
    resample_btn.click(on_resample, resample_inputs, [variants], api_name="decompose_resample", **raw)
    # Everything else updates at once: a new picture (upload, paste, example) or model is
    # decomposed and re-sampled; a new split, mode, seed, temperature or count re-samples.
    image.change(on_auto, run_inputs, run_outputs, **quiet).success(
        on_auto_resample, resample_inputs, [variants], **quiet)
    model.change(on_model, [model, level, owner], [level], api_visibility="private").success(
        on_auto, run_inputs, run_outputs, **quiet).success(on_auto_resample, resample_inputs, [variants], **quiet)
    for event in (mode.input, level.input, seed.submit, temperature.release, count.release):
        event(on_auto_resample, resample_inputs, [variants], **quiet)
    refresh_btn.click(on_models, [owner, model], [model, notice, main], api_name="decompose_models")
    model.focus(on_models, [owner, model], [model, notice, main], api_visibility="private")
    root = gr.context.Context.root_block
    if root is not None:
        root.load(on_models, [owner, model], [model, notice, main], api_visibility="private")
