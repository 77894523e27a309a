"""Which models exist, and the device-resident cache that serves them.

Models come from two places: the shipped ``weights/<name>/`` folders and the user's runs
(``<runs>/<name>/model/``). In a source checkout (``app.py`` and ``requirements.txt`` beside
``msgen/``) they are the checkout's ``weights/`` and ``./runs``; an installed package (``pip
install .``) carries the shipped folders as ``msgen/weights`` and keeps runs in the user's data
folder (``$XDG_DATA_HOME/msgen/runs``, by default ``~/.local/share/msgen/runs``), never in
site-packages. ``MSGEN_WEIGHTS`` and ``MSGEN_RUNS`` override both. ``list_models`` describes
them (family, resolution, data set) without loading weights; ``ModelCache`` loads each once onto
the best device (CUDA, then MPS, then CPU; half precision on a GPU, bfloat16 for the families that
allow it on a CPU with native bfloat16 matrices) and keeps a bounded LRU of them. A cache key
includes the weights' modification time, so a model retrained under the same
name is reloaded, not served stale.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .device import cpu_bfloat16, pick_device

PACKAGE_DIR = Path(__file__).resolve().parent
_ROOT = PACKAGE_DIR.parent
CHECKOUT: Path | None = _ROOT if (_ROOT / "app.py").is_file() and (_ROOT / "requirements.txt").is_file() else None


def user_data_dir() -> Path:
    """Where an installed package keeps what a user makes: ``$XDG_DATA_HOME/msgen``, else ~/.local/share/msgen."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "msgen"


def default_runs_dir() -> Path:
    """``$MSGEN_RUNS``; else ``./runs`` in a source checkout; else the user's data folder's ``runs``."""
    if os.environ.get("MSGEN_RUNS"):
        return Path(os.environ["MSGEN_RUNS"])
    return Path("runs") if CHECKOUT is not None else user_data_dir() / "runs"


WEIGHTS_DIR = Path(os.environ.get("MSGEN_WEIGHTS") or (CHECKOUT / "weights" if CHECKOUT else PACKAGE_DIR / "weights"))
RUNS_DIR = default_runs_dir()


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    family: str
    resolution: int
    levels: tuple[int, ...]
    dataset: str
    source: str  # "shipped" or "run"
    opening_seed: int = 0  # where the Generate page opens it (``msgen.metrics.opening_seed``, in its card)
    # its card's measured precision and coverage (``bench/quality.py``, Lite0, k = 5); None: not measured
    precision: float | None = None
    coverage: float | None = None
    near_duplicates: float | None = None  # share of its samples with a near-copy among the others

    @property
    def label(self) -> str:
        return f"{self.name} ({self.family}, {self.resolution}px, {self.dataset})"


# Listings happen on every request (the Generate tab checks the model a request names against
# them), so each folder's entry is kept, keyed by its config.json's identity and change times:
# an unchanged file is not read and checked again, and a rewritten one (new inode, size, mtime or
# ctime) is. Bounded, so a runs folder that keeps changing cannot grow it without end.
_ENTRIES: OrderedDict[tuple, ModelEntry | None] = OrderedDict()
_ENTRIES_MAX = 1024
_ENTRIES_LOCK = threading.Lock()


