"""Model cards: the README.md of an exported model, with Hub-readable YAML front matter.

The card is generated from the config and the ``"msgen"`` metadata block of ``config.json``
(title, data set, licence, training command, steps, wall time, hardware, metrics), so what it
says cannot drift from what the folder holds.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def metrics_table(metrics: dict[str, Any]) -> str:
    rows = ["| metric | value |", "| --- | --- |"]
    for key, value in metrics.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                rows.append(f"| {key} {sub} | {_fmt(v)} |")
        else:
            rows.append(f"| {key} | {_fmt(value)} |")
    return "\n".join(rows)


def model_card(config: Any, meta: dict[str, Any]) -> str:
    cfg = dataclasses.asdict(config)
    title = meta.get("title") or meta.get("name") or f"msgen {config.family} {config.resolution}px"
    license_ = meta.get("license", "other")
    dataset = meta.get("dataset", "user-supplied images")
    front = [
        "---",
        f"license: {license_}",
        "library_name: msgen",
        "pipeline_tag: unconditional-image-generation",
        "tags:",
        "- msgen",
        f"- {config.family}",
        "- multi-scale",
        "---",
        "",
        f"# {title}",
        "",
        meta.get("description", f"A {config.family} generator at {config.resolution}x{config.resolution}, "
                 f"levels {', '.join(str(lvl) for lvl in config.levels)}."),
        "",
    ]
    if meta.get("has_samples"):
        front += ["![samples](samples.png)", ""]
    front += [
        "## Data",
        "",
        f"- Data set: {dataset}",
        f"- Data licence: {meta.get('data_license', 'see the data set')}",
        f"- Images: {meta.get('num_images', 'unknown')}",
        "",
        "## Training",
        "",
    ]
    for key, label in (("command", "Command"), ("steps", "Steps"), ("batch_size", "Batch size"),
                       ("wall_time_s", "Wall time (s)"), ("hardware", "Hardware"), ("base", "Fine-tuned from"),
                       ("seed", "Seed")):
        if key in meta:
            value = f"`{meta[key]}`" if key == "command" else _fmt(meta[key])
            front.append(f"- {label}: {value}")
    front += ["", "## Config", "", "```json"]
    front += [json.dumps(cfg, indent=2)]
    front += ["```", ""]
    if meta.get("metrics"):
        front += ["## Metrics", "", metrics_table(meta["metrics"]), ""]
    front += [
        "## Use",
        "",
        "```python",
        "import msgen",
        "g = msgen.load(\"path/or/owner/repo\")",
        "out = g(g.sample_latents(1, seed=0))  # out.images: level -> 1 x 3 x r x r in [-1, 1]",
        "```",
        "",
    ]
    return "\n".join(front)
