"""Generate tab: pick a model and a seed, watch the picture build up level by level.

Layout and event wiring only; the work is in ``generate_handlers`` (checked requests, caches,
the generator run), ``msgen.render`` (tensors -> pictures) and ``generate_view`` (the one HTML
view that paints a result). Sliders update the page as they move, and each control change is one
event with one response into one component, the view, that carries everything it shows (image,
cards, statistics, summary, channel view, pictures inline): no ``.then`` chain, no file fetched
per picture. Each is
``always_last``, so while a slider is dragged only its latest position is computed, and shows
no progress overlay (an update takes a few milliseconds). Each event starts from the visitor's
own action (a typed seed, a slider move, a dice, a grid tile), never from a value another event
set; seed A's number box and slider mirror each other in the browser. Events take raw payloads
(``preprocess=False``) so that every bad value, from the page or from ``gradio_client``, is
answered by the handlers' own checks with a message naming the field and its range.

Endpoints (``gradio_client``): ``/generate``, ``/channel``, ``/grid``, ``/walk``,
``/random_seed``, ``/models``; ``/ping`` is an undocumented trivial endpoint for benchmarks.
The page's own events are private: ``/generate`` and ``/channel`` are ``gr.api`` endpoints over
the same handlers.
"""

from __future__ import annotations

import re

import gradio as gr
from gradio.context import Context

from .. import validate, zoo
from . import generate_view as view
from .generate_handlers import (
    GRID_RANGE,
    SEED_MAX,
    WALK_FRAMES,
    GenerateHandlers,
    model_label,
    random_seed,
)
# The live events share one queue of one worker: several events write the one view (box, slider,
# dice, truncation, mixing, channel picker), and in one FIFO queue the last request's answer is
# always the last painted (the generator runs one at a time anyway, behind its lock).
LIVE = dict(trigger_mode="always_last", show_progress="hidden", preprocess=False, api_visibility="private",
            concurrency_id="msgen-generate-page", concurrency_limit=1)


def opening_name(ctx, owner: str | None = None, entries: list | None = None) -> str | None:
    """The model the tab opens on (``msgen.zoo.opening_model``: the shipped card with the highest
    precision x coverage x share of samples that are not near-copies), of ``entries`` when the
    caller has listed them already, else of ``ctx.models(owner)``."""
    entry = zoo.opening_model(ctx.models(owner) if entries is None else entries)
    return entry.name if entry else None


def model_choices(ctx, owner: str | None, entries: list | None = None) -> list[tuple[str, str]]:
    """(label, name) for every model this visitor may use: shipped ones, then their runs
    (``entries`` when the caller has listed them already).

    The Train tab calls this (through ``model_dropdown_update``) after a run exports a model.
    """
    return [(model_label(e), e.name) for e in (ctx.models(owner) if entries is None else entries)]


def model_list(ctx) -> gr.Dropdown:
    """The tab's model list, unrendered: made before any tab (``ctx.model_dropdown``, app.py) so the
    Train tab can refresh it whatever order the tabs are built in; ``build`` places it."""
    entries = ctx.models(None)  # listed once for the choices and the opening pick
    return gr.Dropdown(model_choices(ctx, None, entries), value=opening_name(ctx, None, entries), label="Model (family, resolution, training data)",
                       allow_custom_value=True, elem_id="msgen-model", render=False)  # a visitor's run may be unlisted yet


def model_dropdown_update(ctx, owner: str | None, current: str | None = None, select: str | None = None) -> dict:
    """An update for ``ctx.model_dropdown``: fresh choices, ``select`` or the current pick kept."""
    entries = ctx.models(owner)  # listed once for the choices and the fallback pick
    choices = model_choices(ctx, owner, entries)
    names = [name for _, name in choices]
    value = next((v for v in (select, current) if v in names), opening_name(ctx, owner, entries))
    return gr.update(choices=choices, value=value)


def level_choices(levels) -> list[tuple[str, int]]:
    return [(f"{lvl}x{lvl}", lvl) for lvl in levels]


def mix_choices(levels) -> list[tuple[str, int]]:
    return [("off", 0)] + level_choices(levels[1:])  # switching at the first level is just seed B


def truncation_of(family: str | None) -> tuple[float, str]:
    """The family's starting truncation and what the slider calls it (temperature for a VAE)."""
    return validate.default_truncation(family), validate.truncation_label(family)


def on_model(h: GenerateHandlers, model, mix_level, owner=None):
    """A model was picked: its levels become the choices; scale goes to its finest, mixing stays if
    valid, and truncation starts where the model's family samples best (with that family's name for it)."""
    entry = h.entry(model, owner)
    levels = entry.levels
    scale = levels[-1]
    mix_level = mix_level if mix_level in levels[1:] else 0
    lo, hi = validate.truncation_range(entry.family)
    return (gr.update(choices=level_choices(levels), value=scale),
            gr.update(choices=mix_choices(levels), value=mix_level),
            gr.update(value=validate.default_truncation(entry.family), label=validate.truncation_label(entry.family),
                      minimum=lo, maximum=hi))