def _entry(name: str, path: Path, source: str) -> ModelEntry | None:
    try:
        st = os.lstat(path / "config.json")
    except OSError:
        return None
    key = (str(path), name, source, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _ENTRIES_LOCK:
        if key in _ENTRIES:
            _ENTRIES.move_to_end(key)
            return _ENTRIES[key]
    entry = _read_entry(name, path, source)
    with _ENTRIES_LOCK:
        _ENTRIES[key] = entry
        while len(_ENTRIES) > _ENTRIES_MAX:
            _ENTRIES.popitem(last=False)
    return entry


def _read_entry(name: str, path: Path, source: str) -> ModelEntry | None:
    try:
        # The same bounded, checked read as loading (weights aside): a folder whose config.json
        # is odd in any way (nesting, huge numbers, wrong types, odd "msgen" block) is skipped.
        config, meta = ckpt.read_config(path)
    except (ckpt.CheckpointError, OSError):
        return None  # a half-made or foreign folder is not a model; skip it, never crash a listing
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    return ModelEntry(
        name=name,
        path=path,
        family=config.family,
        resolution=config.resolution,
        levels=tuple(config.levels),
        dataset=meta.get("dataset_short") or meta.get("dataset") or "user images",
        source=source,
        opening_seed=_opening_seed(meta.get("opening_seed")),
        precision=_share(metrics.get("precision")),
        coverage=_share(metrics.get("coverage")),
        near_duplicates=_share(metrics.get("near_duplicates")),
    )


def _opening_seed(value: object) -> int:
    """A card's opening seed, or 0 when it has none or a stranger's card holds anything odd."""
    from .validate import SEED_MAX

    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= SEED_MAX
    return int(value) if ok else 0


def _share(value: object) -> float | None:
    """A card's share (a figure from 0 to 1), or None when it has none or holds anything else."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0  # NaN fails too
    return float(value) if ok else None


def opening_score(entry: ModelEntry) -> float | None:
    """From the card (Lite0, k = 5): precision (the share of the model's samples that fall among its
    data's pictures; Kynkaanniemi et al.) times coverage (the share of its data's pictures its
    samples reach; Naeem et al.) times the share of samples without a near-copy among the others.
    A collapsed model's few clean pictures score a high precision, and can still reach a fair
    coverage; the repeats a visitor sees while moving the seed take that back. None: not measured."""
    figures = (entry.precision, entry.coverage, entry.near_duplicates)
    if any(f is None for f in figures):
        return None
    return entry.precision * entry.coverage * (1.0 - entry.near_duplicates)


def opening_model(entries: list[ModelEntry]) -> ModelEntry | None:
    """The model the Generate page opens on, by a rule that a retrain re-applies: of the shipped
    models, the one with the highest ``opening_score`` (its card's precision x coverage x share of
    samples that are not near-copies), so a first visitor meets the model whose pictures most look
    like, and most span, what it learnt, without repeats; the first in the list on a tie, or when no
    card carries the figures (and the first entry of all when nothing is shipped)."""
    shipped = [e for e in entries if e.source == "shipped"] or entries
    if not shipped:
        return None
    def score(entry: ModelEntry) -> float:
        value = opening_score(entry)
        return -1.0 if value is None else value

    return max(shipped, key=score)  # max keeps the first of equals


def list_models(*, runs_dir: str | Path | None = None, weights_dir: str | Path | None = None) -> list[ModelEntry]:
    """Shipped models first (sorted), then the runs in ``runs_dir`` that have an exported model."""
    out: list[ModelEntry] = []
    wdir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    if wdir.is_dir():
        for p in sorted(wdir.iterdir()):
            if (p / "model.safetensors").is_file() and (e := _entry(p.name, p, "shipped")):
                out.append(e)
    rdir = Path(runs_dir) if runs_dir is not None else RUNS_DIR
    if rdir.is_dir():
        for p in sorted(rdir.iterdir()):
            model = p / "model"
            if (model / "model.safetensors").is_file() and (e := _entry(p.name, model, "run")):
                out.append(e)
    return out


def find_model(name: str, *, runs_dir: str | Path | None = None, weights_dir: str | Path | None = None) -> ModelEntry:
    for entry in list_models(runs_dir=runs_dir, weights_dir=weights_dir):
        if entry.name == name:
            return entry
    raise KeyError(name)


def resolve_model(name_or_path: str | os.PathLike, *, runs_dir: str | Path | None = None) -> Path:
    """A listed model name, a local folder, or a Hub repo id -> a local model folder."""
    text = str(name_or_path)
    try:
        return find_model(text, runs_dir=runs_dir).path
    except KeyError:
        pass
    try:
        return ckpt.resolve(text)
    except ckpt.CheckpointError as exc:
        known = ", ".join(e.name for e in list_models(runs_dir=runs_dir)) or "none"
        raise ckpt.CheckpointError(f"{exc} (listed models: {known})") from None


def serving_form(gen: torch.nn.Module, *, bfloat16: bool | None = None) -> torch.nn.Module:
    """``gen`` (as loaded: float32) converted in place to the form the pages run it in on its device,
    as its family's ``serving`` says: on a CPU its channels_last parts, and its low-precision
    parts in bfloat16 where the CPU multiplies it natively (``bfloat16``, by default
    ``msgen.device.cpu_bfloat16()``); on a GPU those low-precision parts in float16 (not measured
    here: no GPU), so var's token choices stay float32 there too. Elsewhere (MPS) as loaded.
    ``python -m msgen generate`` runs its model in this form too, so it writes the page's pixels."""
    from .models import get_family, serve_on_cpu, serving_part

    serving = get_family(gen.config.family).serving
    device = next(gen.parameters()).device
    if device.type == "cuda":
        for name in serving.low_precision:
            serving_part(gen, name).to(torch.float16)
        return gen
    if device.type != "cpu":
        return gen
    native = cpu_bfloat16() if bfloat16 is None else bfloat16
    return serve_on_cpu(gen, serving, bfloat16=native)


class ModelCache:
    """Bounded LRU of generators resident on one device. Thread-safe; loads happen once."""

    def __init__(self, max_models: int = 4, device: str | torch.device | None = None):
        self.max_models = max_models
        self.device = torch.device(device) if device is not None else pick_device()
        # Each model in its serving form (serving_form): its family's Family.serving.
        self.cpu_bfloat16 = self.device.type == "cpu" and cpu_bfloat16()
        self._models: OrderedDict[tuple, torch.nn.Module] = OrderedDict()
        self._lock = threading.Lock()

    def _key(self, path: Path) -> tuple:
        st = (path / "model.safetensors").stat()
        return (str(path.resolve()), st.st_mtime_ns, st.st_size)

    def get(self, path: str | Path) -> torch.nn.Module:
        path = Path(path)
        key = self._key(path)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            gen = serving_form(ckpt.load_generator(path, device=self.device), bfloat16=self.cpu_bfloat16)
            self._models[key] = gen
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            return gen

    def __len__(self) -> int:
        return len(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
