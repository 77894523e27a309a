"""What one run may take on a shared host (a Space, ``--shared``), and the page's limits text.

Owner tokens are the browser's own choice, so the bounds that hold are global: the line's
length (``JobManager(max_jobs=...)``), each run's training-time budget, images seen, batch x
pixels (memory), kept runs per visitor and in all, a free-disk floor, and a smaller decoded-pixel
budget per upload. The Train tab checks them (``check_budget``, ``check_disk``, ``upload_limits``)
and states every value (``limits_text``); run locally, nothing here applies.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..train import TrainOptions
from . import common

FEW_IMAGES = 16
MAX_STEPS = {False: 1_000_000, True: 20_000}  # a shared Space bounds one visitor's run


@dataclass(frozen=True)
class SharedLimits:
    """What one stranger's run may take on a shared host; every value is shown on the page."""

    max_jobs: int = 4  # runs training or waiting, all visitors together: the line's length
    budget_min: float = 30.0  # wall-clock minutes one run may train before it stops (checkpoint kept)
    # steps x batch x (resolution / 32)^2: the default fine-tune at 64 px (3000 x 16 x 4; at 32 px it
    # may be 4x the default); the time budget bounds what it costs
    max_images: int = 192_000
    max_batch_pixels: int = 16 * 64 * 64  # batch x resolution^2 bounds activation memory (~1.2 GB)
    max_batch: int = 64
    per_client: int = 1  # runs training or waiting per client address (forgeable behind a proxy: a speed bump)
    runs_per_visitor: int = 8  # kept runs (each ~10-60 MB: state, model, data) until the folder expires
    max_runs: int = 400  # kept runs of all visitors together
    min_free_bytes: int = 2 * 2**30  # no new run while the disk has less than this free
    max_total_pixels: int = 250_000_000  # decoded pixels of one upload (locally msgen.data's 1000 MP)


SHARED_LIMITS = SharedLimits()

def limits_text(shared: bool = False) -> str:
    from ..data import LIMITS as L

    mb = lambda n: f"{n / 2**20:g} MB"  # noqa: E731
    text = (f"**Limits:** up to {L.max_files} files, {mb(L.max_file_bytes)} each and {mb(L.max_total_bytes)} in all; "
            f"images up to {L.max_pixels / 1e6:g} megapixels and at least {L.min_side} px on the short side; "
            f"zips up to {L.max_zip_entries} entries, no nested zips, no `..` paths, at most "
            f"{L.max_zip_ratio:g}:1 compression. PNG, JPEG, WebP, GIF, BMP and TIFF are read; "
            f"{FEW_IMAGES}+ images recommended (50-200 is ideal).")
    if shared:
        S = SHARED_LIMITS
        text += (f"\n\n**On this shared server:** one run per visitor and {S.max_jobs} in all (training or waiting); "
                 f"each run trains for at most {S.budget_min:g} minutes (then stops, keeping its checkpoint: "
                 f"resume it later) and {MAX_STEPS[True]:,} steps; steps x batch size may be up to "
                 f"{S.max_images:,} at 32 px ({S.max_images // 4:,} at 64 px); batch size at most {S.max_batch}, "
                 f"and {S.max_batch_pixels // (64 * 64)} at 64 px or {S.max_batch_pixels // (128 * 128)} at 128 px; "
                 f"an upload decodes to at most {S.max_total_pixels / 1e6:g} megapixels; you keep at most "
                 f"{S.runs_per_visitor} runs. Your uploads and runs are deleted {common.SESSION_TTL_S // 3600} hours "
                 f"after your last visit; pushing to the Hub needs your own token.")
    return text


def check_budget(ctx, options: TrainOptions, resolution: int) -> None:
    """On a shared host, refuse a run whose size or memory is over ``SHARED_LIMITS`` (ValueError)."""
    if not ctx.shared:
        return
    S = SHARED_LIMITS
    if options.batch_size > S.max_batch or options.batch_size * resolution**2 > S.max_batch_pixels:
        most = min(S.max_batch, S.max_batch_pixels // resolution**2)
        raise ValueError(f"batch size {options.batch_size} is over this server's limit of {most} at {resolution} px")
    seen = options.steps * options.batch_size * (resolution / 32) ** 2
    if seen > S.max_images:
        raise ValueError(f"steps x batch size is {options.steps * options.batch_size:,} at {resolution} px, over this "
                         f"server's limit of {int(S.max_images / (resolution / 32) ** 2):,}; use fewer steps")


def upload_limits(ctx: common.AppContext):
    """msgen.data's limits, with a smaller decoded-pixel budget on a shared host."""
    from ..data import LIMITS

    if not ctx.shared:
        return LIMITS
    return dataclasses.replace(LIMITS, max_total_pixels=min(LIMITS.max_total_pixels, SHARED_LIMITS.max_total_pixels))


def check_disk(ctx: common.AppContext, root: Path) -> None:
    """On a shared host: a visitor keeps at most ``runs_per_visitor`` runs, everyone together
    ``max_runs``, and no run starts on a nearly full disk (ValueError)."""
    if not ctx.shared:
        return
    S = SHARED_LIMITS
    mine = sum(1 for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else 0
    if mine >= S.runs_per_visitor:
        raise ValueError(f"you have {mine} runs, this server's limit; they are deleted "
                         f"{common.SESSION_TTL_S // 3600} hours after your last visit (download the ones you keep)")
    sessions = ctx.runs_dir / "sessions"
    total = sum(1 for d in sessions.iterdir() if d.is_dir() for p in d.iterdir() if p.is_dir()) if sessions.is_dir() else 0
    if total >= S.max_runs:
        raise ValueError("this server holds as many runs as it can keep; try again in a few hours")
    if shutil.disk_usage(ctx.runs_dir if ctx.runs_dir.exists() else Path(".")).free < S.min_free_bytes:
        raise ValueError("this server's disk is nearly full; try again later")


def _budget(ctx) -> float | None:
    return SHARED_LIMITS.budget_min * 60 if ctx.shared else None
