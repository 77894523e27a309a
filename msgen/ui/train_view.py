"""The Train tab's live view: progress bar, loss curves, preview grid, quality and status text.

Pure functions of a job's snapshot (``Job.snapshot()``), so tests check them without a browser.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .. import render
from .jobs import HISTORY_POINTS, Job, JobManager

PREVIEW_ROWS = 6  # fixed preview seeds shown, one per row


def _clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_html(snap: dict[str, Any]) -> str:
    total = max(1, snap["total"])
    pct = 100.0 * min(snap["step"], total) / total
    colour = {"failed": "#d33", "stopped": "#d90", "finished": "#2a2"}.get(snap["state"], "#36c")
    facts = [f"step {snap['step']:,} / {snap['total']:,}", f"{pct:.0f}%", f"{snap['images_per_s']:.1f} images/s",
             f"elapsed {_clock(snap['elapsed'])}"]
    if snap["state"] in ("running", "stopping"):
        facts.append(f"ETA {_clock(snap['eta_s'])}")
    return (f'<div class="msgen-train-progress" data-step="{snap["step"]}" data-state="{snap["state"]}">'
            f'<div style="background:#ddd;border-radius:4px;height:14px;overflow:hidden">'
            f'<div style="width:{pct:.1f}%;height:100%;background:{colour}"></div></div>'
            f'<div style="font-size:0.9em;margin-top:4px">{" · ".join(facts)}</div></div>')


def loss_frame(history: list[tuple[int, str, float]]) -> pd.DataFrame:
    """Long-form losses for gr.LinePlot, averaged into about HISTORY_POINTS buckets per series."""
    frame = pd.DataFrame(history, columns=["step", "series", "value"])
    if frame.empty:
        return frame
    bucket = max(1, math.ceil(frame["step"].max() / HISTORY_POINTS))
    if bucket > 1:
        frame["step"] = (frame["step"] - 1) // bucket * bucket + bucket
        frame = frame.groupby(["series", "step"], as_index=False)["value"].mean()
    return frame[["step", "series", "value"]]


def preview_grid(preview: Any, rows: int = PREVIEW_ROWS) -> Any:
    """Rows = fixed preview seeds; columns = every level, coarse to fine, enlarged to one size."""
    from PIL import Image

    return Image.fromarray(render.preview_grid(preview.images, rows))


def quality_markdown(quality: dict[str, Any]) -> str:
    """The run's quality report: SWD per level and the diversity figures, before / after / the floor.

    The floor is one half of the visitor's pictures against the other half: the best any model
    can score at this set size. Coverage far under it, or a near-duplicate share far over the
    pictures' own, is a collapse (a few pictures repeated), which SWD alone does not show.
    """
    before, after = quality.get("before"), quality.get("after")
    if not before and not after:
        return ""
    floor = quality.get("floor") or {}
    floor_swd = floor.get("swd") or {}
    levels = sorted((k for k in (after or before) if k != "mean"), key=lambda k: -int(k)) + ["mean"]
    rows = ["**Quality:** Laplacian sliced Wasserstein distance (x1e3) between samples and your pictures, "
            "per pyramid level (lower is closer; the floor is half of your pictures against the other half).", "",
            "| level | before | after | floor |", "| --- | --- | --- | --- |"]
    for k in levels:
        cells = [f"{d[k]:.1f}" if d and k in d else "-" for d in (before, after, floor_swd)]
        rows.append(f"| {k}{'px' if k != 'mean' else ''} | " + " | ".join(cells) + " |")
    div_b, div_a = quality.get("diversity_before") or {}, quality.get("diversity_after") or {}
    if div_b or div_a:
        rows += ["", "**Diversity** (k = 5 nearest neighbours in EfficientNet-Lite0 features): coverage is the "
                 "share of your pictures with a sample close by (higher is better); a near-duplicate is a sample "
                 "within RMS 0.05 of another sample.", "", "| figure | before | after | floor |",
                 "| --- | --- | --- | --- |"]
        for key, label in (("coverage", "coverage"), ("precision", "precision"), ("recall", "recall"),
                           ("near_duplicates", "near-duplicate share")):
            cells = [f"{d[key]:.2f}" if key in d else "-" for d in (div_b, div_a, floor)]
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
        warning = collapse_warning(div_a, floor)
        if warning:
            rows += ["", warning]
    return "\n".join(rows)


def collapse_warning(after: dict[str, Any], floor: dict[str, Any]) -> str:
    """A plain sentence when the samples repeat a few pictures, else ''."""
    if not after or "coverage" not in after or "coverage" not in floor:
        return ""
    low = after["coverage"] < 0.5 * floor["coverage"]
    dup = after.get("near_duplicates", 0.0) > floor.get("near_duplicates", 0.0) + 0.10
    if not (low or dup):
        return ""
    why = []
    if low:
        why.append(f"coverage {after['coverage']:.2f} is under half your pictures' own {floor['coverage']:.2f}")
    if dup:
        why.append(f"{after['near_duplicates']:.0%} of samples nearly repeat another")
    return ("**The samples look collapsed:** " + "; ".join(why) + ". The generator repeats a few pictures; "
            "more pictures, fewer steps or a lower learning rate usually help.")


def status_markdown(manager: JobManager, job: Job, snap: dict[str, Any]) -> str:
    name, state = snap["name"], snap["state"]
    if state == "queued":
        ahead = manager.position(job)
        return f"**{name}** is in line: number {ahead} (one run trains at a time)."
    text = {"running": "training", "stopping": "stopping...", "finished": "finished",
            "stopped": "stopped; its last checkpoint is kept and can be resumed", "failed": "failed"}[state]
    extra = f" {snap['message']}" if snap["message"] else ""
    if state in ("finished", "stopped"):
        extra += " It is now listed in the Generate tab."
    return f"**{name}**: {text}.{extra}"
