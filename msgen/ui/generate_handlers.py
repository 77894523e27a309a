"""Generate tab handlers: plain functions of the controls' values, testable without a server.

``GenerateHandlers`` turns (model, scale, seed, truncation, mixing) into everything the tab
shows: the image; for every level a card with the picture at that scale, its feature map in
PCA colours and its most active channels; the level statistics; one channel large; a
latent-walk GIF and a grid of seeds. Requests are checked first (``generate_requests``); a bad
one raises ``gr.Error`` with a message naming the field and its range.

Speed: one live update is one response. ``page`` returns the image, every card, the statistics,
the summary and the channel view together, every picture inline as a lossless WebP ``data:`` URI
(``render.data_uri``, ``generate_rendered``): no file is written, hashed, moved into Gradio's cache or fetched per
picture, and ``gradio_client`` has nothing to download. Generators come from the shared
device-resident ``ModelCache``; rendered results sit in a bounded LRU keyed by every input (and
the weights' mtime), so going back to a slider position is a dictionary lookup. Generator runs
hold one lock: ``features.capture`` hooks the shared modules, and on a 2-core CPU one run with
both cores beats two fighting for them. On a Hugging Face ZeroGPU Space the runs are wrapped in
``spaces.GPU``; elsewhere that is a no-op and ``spaces`` need not be installed.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from gradio.utils import get_upload_folder
from PIL import Image

import msgen
from .. import render
from ..models import slerp  # noqa: F401  (the walk's interpolation; tests use it from here)
from ..validate import GRID_RANGE, WALK_FRAMES, seed_at  # noqa: F401  (re-exported for the tab)
from ..zoo import ModelEntry
from .cpu_runner import OneThreadRunner
from .generate_rendered import STATS_HEADERS, Rendered, render_generation  # noqa: F401  (re-exported)
from .generate_requests import (  # noqa: F401  (re-exported: the tab and the tests use them from here)
    SEED_MAX,
    Request,
    fail,
    level_of,
    model_label,
    whole_number,
)

try:  # ZeroGPU: a GPU is attached only while a spaces.GPU function runs
    import spaces

    gpu = spaces.GPU
except ImportError:  # anywhere else: run as is

    def gpu(fn):
        return fn


WALK_MIN_SIZE = 256  # GIF frames are enlarged (nearest) so a download looks like the page
RESULTS_MAX_BYTES = 256 * 2**20  # the LRU keeps feature maps (~1 MB a result at 64 px): bound it in bytes too
FILES_KEEP = 4096  # grid and walk files kept on disk (newest first); a swept one is simply made again
SWEEP_EVERY = 128  # files written between two sweeps of the picture folder


class GenerateHandlers:
    """The Generate tab's actions over one ``AppContext`` (its model cache and model lists)."""

    def __init__(self, ctx, *, max_results: int = 64, max_bytes: int = RESULTS_MAX_BYTES,
                 files: str | Path | None = None):
        self.ctx = ctx
        self.max_results = max_results
        self.max_bytes = max_bytes
        # Grid and walk files go straight into Gradio's cache folder, which serves them without copying.
        self.files = Path(files) if files is not None else Path(get_upload_folder()) / "msgen"
        self.files.mkdir(parents=True, exist_ok=True)
        self._results: OrderedDict[tuple, Rendered] = OrderedDict()
        self._results_bytes = 0
        self._written = 0
        self._results_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._one_thread = OneThreadRunner()
        # Wrapped here, not at import, so each handler set has its own cache and lock.
        self._generate_on_device = gpu(self._generate_on_device_impl)
        self._latents_on_device = gpu(self._latents_on_device_impl)

    # --- checking requests -----------------------------------------------------------------
    def entry(self, model: Any, owner: str | None) -> ModelEntry:
        if model is None or model == "":
            raise fail("no model selected: pick one from the list (or train one in the Train tab)")
        try:
            return self.ctx.find(str(model), owner)
        except ValueError as exc:
            raise fail(str(exc)) from None

    def request(self, model, scale, seed, truncation, mix_seed=None, mix_level=0, owner=None) -> Request:
        return Request.check(self.entry(model, owner), scale, seed, truncation, mix_seed, mix_level)

    # --- running the generator (the only part that touches the device) ----------------------
    def _model(self, path: Path) -> torch.nn.Module:
        try:
            return self.ctx.cache.get(path)
        except (OSError, ValueError) as exc:  # CheckpointError is a ValueError
            raise fail(f"could not load model {path.name}: {exc}") from None

    def _generate_on_device_impl(self, req: Request, n: int = 1, features: bool = True) -> msgen.Generation:
        gen = self._model(req.entry.path)
        one_cpu_image = n == 1 and next(gen.parameters()).device.type == "cpu"
        with self._run_lock:
            args = dict(seed=req.seed, scale=req.scale, truncation=req.truncation, mix_seed=req.mix_seed,
                        mix_level=req.mix_level, n=n, features=features)
            if one_cpu_image:
                return self._one_thread.run(msgen.generate, gen, **args)
            return msgen.generate(gen, **args)

    @torch.inference_mode()
    def _latents_on_device_impl(self, path: Path, z: torch.Tensor, scale: int, truncation: float) -> torch.Tensor:
        gen = self._model(path)
        param = next(gen.parameters())
        with self._run_lock:
            out = gen(z.to(param.device, param.dtype), upto=scale, truncation=truncation)
        return out.images[scale].float().cpu()

    # --- actions -----------------------------------------------------------------------------
    def rendered(self, req: Request) -> tuple[Rendered, bool]:
        """The result for ``req`` and whether it came from the LRU."""
        key = req.key
        with self._results_lock:
            hit = self._results.get(key)
            if hit is not None:
                self._results.move_to_end(key)
                return hit, True
        t0 = time.perf_counter()
        out = self._generate_on_device(req)
        with torch.inference_mode():
            res = render_generation(out)
        res.ms = (time.perf_counter() - t0) * 1e3
        with self._results_lock:
            old = self._results.pop(key, None)
            self._results_bytes += res.nbytes - (old.nbytes if old else 0)
            self._results[key] = res
            while len(self._results) > self.max_results or (self._results_bytes > self.max_bytes
                                                            and len(self._results) > 1):
                self._results_bytes -= self._results.popitem(last=False)[1].nbytes
        return res, False

    def generate(self, model, scale, seed, truncation=1.0, mix_seed=None, mix_level=0, owner=None):
        """-> image, one card per level (picture, PCA view, top channels), the statistics table, a
        summary: the ``/generate`` API. Pictures are lossless WebP data URIs, cards dicts with their level,
        channel count and caption, the table ``{"headers", "data"}``."""
        req = self.request(model, scale, seed, truncation, mix_seed, mix_level, owner)
        res, hit = self.rendered(req)
        return res.image, res.levels, res.table, _summary(req, res, hit)

    def page(self, model, scale, seed, truncation, mix_seed, mix_level, level, channel, normalize=True,
             owner=None):
        """One live update of the page (a seed, truncation or mixing change): the outputs of
        ``generate`` and the channel view at the picker's level and channel, in one response."""
        req = self.request(model, scale, seed, truncation, mix_seed, mix_level, owner)
        res, hit = self.rendered(req)
        level, channel = _pick(res, level, channel, reset=False)
        return (res.image, res.levels, res.table, _summary(req, res, hit),
                _channel_uri(res, level, channel, normalize))

    def page_and_picker(self, model, scale, seed, truncation, mix_seed, mix_level, level, channel,
                        normalize=True, owner=None, *, reset: bool = False):
        """``page`` plus the channel picker's level choices and channel range, for a change of
        scale (a level above the new scale falls back to the finest), of model or of the picker's
        level (``reset``: start at the level's most active channel). Lenient where the page can be
        momentarily stale."""
        req = self.request(model, scale, seed, truncation, mix_seed, mix_level, owner)
        res, hit = self.rendered(req)
        level, channel = _pick(res, level, channel, reset=reset)
        return (res.image, res.levels, res.table, _summary(req, res, hit),
                _channel_uri(res, level, channel, normalize), *_picker(res, level, channel))

    def channel(self, model, scale, seed, truncation, mix_seed, mix_level, level, channel, normalize=True, owner=None):
        """One channel of one level's feature map, large, its own range or the level's: a data URI."""
        req = self.request(model, scale, seed, truncation, mix_seed, mix_level, owner)
        res, _ = self.rendered(req)
        level = level_of("level", level, tuple(res.features))
        channel = whole_number("channel", channel, 0, res.features[level].shape[0] - 1)
        return _channel_uri(res, level, channel, normalize)

    def grid(self, model, scale, seed, truncation=1.0, count=16, owner=None):
        """``count`` consecutive seeds from ``seed``, each captioned with its seed."""
        req = self.request(model, scale, seed, truncation, owner=owner)
        count = whole_number("count", count, *GRID_RANGE)
        out = self._generate_on_device(req, n=count, features=False)
        imgs = render.to_uint8(out.images[req.scale])
        tiles = [(render.save(im, self.files), f"seed {seed_at(req.seed, i)}") for i, im in enumerate(imgs)]
        self._wrote(count)
        return tiles

    def walk(self, model, scale, seed, mix_seed, truncation=1.0, frames=24, owner=None) -> str:
        """A looping GIF along the great circle from seed A's latent to seed B's (slerp)."""
        req = self.request(model, scale, seed, truncation, owner=owner)
        seed_b = whole_number("seed B", mix_seed, 0, SEED_MAX)
        frames = whole_number("frames", frames, *WALK_FRAMES)
        name = hashlib.sha256(repr((req.key, seed_b, frames)).encode()).hexdigest()[:24]
        path = self.files / f"walk-{name}.gif"
        try:
            os.utime(path)  # made before: mark it recently used and hand it out again
            return str(path)
        except FileNotFoundError:
            pass
        gen = self._model(req.entry.path)
        za, zb = gen.sample_latents(1, req.seed), gen.sample_latents(1, seed_b)
        z = torch.cat([slerp(za, zb, t) for t in torch.linspace(0, 1, frames).tolist()])
        images = render.to_uint8(self._latents_on_device(req.entry.path, z, req.scale, req.truncation))
        render.save_gif([render.enlarge(Image.fromarray(im), WALK_MIN_SIZE) for im in images], path)
        self._wrote(1)
        return str(path)

    def _wrote(self, n: int) -> None:
        """Count files written; every ``SWEEP_EVERY`` of them, sweep the folder down to ``FILES_KEEP``."""
        with self._results_lock:
            before, self._written = self._written, self._written + n
        if before // SWEEP_EVERY != self._written // SWEEP_EVERY:
            _sweep(self.files, FILES_KEEP)


