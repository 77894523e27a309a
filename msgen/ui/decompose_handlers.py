"""Decompose tab handlers: plain functions of plain values, testable without building Blocks.

``decompose`` takes a picture apart with a model that can encode pictures (a family whose
registry record says ``encodes``): the picture as the model sees it, its reconstruction at
every level, and each level's latent group (the posterior mean as PCA colours beside a map of
where that level spends its information, with the nats it spends). ``resample`` re-draws
around a chosen level with a seed and a temperature (the family's own range and starting
value, ``msgen.validate``): "keep coarse, vary detail" keeps the levels below it and draws the
finer ones afresh; "keep detail, vary layout" keeps the fine levels' latents and draws the
coarse ones afresh. Pictures come from ``msgen.render``.

Raw payloads are never trusted: gradio checks only payloads that carry its FileData marker, so
every event passes its image through ``request_image`` (``validate.uploaded_image``), which
admits files inside gradio's upload cache and inline ``data:`` images, never a path the caller
chose; a file that is not an image reaches ``msgen.data.load_image`` and comes back as one
clear ``gr.Error``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from PIL import Image

from .. import render
from ..models import families, families_that
from ..zoo import WEIGHTS_DIR
from . import common, validate

CAPABILITY = "encodes"  # what a model's family must be able to do for this tab (Family.encodes)
EXAMPLES_DIR = WEIGHTS_DIR / "examples"  # Noto emoji and Fashion-MNIST test images (weights/examples/make_examples.py)
MODES = {"Keep coarse, vary detail": "detail", "Keep detail, vary layout": "layout"}
TILE = 128  # pixels per level tile: small levels enlarged with nearest neighbour so they stay crisp
DEFAULT_COUNT = validate.DEFAULT_VARIANTS
MAX_COUNT = validate.VARIANTS[1]


def encoding_families() -> str:
    """The families that can encode a picture, for messages (computed from the registry)."""
    return ", ".join(families_that(CAPABILITY)) or "none is installed"


def train_hint() -> str:
    """What the tab says while no model that can encode pictures is available."""
    names = families_that(CAPABILITY)
    first = names[0] if names else "FAMILY"
    return (
        f"**No model that can encode pictures (e.g. {encoding_families()}) is available yet**, and Decompose "
        f"needs one. Train one in the **Train** tab (*Start from* → *new {first} from scratch*), or on "
        "the command line:\n\n"
        f"```\npython -m msgen train --family {first} --resolution 32 --data my_images/ --out runs/my-{first} "
        "--steps 3000 --batch 32 --lr 1e-3\n```\n\nthen press *Refresh models*."
    )


# --- models -------------------------------------------------------------------------------------
def can_encode(family: str) -> bool:
    fam = families().get(family)
    return bool(fam is not None and getattr(fam, CAPABILITY))


def encoding_models(ctx: common.AppContext, owner: str | None) -> list:
    """The visitor's models whose family can encode a picture."""
    return [e for e in ctx.models(owner) if can_encode(e.family)]


def model_choices(ctx: common.AppContext, owner: str | None) -> list[tuple[str, str]]:
    return [(e.label, e.name) for e in encoding_models(ctx, owner)]


def level_choices(levels: tuple[int, ...]) -> list[tuple[str, int]]:
    # Splitting at the coarsest level would keep nothing (or everything): not worth a choice.
    return [(f"{lvl}x{lvl}", lvl) for lvl in levels[1:]]


