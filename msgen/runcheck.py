"""Is an unpacked run what it claims to be? The content checks behind ``msgen.runzip``.

A run that arrives from a stranger's zip or Hub repo is checked against its own config before
it is accepted: ``run.json``'s config must build a model (unknown fields refused) and equal
the exported model's; the exported weights must load strictly into it; every tensor of
``state/state.safetensors`` must be one the Trainer writes for that model (module weights and
buffers, EMA, optimiser moments of the right parameter's shape, the two random streams),
read from the header alone; the options must pass ``TrainOptions``' and the family options' own
checks (an older run's flat options translated); every data PNG must decode through
``msgen.data`` at the training resolution. The run's files are read through ``msgen.run.Run``
(strict, bounded JSON; a malformed ``run.json`` is refused naming its field). Free text the run
carries (its ``meta``, its command) is cut down to short strings and numbers and written back,
with the data source pointed at the run's own snapshot (a stranger's path is never kept).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch

from . import checkpoint as ckpt
from .run import DataRecord, Run, RunError

META_TEXT = 2000  # characters kept of one free-text meta field (titles, commands, data set notes)


def _fail(message: str) -> ValueError:
    from .runzip import RunArchiveError

    return RunArchiveError(message)


def check_run(run_dir: Path, *, max_steps: int = 10_000_000) -> None:
    """Raise ``RunArchiveError`` naming the first thing about ``run_dir`` that is not a msgen run."""
    from .models import build_discriminator, build_generator, config_from_dict

    run = Run(run_dir)
    try:
        record = run.record()
        state = run.state_info()
        run.quality(strict=True)
    except RunError as exc:
        raise _fail(str(exc)) from None
    if state is None:
        raise _fail("state/state.json is missing")
    try:
        config = config_from_dict(record.config)
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(f"run.json: no usable model config ({_brief(exc)})") from None
    try:
        model_config, _meta, tensors = ckpt.read_model_dir(run.model_dir)
    except ValueError as exc:
        raise _fail(f"model/: {_brief(exc)}") from None
    if model_config != config:
        raise _fail("model/config.json does not match the run's config in run.json")
    G, D = build_generator(config), build_discriminator(config)
    _load_strict(G, tensors, "generator.", "model/model.safetensors")
    if D is not None and any(k.startswith("discriminator.") for k in tensors):
        _load_strict(D, tensors, "discriminator.", "model/model.safetensors")
    step, options = _check_state_json(state, record, config, max_steps)
    _check_state_tensors(run, state, G, D, options, step)
    _check_data(run.data_dir, config.resolution)
    if run.samples_png.is_file():
        _check_png(run.samples_png, None)
    run.write(dataclasses.replace(record, meta=clean_meta(record.meta), base=(record.base or "")[:200] or None,
                                  command=(record.command or "")[:META_TEXT] or None,
                                  data=DataRecord(fit=record.data.fit, background=record.data.background,
                                                  images=record.data.images)))
    from .card import model_card  # the card is rebuilt, never taken from the archive

    meta = clean_meta(_meta)
    ckpt.atomic_write_text(run.model_dir / "config.json", json.dumps(dataclasses.asdict(config) | {"msgen": meta}, indent=2) + "\n")
    ckpt.atomic_write_text(run.model_dir / "README.md", model_card(config, meta))


def _load_strict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, where: str) -> None:
    try:
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    except RuntimeError as exc:
        raise _fail(f"{where}: the weights do not match the run's config ({_brief(exc)})") from None


def _check_state_json(state: dict[str, Any], record, config: Any, max_steps: int):
    from .options import options_from_dict

    step = state["step"]  # a whole number from 0 (Run.state_info)
    if step > max_steps:
        raise _fail(f"state/state.json: step must be a whole number from 0 to {max_steps:,}")
    if not 1 <= record.steps <= max_steps:
        raise _fail(f"run.json: steps must be a whole number from 1 to {max_steps:,}")
    try:  # the family's options checked by its own dataclass; an older run's flat form translated
        options = options_from_dict(state.get("options"), config.family, record.config)
    except (TypeError, ValueError, KeyError) as exc:
        raise _fail(f"state/state.json: the training options are not valid ({_brief(exc)})") from None
    if not isinstance(state.get("optimizers"), dict):
        raise _fail("state/state.json: no optimiser settings")
    return step, options


def _check_state_tensors(run: Run, state: dict[str, Any], G, D, options, step: int) -> None:
    from safetensors import safe_open

    from .train import make_recipe

    recipe = make_recipe(G, D, options)
    expected: dict[str, tuple[tuple[int, ...], bool]] = {}
    for name, module in recipe.modules.items():
        if module is not None:
            expected.update({f"{name}.{k}": (tuple(v.shape), v.is_floating_point()) for k, v in module.state_dict().items()})
    expected.update({f"ema.{k}": (tuple(v.shape), v.is_floating_point()) for k, v in G.state_dict().items()})
    rng_shape = tuple(torch.Generator().get_state().shape)
    params = {name: [p for g in opt.param_groups for p in g["params"]] for name, opt in recipe.optimizers.items()}
    groups = state["optimizers"]
    for name, opt in recipe.optimizers.items():
        _check_groups(name, opt, groups.get(name))
    path = run.state_dir / "state.safetensors"
    try:
        with safe_open(str(path), "pt") as f:
            meta_step = (f.metadata() or {}).get("step")
            if meta_step is not None and meta_step != str(step):
                raise _fail("state/state.json and state/state.safetensors are from different steps")
            seen = set()
            for key in f.keys():
                sl = f.get_slice(key)
                shape, dtype = tuple(sl.get_shape()), str(sl.get_dtype())
                seen.add(key)
                if key in ("rng.data", "rng.step"):
                    ok = shape == rng_shape and dtype == "U8"
                elif key.startswith("opt."):
                    ok = _opt_tensor_ok(key, shape, dtype, params)
                elif key in expected:
                    want, floating = expected[key]
                    ok = shape == want and (dtype.startswith("F") or dtype.startswith("BF")) == floating
                else:
                    raise _fail(f"state/state.safetensors holds a tensor the run's model does not have: {key[:80]}")
                if not ok:
                    raise _fail(f"state/state.safetensors: {key[:80]} has the wrong shape or type {list(shape)} {dtype}")
    except ValueError:
        raise
    except Exception as exc:  # safetensors' own errors for corrupt headers
        raise _fail(f"state/state.safetensors could not be read ({_brief(exc)})") from None
    missing = sorted((set(expected) | {"rng.data", "rng.step"}) - seen)
    if missing:
        raise _fail(f"state/state.safetensors lacks {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))


def _opt_tensor_ok(key: str, shape, dtype: str, params: dict[str, list[torch.Tensor]]) -> bool:
    parts = key.split(".")
    if len(parts) != 4 or parts[1] not in params or not parts[2].isdigit() or not dtype.startswith("F"):
        return False
    idx = int(parts[2])
    return idx < len(params[parts[1]]) and shape in ((), tuple(params[parts[1]][idx].shape))


def _check_groups(name: str, opt: torch.optim.Optimizer, saved: Any) -> None:
    fresh = opt.state_dict()["param_groups"]
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or len(groups) != len(fresh):
        raise _fail(f"state/state.json: the {name} optimiser's settings do not match the model")
    for got, want in zip(groups, fresh):
        if not isinstance(got, dict) or set(got) != set(want) or got["params"] != want["params"]:
            raise _fail(f"state/state.json: the {name} optimiser's settings do not match the model")
        for key, value in got.items():
            values = value if isinstance(value, list) else [value]
            if key != "params" and not all(v is None or isinstance(v, (bool, str)) or
                                           (isinstance(v, (int, float)) and math.isfinite(v)) for v in values):
                raise _fail(f"state/state.json: the {name} optimiser's {key} is not a finite number")


def _check_png(path: Path, resolution: int | None) -> None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            fmt, size = im.format, im.size
    except Exception as exc:  # PIL's assorted errors for hostile headers, bombs included
        raise _fail(f"{path.name} is not a readable PNG ({_brief(exc)})") from None
    if fmt != "PNG":
        raise _fail(f"{path.name} is not a PNG")
    if resolution is not None and size != (resolution, resolution):
        raise _fail(f"data/{path.name} is {size[0]}x{size[1]}, not the run's {resolution}x{resolution}")
    if resolution is None and size[0] * size[1] > 4096 * 4096:
        raise _fail(f"{path.name} is too large")


def _check_data(data_dir: Path, resolution: int) -> None:
    from .data import LIMITS, load_image_set

    files = sorted(data_dir.glob("*.png")) if data_dir.is_dir() else []
    if not files:
        raise _fail("the run has no training images (data/*.png), so it cannot be resumed")
    if len(files) > LIMITS.max_files:
        raise _fail(f"the run has {len(files)} training images, over the {LIMITS.max_files} limit")
    for f in files:
        _check_png(f, resolution)
    data = load_image_set(data_dir, resolution)
    if data.rejected or data.images.shape[0] != len(files):
        first = data.rejected[0] if data.rejected else None
        raise _fail(f"data/{first.name if first else '?'} cannot be read: {first.reason if first else 'unknown'}")


def clean_meta(meta: Any) -> dict[str, Any]:
    """Short strings, numbers and flat number tables only; anything else a run carries is dropped."""
    out: dict[str, Any] = {}
    if not isinstance(meta, dict):
        return out
    for key, value in list(meta.items())[:64]:
        if not isinstance(key, str) or len(key) > 64:
            continue
        if isinstance(value, str):
            out[key] = value[:META_TEXT]
        elif isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value)):
            out[key] = value
        elif isinstance(value, dict) and key == "metrics":
            out[key] = {str(k)[:80]: v for k, v in list(value.items())[:32] if _numbers(v)}
    return out


def _numbers(value: Any) -> bool:
    if isinstance(value, dict):
        return len(value) <= 16 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value.values())
    return isinstance(value, (int, float)) and math.isfinite(value)


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
