"""The Train form's values -> what a run is: its base (a model to fine-tune or a family from
scratch), its ``TrainOptions``, and the ``python -m msgen train`` line that repeats it.

Plain functions of plain values (no gradio); every bound is ``msgen.validate``'s. The form's
defaults are the CLI's (``msgen.defaults.FINETUNE``): one recipe, two front ends.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import validate
from ..augment import POLICIES  # noqa: F401  (the augmentations the form offers; re-exported for the tab)
from ..defaults import FINETUNE, start_of
from ..models import families as registered, get_family, make_config
from ..train import TrainOptions
from . import common, train_family
from .train_limits import MAX_STEPS

DEFAULT_STEPS = FINETUNE.steps
DEFAULT_BATCH = FINETUNE.batch_size
DEFAULT_LR = FINETUNE.lr
DEFAULT_PREVIEW_EVERY = FINETUNE.sample_every
CHECKPOINT_EVERY = FINETUNE.checkpoint_every
RESOLUTIONS = validate.RESOLUTIONS


# --- choices -----------------------------------------------------------------------------------
def families() -> list[str]:
    return list(registered())  # every family module in msgen/models/, sorted


def base_choices(ctx: common.AppContext, owner: str | None) -> list[tuple[str, str]]:
    models = [(f"fine-tune {e.label}", f"model:{e.name}") for e in ctx.models(owner)]
    scratch = [(f"new {f} from scratch ({get_family(f).description or f})", f"scratch:{f}") for f in families()]
    return models + scratch


def default_base(ctx: common.AppContext) -> str:
    """The preselected base: ``FINETUNE.base`` when shipped, else a shipped 32 px model, else the first."""
    shipped = [e for e in ctx.models(None) if e.source == "shipped"]
    preferred = [e for e in shipped if e.name == FINETUNE.base] or [e for e in shipped if e.resolution == 32]
    pick = (preferred or shipped)[:1]
    return f"model:{pick[0].name}" if pick else base_choices(ctx, None)[0][1]


def start_values(ctx: common.AppContext, choice: str | None, owner: str | None) -> tuple[int, int, float]:
    """Steps, batch size and learning rate the form proposes for a base: its family's fine-tune
    defaults (``Family.finetune``), what ``python -m msgen train --model`` takes for it."""
    start = start_of(train_family.family_of(ctx, choice, owner) or None)
    return start.steps, start.batch_size, start.lr


@dataclass
class Base:
    resolution: int
    path: Path | None = None  # fine-tune this exported model ...
    name: str | None = None
    config: Any = None  # ... or train this config from scratch
    family: str = ""


def resolve_base(ctx: common.AppContext, choice: str | None, resolution: Any, owner: str | None) -> Base:
    kind, _, value = validate.text(choice, "start from", 300).partition(":")
    if kind == "model":
        entry = ctx.find(value, owner)  # only shipped models and this visitor's runs
        return Base(resolution=entry.resolution, path=entry.path, name=entry.name, family=entry.family)
    if kind == "scratch":
        if value not in families():
            raise ValueError(f"unknown family {value!r}; choose one of: {', '.join(families())}")
        config = make_config(value, resolution=validate.resolution(resolution, default=32))
        return Base(resolution=config.resolution, config=config, family=value)
    raise ValueError("choose a model to fine-tune or a family to train from scratch")


# --- options -----------------------------------------------------------------------------------
def options_from_form(ctx, steps, batch, lr, augment, preview_every, seed, family: str | None = None,
                      family_values: dict | None = None) -> TrainOptions:
    """The run's options from the form; ``family``'s own from ``augment`` (where it has that option)
    and ``family_values`` (its other controls, ``train_family``)."""
    lr = validate.real(lr, "learning rate", *validate.LR_RANGE)
    if augment is not None and not isinstance(augment, (list, tuple)):
        raise ValueError(f"augmentation must be a list of: {', '.join(POLICIES)}")
    chosen = {validate.choice(a, "augmentation", POLICIES) for a in (augment or ())}
    augment = tuple(p for p in POLICIES if p in chosen)  # POLICIES order, as the CLI's default
    if family_values is not None and not isinstance(family_values, dict):
        raise ValueError("family options must be a mapping of option names to values")
    return TrainOptions(
        steps=validate.whole(steps, "steps", 1, MAX_STEPS[ctx.shared]),
        batch_size=validate.whole(batch, "batch size", 1, validate.BATCH_MAX),
        lr=lr,
        sample_every=validate.whole(preview_every, "preview interval", 1, validate.PREVIEW_EVERY_MAX),
        checkpoint_every=CHECKPOINT_EVERY,
        seed=validate.seed(seed),
        family=train_family.options(family, augment, family_values) if family else None,
    )


def cli_command(ctx, base: Base, options: TrainOptions, data_dir: Path, run_dir: Path, threads: int) -> str:
    """The ``python -m msgen train`` line that repeats this run bit for bit (paths hidden on a shared
    host). It names the torch thread count because a convolution's summation order follows it."""
    where = ["--data", str(data_dir), "--out", str(run_dir)] if not ctx.shared else ["--data", "DATA", "--out", "OUT"]
    model = ["--model", base.name] if base.path is not None else ["--family", base.family, "--resolution",
                                                                   str(base.resolution)]
    own = train_family.flags(options.family) if options.family is not None else []
    words = ["train", *where, *model, "--steps", str(options.steps), "--batch", str(options.batch_size),
             "--lr", f"{options.lr:g}", *own,
             "--sample-every", str(options.sample_every), "--checkpoint-every", str(options.checkpoint_every),
             "--seed", str(options.seed), "--threads", str(threads)]
    return "python -m msgen " + shlex.join(words)
