"""Generate tab: pick a model and a seed, watch the picture build up level by level.

Layout and event wiring only; the work is in ``generate_handlers`` (checked requests, caches,
the generator run) and ``render`` (tensors -> pictures). Sliders update the page as they move:
one ``always_last`` event per group of controls, so while a slider is dragged only its latest
position is computed. API-facing events take raw payloads (``preprocess=False``) so that every
bad value, from the page or from ``gradio_client``, is answered by the handlers' own checks
with a message naming the field and its range.

Endpoints (``gradio_client``): ``/generate``, ``/channel``, ``/grid``, ``/walk``,
``/random_seed``, ``/models``; ``/ping`` is an undocumented trivial endpoint for benchmarks.
"""

from __future__ import annotations

import re

import gradio as gr
from gradio.context import Context

from ..models import FAMILIES, Family

from .generate_handlers import (
    GRID_RANGE,
    SEED_MAX,
    STATS_HEADERS,
    TRUNCATION_RANGE,
    WALK_FRAMES,
    GenerateHandlers,
    model_label,
    random_seed,
)

# Pictures are sent at their native size; the browser enlarges them, nearest neighbour.
CSS = """
.msgen-pixelated img, .msgen-pixelated canvas { image-rendering: pixelated; }
#msgen-image img, #msgen-channel img { width: 100%; height: 100%; object-fit: contain; }
#msgen-levels .grid-wrap, #msgen-grid .grid-wrap {
  min-height: 0 !important; max-height: none !important; overflow-y: auto;
}
#msgen-levels .thumbnail-item { aspect-ratio: auto; display: flex; flex-direction: column; height: auto; }
#msgen-levels .thumbnail-item img { aspect-ratio: 1; height: auto; }
#msgen-levels .caption-label { position: static; max-width: 100%; margin: 2px auto 0; }
"""
CARD_LEGEND = (
    "Each level's card: **top left** the picture at that scale, **top middle** all its channels "
    "projected on their three main directions (PCA -> RGB), **then** its seven most active "
    "channels, strongest first, each scaled to its own range (dark blue low, yellow high). "
    "Click a card to see it large."
)
LIVE = dict(trigger_mode="always_last", show_progress="minimal", preprocess=False)


def model_choices(ctx, owner: str | None) -> list[tuple[str, str]]:
    """(label, name) for every model this visitor may use: shipped ones, then their runs.

    The Train tab calls this (through ``model_dropdown_update``) after a run exports a model.
    """
    return [(model_label(e), e.name) for e in ctx.models(owner)]


def model_dropdown_update(ctx, owner: str | None, current: str | None = None, select: str | None = None) -> dict:
    """An update for ``ctx.components["model_dropdown"]``: fresh choices, ``select`` or the current pick kept."""
    choices = model_choices(ctx, owner)
    names = [name for _, name in choices]
    value = next((v for v in (select, current) if v in names), names[0] if names else None)
    return gr.update(choices=choices, value=value)


def level_choices(levels) -> list[tuple[str, int]]:
    return [(f"{lvl}x{lvl}", lvl) for lvl in levels]


def mix_choices(levels) -> list[tuple[str, int]]:
    return [("off", 0)] + level_choices(levels[1:])  # switching at the first level is just seed B


def truncation_of(family: str | None) -> tuple[float, str]:
    """The family's starting truncation and what the slider calls it (temperature for a VAE)."""
    fam = FAMILIES.get(family or "")
    return (fam.default_truncation, fam.truncation_label) if fam else (1.0, Family.truncation_label)


def on_model(h: GenerateHandlers, model, mix_level, owner=None):
    """A model was picked: its levels become the choices; scale goes to its finest, mixing stays if
    valid, and truncation starts where the model's family samples best (with that family's name for it)."""
    entry = h.entry(model, owner)
    levels = entry.levels
    scale = levels[-1]
    mix_level = mix_level if mix_level in levels[1:] else 0
    value, label = truncation_of(entry.family)
    return (gr.update(choices=level_choices(levels), value=scale),
            gr.update(choices=mix_choices(levels), value=mix_level), gr.update(value=value, label=label))