def _summary(req: Request, res: Rendered, hit: bool) -> str:
    return req.summary() + (": from the result cache" if hit else f": in {res.ms:.1f} ms")


def _pick(res: Rendered, level: Any, channel: Any, *, reset: bool) -> tuple[int, int]:
    """The channel picker's (level, channel) for ``res``: a level it does not have falls back to
    the finest, a channel out of range to the nearest, ``reset`` to the level's most active one."""
    try:
        level = int(level)
    except (TypeError, ValueError):
        level = 0
    if level not in res.features:
        level, reset = max(res.features), True
    last = res.features[level].shape[0] - 1
    try:
        return level, res.top_channels[level][0] if reset else min(max(int(channel), 0), last)
    except (TypeError, ValueError):
        return level, res.top_channels[level][0]


def _picker(res: Rendered, level: int, channel: int) -> tuple[dict, dict]:
    last = res.features[level].shape[0] - 1
    return (gr.update(choices=[(f"{lvl}x{lvl}", lvl) for lvl in res.features], value=level),
            gr.update(maximum=last, value=channel, label=f"Channel (0 to {last}; starts at the most active)"))


def _channel_uri(res: Rendered, level: int, channel: int, normalize: Any) -> str:
    return render.data_uri(render.channel_view(res.features[level], channel, normalize=bool(normalize)))


def random_seed() -> int:
    """A fresh seed, any 32-bit value."""
    return random.SystemRandom().randint(0, SEED_MAX)


def _sweep(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recently used picture files in ``folder``."""

    def mtime(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:  # deleted by a concurrent sweep
            return 0.0

    files = [p for p in folder.iterdir() if p.suffix in (".webp", ".gif") and not p.name.startswith(".")]
    for old in sorted(files, key=mtime, reverse=True)[keep:]:
        old.unlink(missing_ok=True)


