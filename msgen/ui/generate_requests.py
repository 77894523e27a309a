"""Generate tab requests: every value from the page or ``gradio_client`` checked before any work.

Each check raises ``gr.Error`` with a message naming the field and its range; ``Request`` is a
checked generate request, and its ``key`` identifies the result in the handlers' LRU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from .. import validate
from ..validate import SEED_MAX  # noqa: F401  (the one seed bound; re-exported for the tab)
from ..zoo import ModelEntry


def fail(message: str) -> gr.Error:
    """A user-facing error: shown as a toast / returned by the API, no stack trace in the log."""
    return gr.Error(message, print_exception=False)


def whole_number(name: str, value: Any, lo: int, hi: int) -> int:
    """``validate.whole`` (no default: an empty value is refused), its refusal naming the value sent."""
    try:
        return validate.whole(value, name, lo, hi)
    except ValueError:
        raise fail(f"{name} must be a whole number from {lo} to {hi}, got {value!r}") from None


def number_in(name: str, value: Any, lo: float, hi: float) -> float:
    """``validate.real`` (no default), its refusal naming the value sent."""
    try:
        return validate.real(value, name, lo, hi)
    except ValueError:
        raise fail(f"{name} must be a number from {lo:g} to {hi:g}, got {value!r}") from None


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

    @classmethod
    def check(cls, entry: ModelEntry, scale, seed, truncation, mix_seed=None, mix_level=0) -> Request:
        scale = level_of("scale", scale, entry.levels)
        seed = whole_number("seed", seed, 0, SEED_MAX)
        truncation = round(number_in("truncation", truncation, *validate.truncation_range(entry.family)), 6)
        mix_level = level_of("mix level", 0 if mix_level is None else mix_level, entry.levels, allow_off=True)
        if mix_level:
            mix_seed = whole_number("mix seed", mix_seed, 0, SEED_MAX)
        else:
            mix_seed, mix_level = None, None  # mixing off: one cache entry whatever seed B says
        return cls(entry, seed, scale, truncation, mix_seed, mix_level)

    @property
    def key(self) -> tuple:
        st = (self.entry.path / "model.safetensors").stat()  # a retrained model is a new key
        return (str(self.entry.path), st.st_mtime_ns, st.st_size, self.seed, self.scale,
                self.truncation, self.mix_seed, self.mix_level)

    def summary(self) -> str:
        mixed = f", levels >= {self.mix_level} from seed {self.mix_seed}" if self.mix_level else ""
        return (f"**{self.entry.name}**: {self.scale}x{self.scale} from seed {self.seed}{mixed}, "
                f"truncation {self.truncation:g}")
