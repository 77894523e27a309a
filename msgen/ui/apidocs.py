"""What ``gradio_client``'s ``view_api()`` shows: a name for every output, a description for every
parameter, and optional parameters marked optional.

Gradio names an output after its component's label and falls back to ``value_<id>``; it takes
a parameter's description from its component type only; and it calls a parameter required
unless the component holds a value, so the hidden ``owner`` token showed as required although
every handler takes ``owner=None``. ``Blocks.get_api_info`` is the one place gradio builds that
information, so the app's Blocks (``blocks.MsgenBlocks``) completes it there: outputs without a label
are named after their component's ``elem_id`` (or kind); each parameter gets the description
from its handler's docstring ("Parameters:" section, gradio's own parser) or else from
``PARAMS``, the one table of the app's common parameters; a parameter whose handler has a
default is optional with that default. ``tests/test_api_docs.py`` fails if any public
endpoint has an unnamed output or an undescribed parameter. ``blocks.MsgenBlocks`` applies it.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import gradio as gr

from .. import validate

_LO, _HI = validate.truncation_range()  # the generic range; a family may set its own
PARAMS = {
    "model": "model name: a shipped model or one of your runs (GET /models lists them)",
    "scale": "finest level to render: one of the model's levels, e.g. 4, 8, 16, 32, 64",
    "seed": f"latent seed, {validate.seed_range_text()}: one seed is one picture on every device",
    "truncation": f"{_LO:g} to {_HI:g}: pulls the latent towards the average (for a VAE: the sampling temperature)",
    "mix_seed": f"seed B of granularity mixing, {validate.seed_range_text()}",
    "mix_level": "levels at and above this come from seed B (0: no mixing)",
    "level": "level (resolution) whose feature map to show",
    "channel": "channel of that level's feature map",
    "normalize": "scale the channel to its own range (else to the whole level's)",
    "frames": f"frames of the latent walk from seed A to seed B, {validate.WALK_FRAMES[0]} to {validate.WALK_FRAMES[1]}",
    "count": "how many pictures (a grid: up to {}, variants: up to {})".format(validate.GRID_RANGE[1], validate.VARIANTS[1]),
    "owner": "your token on a shared server (the page keeps it in the browser); None locally",
    "image": "a picture: gradio_client.handle_file(path), or {'url': 'data:image/png;base64,...'}",
    "fit": "'crop' (centre square) or 'pad' non-square pictures",
    "mode": "what to keep: 'Keep coarse, vary detail' or 'Keep detail, vary layout'",
    "temperature": f"sampling temperature, {_LO:g} to {_HI:g} (the model's family sets its range and start)",
    "files": "pictures and/or zips of pictures (gradio_client.handle_file each)",
    "base": "'model:NAME' to fine-tune a listed model, or 'scratch:FAMILY' to train one from scratch",
    "resolution": "training resolution from scratch: " + ", ".join(map(str, validate.RESOLUTIONS[:-1]))
                  + f" or {validate.RESOLUTIONS[-1]}",
    "steps": "optimisation steps in total",
    "batch": f"images per step, 1 to {validate.BATCH_MAX}",
    "lr": "learning rate",
    "augment": "DiffAugment policies among 'color', 'translation', 'cutout'",
    "preview_every": "steps between preview grids",
    "name": f"name of the result (letters, digits, _ . -; at most {validate.NAME_MAX} characters); empty: a name is made",
    "run": "name of one of your runs",
    "until": "resume: train until this step (None: the run's own goal)",
    "repo": "Hub repo id, e.g. your-name/my-model",
    "token": "Hugging Face token with write access (used once, never stored)",
    "private": "create the Hub repo as private",
}
_KINDS = {"markdown": "message", "html": "html", "timer": "timer", "state": "state", "browserstate": "owner"}


def _doc_params(fn: Any) -> dict[str, str]:
    try:
        from gradio.utils import get_function_description

        return {k: v for k, v in get_function_description(fn)[1].items() if v}
    except Exception:
        return {}


def _return_names(fn: Any, api_name: str) -> list[str]:
    """``name: ...`` lines of the docstring's Returns: section, else the endpoint's own name."""
    try:
        from gradio.utils import get_function_description

        names = [r.split(":", 1)[0].strip() for r in get_function_description(fn)[2] if ":" in r]
    except Exception:
        names = []
    return [n for n in names if n.isidentifier()] or [api_name.strip("/").replace("/", "_")]


def _defaults(fn: Any) -> dict[str, Any]:
    try:
        return {p.name: p.default for p in inspect.signature(fn).parameters.values()
                if p.default is not inspect.Parameter.empty}
    except (TypeError, ValueError):
        return {}


def annotate(blocks: gr.Blocks, info: dict[str, Any]) -> dict[str, Any]:
    fns = {f"/{fn.api_name}": fn for fn in blocks.fns.values() if fn.api_name}
    for api_name, endpoint in info.get("named_endpoints", {}).items():
        fn = fns.get(api_name)
        handler = getattr(fn, "fn", None)
        docs, defaults = _doc_params(handler), _defaults(handler)
        for param in endpoint.get("parameters", []):
            name = param.get("parameter_name") or param.get("label")
            python_type = param.setdefault("python_type", {})
            if not python_type.get("description"):
                python_type["description"] = docs.get(name) or PARAMS.get(name, "")
            if name in defaults and not param.get("parameter_has_default"):
                param["parameter_has_default"], param["parameter_default"] = True, defaults[name]
        outputs = list(getattr(fn, "outputs", []) or [])
        for i, ret in enumerate(endpoint.get("returns", [])):
            label = str(ret.get("label", ""))
            if re.fullmatch(r"value_\d+|\d+(st|nd|rd|th)", label):
                block = outputs[i] if i < len(outputs) else None
                elem = getattr(block, "elem_id", None)
                kind = _KINDS.get(type(block).__name__.lower(), type(block).__name__.lower()) if block else "result"
                ret["label"] = (elem.replace("-", "_") if elem else kind) if block is not None else label
                if re.fullmatch(r"\d+(st|nd|rd|th)", label):  # gr.api: named by its docstring's Returns:
                    ret["label"] = _return_names(handler, api_name)[i] if i < len(_return_names(handler, api_name)) \
                        else f"result_{i + 1}"
    return info