def default_level(levels: tuple[int, ...]) -> int:
    return levels[max(1, len(levels) // 2)]


def load_model(ctx: common.AppContext, name: str | None, owner: str | None) -> torch.nn.Module:
    if not name:
        raise gr.Error("Pick a model that can encode pictures first." if encoding_models(ctx, owner) else
                       f"No model that can encode pictures (e.g. {encoding_families()}) is available; train one in "
                       "the Train tab (new ... from scratch).")
    try:
        entry = ctx.find(str(name), owner)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    if not can_encode(entry.family):
        raise gr.Error(f"{entry.name} is a {entry.family} model, which has no encoder; Decompose needs a model "
                       f"that can encode pictures (e.g. {encoding_families()}): pick one from the list")
    return ctx.cache.get(entry.path)


# --- input --------------------------------------------------------------------------------------
def _image_source(value: Any) -> str | bytes:
    """An image for ``msgen.data.load_image``: a request payload (a dict, judged by
    ``validate.uploaded_image``: gradio's own uploads or inline data, never a caller's path),
    or, from Python callers, a path, bytes, a PIL image or an array."""
    if value is None:
        raise gr.Error("Upload an image (or click an example) first.")
    if isinstance(value, dict):
        try:
            return validate.uploaded_image(value)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, np.ndarray):
        value = Image.fromarray(value)
    if isinstance(value, Image.Image):
        return render.png_bytes(value)
    raise gr.Error(f"Cannot read an image from a {type(value).__name__}.")


def request_image(value: Any) -> str | bytes | None:
    """What an event hands over (raw, ``preprocess=False``) -> a safe source; ``None`` stays ``None``.
    A request never names a file by a plain string: only dict payloads (uploads, data: URLs) pass."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise gr.Error("Send the image as an upload (gradio_client.handle_file) or as a data: URL.")
    return _image_source(value)


def load_input(value: Any, resolution: int, fit: str = "crop") -> torch.Tensor:
    """The uploaded picture as the model sees it: 1 x 3 x r x r in [-1, 1]; gr.Error if unusable."""
    from ..data import DataError, load_image

    try:
        fit = fit or "crop"
        if fit not in ("crop", "pad"):
            raise gr.Error("fit must be 'crop' or 'pad'")
        return load_image(_image_source(value), resolution, fit=fit)[None]
    except DataError as exc:
        raise gr.Error(f"Not a usable image: {exc}") from None


# --- pictures (msgen.render: the Generate tab's rounding, colour ramp and PCA colours) ----------
def to_tile(image: torch.Tensor) -> Image.Image:
    """3 x r x r in [-1, 1] -> a PIL tile enlarged (nearest) to at least ``TILE`` pixels."""
    return Image.fromarray(render.tile(image, TILE))


def latent_tile(mu: torch.Tensor, kl: torch.Tensor) -> Image.Image:
    """A level's posterior mean in PCA colours beside its KL per position (``render.latent_tile``)."""
    return Image.fromarray(render.latent_tile(mu, kl, TILE))


def default_temperature(family: str | None) -> float:
    """Where re-sampling starts for ``family``: its one best temperature (``Family.ui``)."""
    return validate.resample_temperature(family)


# --- handlers -----------------------------------------------------------------------------------
@torch.inference_mode()
def decompose(ctx: common.AppContext, model: str | None, image: Any, fit: str = "crop", owner: str | None = None):
    """(reconstructions gallery, latents gallery, per-level table rows) for one picture."""
    g = load_model(ctx, model, owner)
    x = load_input(image, g.config.resolution, fit)
    enc = g.encode(x)
    nats = {lvl: float(v[0]) for lvl, v in enc.kl_nats().items()}
    total = sum(nats.values()) or 1.0
    recon = [(to_tile(x[0]), f"input ({g.config.resolution}x{g.config.resolution})")]
    latents, rows = [], []
    for lvl in g.levels:
        img = enc.images[lvl][0].float().cpu()
        target = torch.nn.functional.adaptive_avg_pool2d(x, lvl)[0]
        recon.append((to_tile(img), f"{lvl}x{lvl}"))
        mu = enc.mu[lvl][0].float().cpu()
        extra = f" + {enc.global_mu.shape[1]}-d global" if lvl == g.levels[0] and enc.global_mu is not None else ""
        latents.append((latent_tile(mu, enc.kl[lvl][0]),
                        f"{lvl}x{lvl}: {mu.shape[0]} ch{extra}, {nats[lvl]:.1f} nats"))
        rows.append([f"{lvl}x{lvl}", f"{mu.shape[0]}{extra}", round(nats[lvl], 2), round(100 * nats[lvl] / total, 1),
                     round(float((img - target).pow(2).mean()), 5)])
    return recon, latents, rows


@torch.inference_mode()
def resample(ctx: common.AppContext, model: str | None, image: Any, fit: str = "crop",
             mode: str = "detail", level: Any = None, seed: Any = 0, temperature: Any = None,
             count: Any = DEFAULT_COUNT, owner: str | None = None) -> list[tuple[Image.Image, str]]:
    """The reconstruction followed by ``count`` variants (seeds ``seed``, ``seed + 1``, ...);
    ``temperature`` within the family's range (``None``: the family's own starting value)."""
    g = load_model(ctx, model, owner)
    if not isinstance(mode, str) or MODES.get(mode, mode) not in ("detail", "layout"):
        raise gr.Error(f"mode must be one of: {', '.join(MODES)}")
    mode = MODES.get(mode, mode)
    try:
        level = validate.whole(level, "split level", 1, validate.MAX_SIDE, default=default_level(g.levels))
        seed = validate.seed(seed, default=0)
        count = validate.whole(count, "variants", 1, MAX_COUNT, default=DEFAULT_COUNT)
        family = g.config.family  # its forward's range and its starting value
        temperature = validate.truncation(temperature, family, "temperature", default=default_temperature(family))
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    if level not in g.levels[1:]:
        raise gr.Error(f"split level must be one of {[c[1] for c in level_choices(g.levels)]} for this model")
    x = load_input(image, g.config.resolution, fit)
    key = {"keep_below": level} if mode == "detail" else {"keep_from": level}
    out = g.resample(x, seed=seed, temperature=temperature, count=count, **key).finest.float().cpu()
    kept = f"levels < {level}" if mode == "detail" else f"levels >= {level}"
    gallery = [(to_tile(g.reconstruct(x).finest[0].float().cpu()), f"reconstruction (keeps {kept})")]
    gallery += [(to_tile(img), f"seed {validate.seed_at(seed, i)}") for i, img in enumerate(out)]
    return gallery


# --- the page's opening and lists ------------------------------------------------------------
def examples() -> list[list[str]]:
    if not EXAMPLES_DIR.is_dir():
        return []
    files = sorted(p for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    return [[str(p)] for p in files[:12]]


def opening(ctx: common.AppContext, model: str | None, image: str | None, levels) -> tuple:
    """The page's opening decomposition and variants, computed once at build (as the Generate tab's
    first picture is), so no visitor's page load pays for them; empty if there is nothing to show."""
    if model is None or image is None:
        return None, None, None, None
    try:
        recon, latents, rows = decompose(ctx, model, image)
        variants = resample(ctx, model, image, "crop", list(MODES)[0], default_level(levels))
    except Exception:  # a broken model must not stop the page from opening; a request will say what is wrong
        return None, None, None, None
    return recon, latents, rows, variants


def models_update(ctx: common.AppContext, owner: str | None, model: str | None) -> tuple:
    """The model list for this visitor (the current pick kept if still there), the notice shown
    when there is none, the main column shown when there are some."""
    found = model_choices(ctx, owner)
    names = [c[1] for c in found]
    keep = model if model in names else (names[0] if names else None)
    return gr.update(choices=found, value=keep), gr.update(visible=not found), gr.update(visible=bool(found))


def level_update(ctx: common.AppContext, model: str | None, level: Any, owner: str | None, fallback) -> dict:
    """The split-level choices for a newly picked model (the current level kept if it has it)."""
    try:
        lv = ctx.find(model, owner).levels if model else fallback
    except ValueError:
        return gr.skip()
    return gr.update(choices=level_choices(lv), value=level if level in lv[1:] else default_level(lv))