def seed_from_caption(evt: gr.SelectData) -> int:
    """A seed-grid tile was clicked: its caption says which seed it is."""
    found = re.search(r"seed (\d+)", str(evt.value))
    return int(found.group(1)) if found else gr.skip()


def build(ctx) -> GenerateHandlers:
    h = GenerateHandlers(ctx)
    ctx.components["generate_handlers"] = h
    owner = ctx.components["owner"]
    choices = model_choices(ctx, None)
    default = choices[0][1] if choices else None
    entry = h.entry(default, None) if default else None
    levels = entry.levels if entry else (4, 8, 16, 32, 64)
    start_truncation, truncation_label = truncation_of(entry.family if entry else None)
    first = _first_result(h, default, levels, start_truncation)

    gr.HTML(f"<style>{CSS}</style>", padding=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            model = gr.Dropdown(choices, value=default, label="Model (family, resolution, training data)",
                                allow_custom_value=True, elem_id="msgen-model")  # a visitor's run may be unlisted yet
            ctx.components["model_dropdown"] = model
            scale = gr.Radio(level_choices(levels), value=levels[-1], label="Scale: the finest level to render",
                             elem_id="msgen-scale")
            with gr.Row(equal_height=True):
                seed_box = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=SEED_MAX, scale=4,
                                     elem_id="msgen-seed-box")
                dice = gr.Button("🎲", scale=1, min_width=48, elem_id="msgen-dice")
            seed = gr.Slider(0, SEED_MAX, value=0, step=1, precision=0, label="Seed (drag to explore)",
                             elem_id="msgen-seed")
            truncation = gr.Slider(*TRUNCATION_RANGE, value=start_truncation, step=0.05, elem_id="msgen-truncation",
                                   label=truncation_label)
            with gr.Group():
                with gr.Row(equal_height=True):
                    mix_seed = gr.Number(1, label="Seed B (mixing and walk)", precision=0, minimum=0,
                                         maximum=SEED_MAX, scale=4, elem_id="msgen-seed-b")
                    dice_b = gr.Button("🎲", scale=1, min_width=48)
                mix_level = gr.Radio(mix_choices(levels), value=0, elem_id="msgen-mix-level",
                                     label="Granularity mixing: levels from here on come from seed B")
            info = gr.Markdown(first[3] if first else "", label="summary", elem_id="msgen-info")
        with gr.Column(scale=2):
            with gr.Row(equal_height=False):
                image = gr.Image(first[0] if first else None, label="Image", format="png", interactive=False,
                                 height=340, scale=3, elem_id="msgen-image", elem_classes="msgen-pixelated",
                                 buttons=["download", "fullscreen"])
                with gr.Column(scale=2, min_width=220):
                    ch_image = gr.Image(label="One channel", format="png", interactive=False, height=200,
                                        elem_id="msgen-channel", elem_classes="msgen-pixelated")
                    ch_level = gr.Radio(level_choices(levels), value=levels[-1], label="Level", container=False)
                    ch_channel = gr.Slider(0, 511, value=0, step=1, precision=0, label="Channel")
                    normalize = gr.Checkbox(True, label="Scale to the channel's own range (off: the level's)")
            gr.Markdown(CARD_LEGEND)
            levels_out = gr.Gallery(first[1] if first else None, label="Every level, coarse to fine", format="png",
                                    columns=len(levels), height="auto", object_fit="contain",
                                    elem_id="msgen-levels", elem_classes="msgen-pixelated")
            stats = gr.Dataframe(first[2] if first else None, headers=STATS_HEADERS, label="Level statistics",
                                 interactive=False, elem_id="msgen-stats")
    with gr.Accordion("Latent walk from seed to seed B, and a grid of seeds", open=False):
        with gr.Row():
            with gr.Column():
                frames = gr.Slider(*WALK_FRAMES, value=24, step=1, label="Frames")
                walk_btn = gr.Button("Walk from seed to seed B")
                walk = gr.Image(label="Latent walk (GIF)", type="filepath", interactive=False, height=300,
                                elem_classes="msgen-pixelated")
            with gr.Column():
                count = gr.Slider(*GRID_RANGE, value=16, step=1, label="Seeds in the grid (from the seed on)")
                grid_btn = gr.Button("Show the grid")
                grid = gr.Gallery(label="Click a tile to use its seed", format="png", columns=6, object_fit="contain",
                                  allow_preview=False, elem_id="msgen-grid", elem_classes="msgen-pixelated")

    request = [model, scale, seed, truncation, mix_seed, mix_level]
    outputs = [image, levels_out, stats, info]
    ch_inputs = request + [ch_level, ch_channel, normalize, owner]
    ch_outputs = [ch_level, ch_channel, ch_image]

    def panel(*args):
        return h.channel_panel(*args, reset=False)

    def panel_reset(*args):
        return h.channel_panel(*args, reset=True)

    # The seed lives in the slider; the number box and the slider mirror each other in the browser.
    seed_box.submit(None, seed_box, seed, js="(x) => x")
    seed_box.blur(None, seed_box, seed, js="(x) => x")
    seed.change(None, seed, seed_box, js="(x) => x")
    dice.click(random_seed, None, seed, api_name="random_seed")
    live = gr.on([seed.change, scale.input, truncation.input, mix_level.input, mix_seed.submit, mix_seed.blur],
                 h.generate, request + [owner], outputs, api_name="generate", **LIVE)
    live.success(panel, ch_inputs, ch_outputs, api_visibility="private", **LIVE)
    dice_b.click(random_seed, None, mix_seed, api_visibility="private").success(
        h.generate, request + [owner], outputs, api_visibility="private", **LIVE
    ).success(panel, ch_inputs, ch_outputs, api_visibility="private", **LIVE)
    picked = model.change(lambda *a: on_model(h, *a), [model, mix_level, owner], [scale, mix_level, truncation],
                          api_visibility="private", **LIVE)
    picked.success(h.generate, request + [owner], outputs, api_visibility="private", **LIVE).success(
        panel_reset, ch_inputs, ch_outputs, api_visibility="private", **LIVE)
    ch_level.input(panel_reset, ch_inputs, ch_outputs, api_visibility="private", **LIVE)
    gr.on([ch_channel.input, normalize.input], h.channel, ch_inputs, ch_image, api_name="channel", **LIVE)
    walk_btn.click(h.walk, [model, scale, seed, mix_seed, truncation, frames, owner], walk, api_name="walk",
                   preprocess=False)
    grid_btn.click(h.grid, [model, scale, seed, truncation, count, owner], grid, api_name="grid", preprocess=False)
    grid.select(seed_from_caption, None, seed, api_visibility="private")

    # A visitor's own runs join the list when the page loads (the Train tab refreshes it later).
    root = Context.root_block
    if root is not None:
        root.load(lambda o, cur: model_dropdown_update(ctx, o, cur), [owner, model], model,
                  api_visibility="private", preprocess=False)
        if first is not None:
            root.load(panel_reset, ch_inputs, ch_outputs, api_visibility="private", preprocess=False)

    def models(owner: str | None = None) -> list[dict]:
        """Every model this visitor may use: name, label, family, resolution, levels, data set."""
        return [{"name": e.name, "label": model_label(e), "family": e.family, "resolution": e.resolution,
                 "levels": list(e.levels), "dataset": e.dataset, "source": e.source} for e in ctx.models(owner)]

    def ping(text: str = "") -> str:
        """Gradio's own round trip, for bench/app.py to compare against."""
        return text

    gr.api(models, api_name="models")
    gr.api(ping, api_name="ping", api_visibility="undocumented")
    return h


def _first_result(h: GenerateHandlers, model: str | None, levels, truncation: float) -> tuple | None:
    """The page's opening picture, computed at build: the default model loads once, before launch,
    and the first visitor sees an image without waiting for a request."""
    if model is None:
        return None
    try:
        return h.generate(model, levels[-1], 0, truncation, 1, 0, None)
    except Exception:  # a broken default model, or no GPU outside a request (ZeroGPU): the page
        return None  # still opens, and the first request says what is wrong