def on_model_page(h: GenerateHandlers, model, scale, seed, truncation, mix_seed, mix_level, level, channel,
                  normalize=True, owner=None):
    """A model was picked: ``on_model``'s control updates and the page for the new model, in one
    response; the channel picker starts at the finest level's most active channel."""
    scale_u, mix_u, trunc_u = on_model(h, model, mix_level, owner)
    page = h.page_and_picker(model, scale_u["value"], seed, trunc_u["value"], mix_seed, mix_u["value"], level,
                             channel, normalize, owner, reset=True)
    return (scale_u, mix_u, trunc_u, *page)


def seed_from_caption(evt: gr.SelectData) -> int | None:
    """A seed-grid tile was clicked: its caption says which seed it is (None: not a seed tile)."""
    found = re.search(r"seed (\d+)", str(evt.value))
    return int(found.group(1)) if found else None


def build(ctx) -> GenerateHandlers:
    h = GenerateHandlers(ctx)
    owner = ctx.owner_state()
    if ctx.model_dropdown is None:  # built on its own (tests): the list is made here
        ctx.model_dropdown = model_list(ctx)
    model = ctx.model_dropdown
    default = model.value or None
    entry = h.entry(default, None) if default else None
    levels = entry.levels if entry else (4, 8, 16, 32, 64)
    family = entry.family if entry else None
    start_truncation, truncation_label = truncation_of(family)
    start_seed = entry.opening_seed if entry else 0  # chosen by a stated rule (msgen.metrics.opening_seed)
    first = _first_result(h, default, levels, start_truncation, start_seed)  # image, cards, stats, info, channel, level, channel
    ch_start = first[5:] if first else ({"value": levels[-1]}, {"value": 0, "maximum": 511, "label": "Channel"})

    gr.HTML(f"<style>{view.CSS}</style>", padding=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            model.render()
            scale = gr.Radio(level_choices(levels), value=levels[-1], label="Scale: the finest level to render",
                             elem_id="msgen-scale")
            with gr.Row(equal_height=True):
                seed_box = gr.Number(start_seed, label="Seed", precision=0, minimum=0, maximum=SEED_MAX, scale=4,
                                     elem_id="msgen-seed-box")
                dice = gr.Button("🎲", scale=1, min_width=48, elem_id="msgen-dice")
            seed = gr.Slider(0, SEED_MAX, value=start_seed, step=1, precision=0, label="Seed (drag to explore)",
                             elem_id="msgen-seed")
            truncation = gr.Slider(*validate.truncation_range(family), value=start_truncation, step=0.05, elem_id="msgen-truncation",
                                   label=truncation_label)
            with gr.Group():
                with gr.Row(equal_height=True):
                    mix_seed = gr.Number(1, label="Seed B (mixing and walk)", precision=0, minimum=0,
                                         maximum=SEED_MAX, scale=4, elem_id="msgen-seed-b")
                    dice_b = gr.Button("🎲", scale=1, min_width=48, elem_id="msgen-dice-b")
                mix_level = gr.Radio(mix_choices(levels), value=0, elem_id="msgen-mix-level",
                                     label="Granularity mixing: levels from here on come from seed B")
            with gr.Group():
                ch_level = gr.Radio(level_choices(levels), value=ch_start[0]["value"],
                                    label="One channel, large (beside the image): level", elem_id="msgen-channel-level")
                ch_channel = gr.Slider(0, ch_start[1]["maximum"], value=ch_start[1]["value"], step=1, precision=0,
                                       label=ch_start[1]["label"], elem_id="msgen-channel-index")
                normalize = gr.Checkbox(True, label="Scale to the channel's own range (off: the level's)")
        with gr.Column(scale=2, min_width=440):
            page_view = view.page_view(view.view_value(*first[:5]) if first else None)
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
    page_inputs = request + [ch_level, ch_channel, normalize, owner]
    picker = [ch_level, ch_channel]

    # Each live event answers with the view's one value (generate_view: one output, not five).
    def page(*inputs):
        return view.view_value(*h.page(*inputs))

    def page_and_picker(*inputs, reset: bool = False):
        *values, level_u, channel_u = h.page_and_picker(*inputs, reset=reset)
        return view.view_value(*values), level_u, channel_u

    def page_level(*inputs):  # another level for the channel view: it starts at that level's most active channel
        shown, _, channel_u = page_and_picker(*inputs, reset=True)
        return shown, channel_u

    def page_model(*inputs):
        scale_u, mix_u, trunc_u, *values = on_model_page(h, *inputs)
        return scale_u, mix_u, trunc_u, view.view_value(*values[:5]), *values[5:]

    def page_seed_a(model, scale, _seed, *rest):
        seed = random_seed()
        return seed, page(model, scale, seed, *rest)

    def page_seed_b(model, scale, seed, truncation, _mix_seed, *rest):
        mix_seed = random_seed()
        return mix_seed, page(model, scale, seed, truncation, mix_seed, *rest)

    def page_from_tile(evt: gr.SelectData, *inputs):
        seed = seed_from_caption(evt)
        if seed is None:
            return gr.skip(), gr.skip()  # not a seed tile: the seed and the view stay
        inputs = list(inputs)
        inputs[2] = seed
        return seed, page(*inputs)

    # The seed: typed in the box, moved on the slider, drawn by the dice or picked in the grid. Each
    # of these is the one event that computes the page, straight from the visitor's action (no
    # slider "change" in between, which Svelte dispatches a tick later); the box and the slider
    # mirror each other in the browser, by events that never reach the server.
    box_inputs = [model, scale, seed_box] + page_inputs[3:]
    seed_box.submit(None, seed_box, seed, js="(x) => x")
    seed_box.blur(None, seed_box, seed, js="(x) => x")
    seed.change(None, seed, seed_box, js="(x) => x")
    gr.on([seed_box.submit, seed_box.blur], page, box_inputs, page_view, api_name="page_box", **LIVE)
    gr.on([seed.input, seed.release], page, page_inputs, page_view, api_name="page_slider", **LIVE)
    dice.click(page_seed_a, page_inputs, [seed, page_view], api_name="page_dice", **LIVE)
    gr.on([truncation.input, mix_level.input, mix_seed.submit, mix_seed.blur, ch_channel.input, normalize.input],
          page, page_inputs, page_view, api_name="page", **LIVE)
    scale.input(page_and_picker, page_inputs, [page_view] + picker, api_name="page_scale", **LIVE)
    dice_b.click(page_seed_b, page_inputs, [mix_seed, page_view], api_name="page_seed_b", **LIVE)
    model.change(page_model, page_inputs, [scale, mix_level, truncation, page_view] + picker,
                 api_name="page_model", **(LIVE | dict(show_progress="minimal")))  # a first pick may load it: say so
    ch_level.input(page_level, page_inputs, [page_view, ch_channel], api_name="page_level", **LIVE)
    walk_btn.click(h.walk, [model, scale, seed, mix_seed, truncation, frames, owner], walk, api_name="walk",
                   preprocess=False)
    grid_btn.click(h.grid, [model, scale, seed, truncation, count, owner], grid, api_name="grid", preprocess=False)
    grid.select(page_from_tile, page_inputs, [seed, page_view], api_visibility="private", preprocess=False)

    # A visitor's own runs join the list when the page loads (the Train tab refreshes it later).
    root = Context.root_block
    if root is not None:
        root.load(lambda o, cur: model_dropdown_update(ctx, o, cur), [owner, model], model,
                  api_visibility="private", preprocess=False)

    def generate(model: str, scale: int, seed: int, truncation: float = 1.0, mix_seed: int = 1,
                 mix_level: int = 0, owner: str | None = None) -> tuple[str, list[dict], dict, str]:
        """The image, one card per level, the level statistics and a summary; pictures are WebP data
        URIs. ``owner``: a visitor's token, to reach that visitor's runs on a shared host."""
        return h.generate(model, scale, seed, truncation, mix_seed, mix_level, owner)

    def channel(model: str, scale: int, seed: int, truncation: float, mix_seed: int, mix_level: int, level: int,
                channel: int, normalize: bool = True, owner: str | None = None) -> str:
        """One channel of one level's feature map, large, as a WebP data URI."""
        return h.channel(model, scale, seed, truncation, mix_seed, mix_level, level, channel, normalize, owner)

    def models(owner: str | None = None) -> list[dict]:
        """Every model this visitor may use: name, label, family, resolution, levels, data set."""
        return [{"name": e.name, "label": model_label(e), "family": e.family, "resolution": e.resolution,
                 "levels": list(e.levels), "dataset": e.dataset, "source": e.source} for e in ctx.models(owner)]

    def new_seed() -> int:
        """A fresh seed, any 32-bit value."""
        return random_seed()

    def ping(text: str = "") -> str:
        """Gradio's own round trip, for bench/app.py to compare against."""
        return text

    gr.api(generate, api_name="generate")
    gr.api(channel, api_name="channel")
    gr.api(models, api_name="models")
    gr.api(new_seed, api_name="random_seed")
    gr.api(ping, api_name="ping", api_visibility="undocumented")
    return h


def _first_result(h: GenerateHandlers, model: str | None, levels, truncation: float, seed: int = 0) -> tuple | None:
    """The page's opening picture and channel picker, computed at build: the default model loads
    once, before launch, and the first visitor sees every view without waiting for a request."""
    if model is None:
        return None
    try:
        return h.page_and_picker(model, levels[-1], seed, truncation, 1, 0, levels[-1], 0, True, None, reset=True)
    except Exception:  # a broken default model, or no GPU outside a request (ZeroGPU): the page
        return None  # still opens, and the first request says what is wrong
