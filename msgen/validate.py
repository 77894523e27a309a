"""Every bound a user's value meets, in one gradio-free place: the CLI, ``msgen.generate``, every
tab and the API docs read their limits and defaults here, so no two front ends can disagree.

* Seeds: whole numbers from 0 to ``SEED_MAX`` (what ``torch.Generator`` takes); image ``i`` of a
  batch from seed ``s`` uses ``seed_at(s, i)``, wrapping past ``SEED_MAX``.
* Counts: pictures in one ``msgen.generate`` call, one seed grid, one latent walk, one set of
  Decompose variants.
* Truncation / temperature: each family's range and starting value come from its registry
  record (``Family.ui``, ``msgen.models.ui_hints``): ``truncation_range`` and
  ``default_truncation`` here are the one way every caller reads them.
* Sizes and names: from-scratch training resolutions, the largest level asked for, the lengths
  of a run name, a result name, a Hub repo id and a token.

Each check either returns a clean value or raises ``ValueError`` with one sentence naming the
field and its bounds. A request's values may come from a stranger (``gradio_client``, raw HTTP),
so a number box may hold a string, a dict or ``NaN``: ``whole`` and ``real`` judge such values;
``check_seed`` and ``samples`` are the Python API's stricter forms (real numbers only).
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

# --- bounds ----------------------------------------------------------------------------------
SEED_MAX = 2**32 - 1  # seeds are 0 .. SEED_MAX everywhere (API, CLI, web): what torch.Generator takes
MAX_SAMPLES = 256  # pictures in one msgen.generate call (python -m msgen generate --n)
GRID_RANGE = (1, 64)  # seeds in one Generate grid: one batched generator call
WALK_FRAMES = (2, 60)  # frames of one latent walk
VARIANTS = (1, 16)  # Decompose's variants in one re-sample
DEFAULT_VARIANTS = 8
RESOLUTIONS = (16, 32, 64, 128)  # what the Train tab trains from scratch at
MAX_SIDE = 4096  # the largest level or resolution a request may name (the model's own list decides)
BATCH_MAX = 256  # images per training step from the page
LR_RANGE = (1e-7, 0.1)  # learning rates the page accepts
PREVIEW_EVERY_MAX = 1_000_000
NAME_MAX = 200  # a result's name as typed (runs.new_run_dir turns it into a run folder's name)
RUN_MAX = 64  # a run folder's name (runs.RUN_NAME)
REPO_ID_MAX = 200  # a Hub repo id
TOKEN_MAX = 400  # a Hugging Face token


def seed_at(seed: int, i: int) -> int:
    """The seed of image ``i`` of a batch starting at ``seed``: consecutive, wrapping past SEED_MAX."""
    return (seed + i) % (SEED_MAX + 1)


def seed_range_text() -> str:
    return f"0 to {SEED_MAX}"


# --- a number box's values (forms, requests) ----------------------------------------------------
def whole(value: Any, label: str, lo: int, hi: int, *, default: int | None = None) -> int:
    """An integer in [lo, hi] from a number box: ``3``, ``3.0`` and ``"3"`` pass; ``3.5``, ``True``,
    ``"x"``, ``NaN`` and containers do not. ``None``/``""`` give ``default`` when there is one."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is not None:
            return default
        raise ValueError(f"{label} is required: a whole number from {lo:,} to {hi:,}")
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ValueError(f"{label} must be a whole number from {lo:,} to {hi:,}")
    try:
        number = operator.index(value) if isinstance(value, numbers.Integral) else float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{label} must be a whole number from {lo:,} to {hi:,}") from None
    if isinstance(number, float) and (not math.isfinite(number) or number != int(number)):
        raise ValueError(f"{label} must be a whole number from {lo:,} to {hi:,}")
    number = int(number)
    if not lo <= number <= hi:
        raise ValueError(f"{label} must be a whole number from {lo:,} to {hi:,}")
    return number


def real(value: Any, label: str, lo: float, hi: float, *, default: float | None = None) -> float:
    """A finite number in [lo, hi]; the same rules as ``whole`` without the integer part."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is not None:
            return default
        raise ValueError(f"{label} is required: a number from {lo:g} to {hi:g}")
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ValueError(f"{label} must be a number from {lo:g} to {hi:g}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{label} must be a number from {lo:g} to {hi:g}") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise ValueError(f"{label} must be a number from {lo:g} to {hi:g}")
    return number


def seed(value: Any, label: str = "seed", *, default: int | None = None) -> int:
    return whole(value, label, 0, SEED_MAX, default=default)


def choice(value: Any, label: str, allowed) -> Any:
    """``value`` if it is one of ``allowed`` (compared as given), else ValueError listing them."""
    allowed = list(allowed)
    if isinstance(value, (str, int)) and not isinstance(value, bool) and value in allowed:
        return value
    raise ValueError(f"{label} must be one of: {', '.join(str(a) for a in allowed)}")


def text(value: Any, label: str, max_len: int = NAME_MAX) -> str:
    """A short free-text field; ``None`` is empty. Containers and over-long text are refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{label} must be text")
    if len(value) > max_len:
        raise ValueError(f"{label} must be at most {max_len} characters")
    return value


def resolution(value: Any, *, default: int = 32) -> int:
    """A from-scratch training resolution: one of ``RESOLUTIONS``."""
    return choice(whole(value, "resolution", 1, MAX_SIDE, default=default), "resolution", RESOLUTIONS)


# --- the Python API's stricter forms ------------------------------------------------------------
def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as an int in 0 .. SEED_MAX, or a ValueError naming the range (ints, numpy ints and
    integral floats; never a string, a bool or a truncated 2.7)."""
    value = None
    if not isinstance(seed, bool):
        try:
            value = operator.index(seed)
        except TypeError:
            value = int(seed) if isinstance(seed, float) and seed.is_integer() else None
    if value is None or not 0 <= value <= SEED_MAX:
        raise ValueError(f"{name} must be a whole number from 0 to {SEED_MAX}, got {seed!r}")
    return value


def samples(n: Any, name: str = "n", hi: int = MAX_SAMPLES) -> int:
    """A count of pictures for one call: a Python int from 1 to ``hi``."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= hi:
        raise ValueError(f"{name} must be a whole number from 1 to {hi}, got {n!r}")
    return n


# --- truncation / temperature: the family's own ------------------------------------------------
def _hints(family: str | None):
    from .models import ui_hints  # the registry imports this module (SEED_MAX): not at import time

    return ui_hints(family)


def truncation_range(family: str | None = None) -> tuple[float, float]:
    """What family ``family``'s forward accepts as ``truncation`` (its temperature, for a sampler);
    ``None``: the generic range, for a family not installed here."""
    return tuple(_hints(family).truncation_range)


def default_truncation(family: str | None = None) -> float:
    """Where the pages start a model of ``family``: its one best truncation / temperature."""
    return float(_hints(family).default_truncation)


def resample_temperature(family: str | None = None) -> float:
    """Where Decompose's re-sampling starts for ``family`` (its ``resample_temperature`` hint, else
    its ``default_truncation``)."""
    hints = _hints(family)
    value = hints.resample_temperature
    return float(hints.default_truncation if value is None else value)


def truncation_label(family: str | None = None) -> str:
    return _hints(family).truncation_label


def truncation(value: Any, family: str | None, label: str = "truncation", *, default: float | None = None) -> float:
    """A truncation (or temperature) within ``family``'s range."""
    lo, hi = truncation_range(family)
    return real(value, label, lo, hi, default=default)
