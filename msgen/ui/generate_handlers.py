"""Generate tab handlers: plain functions of the controls' values, testable without a server.

``GenerateHandlers`` turns (model, scale, seed, truncation, mixing) into everything the tab
shows: the image; for every level a card with the picture at that scale, its feature map in
PCA colours and its most active channels; the level statistics; one channel large; a
latent-walk GIF and a grid of seeds. Each request is checked first; a bad one raises
``gr.Error`` with a message naming the field and its range.

Speed: generators come from the shared device-resident ``ModelCache``; rendered results sit in
a bounded LRU keyed by every input (and the weights' mtime), so going back to a slider position
is a dictionary lookup. Generator runs hold one lock: ``features.capture`` hooks the shared
modules, and on a 2-core CPU one run with both cores beats two fighting for them. On a
Hugging Face ZeroGPU Space the runs are wrapped in ``spaces.GPU``; elsewhere that is a no-op
and ``spaces`` need not be installed.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from gradio.utils import get_upload_folder
from PIL import Image

import msgen
from ..zoo import ModelEntry
from . import render

try:  # ZeroGPU: a GPU is attached only while a spaces.GPU function runs
    import spaces

    gpu = spaces.GPU
except ImportError:  # anywhere else: run as is

    def gpu(fn):
        return fn


SEED_MAX = 2**32 - 1
TRUNCATION_RANGE = (0.0, 2.0)  # what every family's forward accepts (check_generate_args)
TOP_K = 8  # most active channels remembered per level (the channel picker starts at the first)
CARD_CHANNELS = 7  # a level card is 3 x 3 tiles: picture, PCA view, 7 most active channels
GRID_RANGE = (1, 64)  # seeds in one grid: one batched generator call
WALK_FRAMES = (2, 60)
WALK_MIN_SIZE = 256  # GIF frames are enlarged (nearest) so a download looks like the page
STATS_HEADERS = ["level", "channels", "size", "mean", "std", "share <= 0"]
RESULTS_MAX_BYTES = 256 * 2**20  # the LRU keeps feature maps (~1 MB a result at 64 px): bound it in bytes too
FILES_KEEP = 4096  # picture files kept on disk (newest first); a swept one is simply rendered again
SWEEP_EVERY = 128  # new results between two sweeps of the picture folder


def fail(message: str) -> gr.Error:
    """A user-facing error: shown as a toast / returned by the API, no stack trace in the log."""
    return gr.Error(message, print_exception=False)


def whole_number(name: str, value: Any, lo: int, hi: int) -> int:
    try:
        ok = not isinstance(value, bool) and float(value).is_integer() and lo <= float(value) <= hi
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise fail(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    return int(float(value))


def number_in(name: str, value: Any, lo: float, hi: float) -> float:
    try:
        ok = not isinstance(value, bool) and lo <= float(value) <= hi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise fail(f"{name} must be a number from {lo:g} to {hi:g}, got {value!r}")
    return float(value)


def level_of(name: str, value: Any, levels: tuple[int, ...], *, allow_off: bool = False) -> int:
    try:
        lvl = int(value)
        ok = lvl == float(value) and (lvl in levels or (allow_off and lvl == 0))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        off = " or 0 (off)" if allow_off else ""
        raise fail(f"{name} must be one of this model's levels {list(levels)}{off}, got {value!r}")
    return lvl


def model_label(entry: ModelEntry) -> str:
    return entry.label + (" - your run" if entry.source == "run" else "")


@dataclass(frozen=True)
class Request:
    """A checked generate request; ``key`` identifies its result in the LRU."""

    entry: ModelEntry
    seed: int
    scale: int
    truncation: float
    mix_seed: int | None
    mix_level: int | None

    @property
    def key(self) -> tuple:
        st = (self.entry.path / "model.safetensors").stat()  # a retrained model is a new key
        return (str(self.entry.path), st.st_mtime_ns, st.st_size, self.seed, self.scale,
                self.truncation, self.mix_seed, self.mix_level)


@dataclass
class Rendered:
    """One generate call, ready for the page: picture files at native size, stats, raw feature maps."""

    image: str  # the picture at the requested scale (a WebP file in Gradio's cache)
    levels: list[tuple[str, str]]  # one card per level, coarse to fine (render.level_card), captioned
    stats: list[list]
    features: dict[int, torch.Tensor]  # level -> C x H x W float32 on the CPU, for the channel picker
    top_channels: dict[int, list[int]]
    ms: float  # time to compute it, shown on the page

    def files_exist(self) -> bool:  # a sweep (ours or Gradio's delete_cache) may have removed them
        return os.path.exists(self.image) and all(os.path.exists(p) for p, _ in self.levels)

    @property
    def nbytes(self) -> int:
        return sum(f.numel() * f.element_size() for f in self.features.values())


def render_generation(out: msgen.Generation, folder: Path) -> Rendered:
    fmaps = {lvl: f[0] for lvl, f in sorted((out.features or {}).items())}
    tops = {lvl: render.top_channels(f, TOP_K) for lvl, f in fmaps.items()}
    cards, stats = [], []
    for lvl, f in fmaps.items():
        c, h, w = f.shape
        card = render.level_card(out.images[lvl][0], f, tops[lvl][:CARD_CHANNELS])
        cards.append((render.save(card, folder), f"{lvl}x{lvl}: {c} channels"))
        mean, std, zeros = render.level_stats(f)
        stats.append([lvl, c, f"{h}x{w}", round(mean, 4), round(std, 4), round(zeros, 4)])
    image = render.save(render.to_uint8(out.images[out.scale][0]), folder)
    return Rendered(image=image, levels=cards, stats=stats, features=fmaps, top_channels=tops, ms=0.0)


class GenerateHandlers:
    """The Generate tab's actions over one ``AppContext`` (its model cache and model lists)."""

    def __init__(self, ctx, *, max_results: int = 64, max_bytes: int = RESULTS_MAX_BYTES,
                 files: str | Path | None = None):
        self.ctx = ctx
        self.max_results = max_results
        self.max_bytes = max_bytes
        # Pictures go straight into Gradio's cache folder, which it serves without copying.
        self.files = Path(files) if files is not None else Path(get_upload_folder()) / "msgen"
        self.files.mkdir(parents=True, exist_ok=True)
        self._results: OrderedDict[tuple, Rendered] = OrderedDict()
        self._results_bytes = 0
        self._renders = 0
        self._results_lock = threading.Lock()
        self._run_lock = threading.Lock()
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
        entry = self.entry(model, owner)
        scale = level_of("scale", scale, entry.levels)
        seed = whole_number("seed", seed, 0, SEED_MAX)
        truncation = round(number_in("truncation", truncation, *TRUNCATION_RANGE), 6)
        mix_level = level_of("mix level", 0 if mix_level is None else mix_level, entry.levels, allow_off=True)
        if mix_level:
            mix_seed = whole_number("mix seed", mix_seed, 0, SEED_MAX)
        else:
            mix_seed, mix_level = None, None  # mixing off: one cache entry whatever seed B says
        return Request(entry, seed, scale, truncation, mix_seed, mix_level)

    # --- running the generator (the only part that touches the device) ----------------------
    def _model(self, path: Path) -> torch.nn.Module:
        try:
            return self.ctx.cache.get(path)
        except (OSError, ValueError) as exc:  # CheckpointError is a ValueError
            raise fail(f"could not load model {path.name}: {exc}") from None

    def _generate_on_device_impl(self, req: Request, n: int = 1, features: bool = True) -> msgen.Generation:
        gen = self._model(req.entry.path)
        with self._run_lock:
            return msgen.generate(gen, seed=req.seed, scale=req.scale, truncation=req.truncation,
                                  mix_seed=req.mix_seed, mix_level=req.mix_level, n=n, features=features)

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
            if hit is not None and hit.files_exist():
                self._results.move_to_end(key)
                return hit, True
        t0 = time.perf_counter()
        out = self._generate_on_device(req)
        with torch.inference_mode():
            res = render_generation(out, self.files)
        res.ms = (time.perf_counter() - t0) * 1e3
        with self._results_lock:
            old = self._results.pop(key, None)
            self._results_bytes += res.nbytes - (old.nbytes if old else 0)
            self._results[key] = res
            while len(self._results) > self.max_results or (self._results_bytes > self.max_bytes
                                                            and len(self._results) > 1):
                self._results_bytes -= self._results.popitem(last=False)[1].nbytes
            self._renders += 1
            sweep = self._renders % SWEEP_EVERY == 0
        if sweep:
            _sweep(self.files, FILES_KEEP)
        return res, False

    def generate(self, model, scale, seed, truncation=1.0, mix_seed=None, mix_level=0, owner=None):
        """-> image, one card per level (picture, PCA view, top channels), stats rows, a summary."""
        req = self.request(model, scale, seed, truncation, mix_seed, mix_level, owner)
        res, hit = self.rendered(req)
        mixed = f", levels >= {req.mix_level} from seed {req.mix_seed}" if req.mix_level else ""
        took = "from the result cache" if hit else f"in {res.ms:.1f} ms"
        info = (f"**{req.entry.name}**: {req.scale}x{req.scale} from seed {req.seed}{mixed}, "
                f"truncation {req.truncation:g}: {took}")
        return res.image, res.levels, res.stats, info

    def channel(self, model, scale, seed, truncation, mix_seed, mix_level, level, channel, normalize=True, owner=None):
        """One channel of one level's feature map, large: its own range or the level's."""
        req = self.request(model, scale, seed, truncation, mix_seed, mix_level, owner)
        res, _ = self.rendered(req)
        level = level_of("level", level, tuple(res.features))
        fmap = res.features[level]
        channel = whole_number("channel", channel, 0, fmap.shape[0] - 1)
        return render.save(render.channel_view(fmap, channel, normalize=bool(normalize)), self.files)

    def channel_panel(self, model, scale, seed, truncation, mix_seed, mix_level, level, channel, normalize=True,
                      owner=None, *, reset: bool = False):
        """The page's channel picker after a change: level choices, channel range, the picture.

        Lenient where the page can be momentarily stale: a level above the new scale falls back
        to the finest one, and ``reset`` (a new level or model) starts at its most active channel.
        """
        req = self.request(model, scale, seed, truncation, mix_seed, mix_level, owner)
        res, _ = self.rendered(req)
        try:
            level = int(level)
        except (TypeError, ValueError):
            level = 0
        if level not in res.features:
            level, reset = max(res.features), True
        fmap = res.features[level]
        last = fmap.shape[0] - 1
        try:
            channel = res.top_channels[level][0] if reset else min(max(int(channel), 0), last)
        except (TypeError, ValueError):
            channel = res.top_channels[level][0]
        levels = [(f"{lvl}x{lvl}", lvl) for lvl in res.features]
        return (gr.update(choices=levels, value=level),
                gr.update(maximum=last, value=channel, label=f"Channel (0 to {last}; starts at the most active)"),
                render.save(render.channel_view(fmap, channel, normalize=bool(normalize)), self.files))

    def grid(self, model, scale, seed, truncation=1.0, count=16, owner=None):
        """``count`` consecutive seeds from ``seed``, each captioned with its seed."""
        req = self.request(model, scale, seed, truncation, owner=owner)
        count = whole_number("count", count, *GRID_RANGE)
        out = self._generate_on_device(req, n=count, features=False)
        imgs = render.to_uint8(out.images[req.scale])
        return [(render.save(im, self.files), f"seed {(req.seed + i) % (SEED_MAX + 1)}") for i, im in enumerate(imgs)]

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
        return str(path)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: Gaussian latents keep their typical norm along the path."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    if float(so.abs().min()) < 1e-6:
        return torch.lerp(a, b, t)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


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


