"""Model cards: the README.md of an exported model, with Hub-readable YAML front matter.

The card is generated from the config and the ``"msgen"`` metadata block of ``config.json``
(title, data set, licence, training command, steps, wall time, hardware, metrics), so what it
says cannot drift from what the folder holds. The front matter is ``huggingface_hub``'s
``ModelCardData`` dumped by ``ModelCard`` (YAML-escaped: a licence such as ``"mit\n---\nevil: 1"``
stays one string), and the free text in the body is kept to one line per field, so no title or
data set name can add a heading, a key or a second front matter.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

# The front matter's keys in the order the Hub's own cards (and msgen's earlier ones) use.
FRONT_MATTER = ["license", "library_name", "pipeline_tag", "tags"]


def _line(value: Any) -> str:
    """One line of text: a value's line breaks (any kind) become spaces."""
    return " ".join(str(value).splitlines())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def metrics_table(metrics: dict[str, Any]) -> str:
    rows = ["| metric | value |", "| --- | --- |"]
    for key, value in metrics.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                rows.append(f"| {_line(key)} {_line(sub)} | {_line(_fmt(v))} |")
        else:
            rows.append(f"| {_line(key)} | {_line(_fmt(value))} |")
    return "\n".join(rows)


def card_data(config: Any, meta: dict[str, Any]) -> ModelCardData:
    return ModelCardData(license=meta.get("license") or "other", library_name="msgen",
                         pipeline_tag="unconditional-image-generation", tags=["msgen", config.family, "multi-scale"])


def model_card(config: Any, meta: dict[str, Any]) -> str:
    return str(build_card(config, meta))


def build_card(config: Any, meta: dict[str, Any]) -> ModelCard:
    cfg = dataclasses.asdict(config)
    title = _line(meta.get("title") or meta.get("name") or f"msgen {config.family} {config.resolution}px")
    dataset = _line(meta.get("dataset", "user-supplied images"))
    body = [
        "",
        f"# {title}",
        "",
        meta.get("description", f"A {config.family} generator at {config.resolution}x{config.resolution}, "
                 f"levels {', '.join(str(lvl) for lvl in config.levels)}."),
        "",
    ]
    if meta.get("has_samples"):
        body += ["![samples](samples.png)", ""]
    body += [
        "## Data",
        "",
        f"- Data set: {dataset}",
        f"- Data licence: {_line(meta.get('data_license', 'see the data set'))}",
        f"- Images: {_line(meta.get('num_images', 'unknown'))}",
        "",
        "## Training",
        "",
    ]
    for key, label in (("command", "Command"), ("steps", "Steps"), ("batch_size", "Batch size"),
                       ("wall_time_s", "Wall time (s)"), ("hardware", "Hardware"), ("base", "Fine-tuned from"),
                       ("seed", "Seed")):
        if key in meta:
            value = f"`{_line(meta[key])}`" if key == "command" else _line(_fmt(meta[key]))
            body.append(f"- {label}: {value}")
    body += ["", "## Config", "", "```json"]
    body += [json.dumps(cfg, indent=2)]
    body += ["```", ""]
    if meta.get("metrics"):
        body += ["## Metrics", "", metrics_table(meta["metrics"]), ""]
    body += [
        "## Use",
        "",
        "```python",
        "import msgen",
        "g = msgen.load(\"path/or/owner/repo\")",
        "out = g(g.sample_latents(1, seed=0))  # out.images: level -> 1 x 3 x r x r in [-1, 1]",
        "```",
        "",
    ]
    yaml = card_data(config, meta).to_yaml(original_order=FRONT_MATTER)
    return ModelCard(f"---\n{yaml}\n---\n" + "\n".join(body))
