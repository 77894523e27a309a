"""Run folders as the Train tab sees them: safe names, listing, data snapshots, resume, download.

Every path here is built from a visitor's folder (``AppContext.owner_dir``) and a name that
matched ``RUN_NAME``; nothing a visitor types is ever joined to a path unchecked, so no run is
written outside the runs folder and no shipped model is touched. A run started on the page
keeps its training set in ``<run>/data/`` as lossless PNGs at the training resolution, already
cropped and resized: reloading them with ``msgen.data.load_image_set`` gives the very tensor
that was trained on, so a resume (from the page or ``python -m msgen train --data <run>/data``)
sees the same images, and no original upload is kept.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import checkpoint as ckpt
from ..models import config_from_dict
from ..train import resume_options
from .jobs import JobSpec

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED = {"sessions"}  # the shared-host root inside the runs folder
DOWNLOADS = Path(tempfile.gettempdir()) / "msgen-downloads"
DOWNLOAD_TTL_S = 3600
MODEL_ZIP_FILES = ("config.json", "model.safetensors", "README.md", "samples.png")


def sanitise_name(text: str | None) -> str:
    """A run name from free text: letters, digits, ``_ . -``; never empty, never a path."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", (text or "").strip())
    name = re.sub(r"-{2,}", "-", name).lstrip("._-")[:64].rstrip("._-")
    return name or time.strftime("run-%Y%m%d-%H%M%S")


def new_run_dir(root: Path, wanted: str | None, *, taken: set[str] = frozenset(), create: bool = False) -> Path:
    """A fresh folder name under ``root``; a clash with a run, a shipped model or a reserved
    name gets ``-2``, ``-3`` ... appended instead of overwriting anything. ``create=True`` makes the
    folder too, atomically (``mkdir`` fails on a name another request took a moment ago), so two
    simultaneous starts can never share, or delete, one folder."""
    base = sanitise_name(wanted)
    name, i = base, 1
    while True:
        path = root / name
        if path.resolve().parent != root.resolve():  # belt and braces: RUN_NAME already rules this out
            raise ValueError(f"invalid run name {name!r}")
        if not (name.lower() in RESERVED or name in taken or path.exists()):
            if not create:
                return path
            try:
                path.mkdir()
                return path
            except FileExistsError:
                pass
        i += 1
        name = f"{base[:58]}-{i}"


def run_dir_of(root: Path, name: str | None) -> Path:
    """The existing run ``name`` under ``root``, or ValueError; a stranger's run is never reached."""
    if not name or not RUN_NAME.match(name) or name.lower() in RESERVED:
        raise ValueError(f"no run named {name!r}")
    path = root / name
    if path.is_symlink() or not path.is_dir() or path.resolve().parent != root.resolve():
        raise ValueError(f"no run named {name!r}")
    return path


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    status: str  # training, stopped, finished, interrupted, not started, failed
    step: int
    steps: int
    has_model: bool
    resumable: bool
    family: str
    resolution: int
    base: str | None

    @property
    def label(self) -> str:
        model = "" if self.has_model else ", no model yet"
        return f"{self.name} ({self.status}, step {self.step}/{self.steps}, {self.family} {self.resolution}px{model})"


def read_run(path: Path, busy: set[Path] = frozenset()) -> RunInfo | None:
    """The run in ``path``, or None when it is not one (or its run.json is odd): a listing never fails."""
    try:
        return _read_run(path, busy)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _read_run(path: Path, busy: set[Path]) -> RunInfo | None:
    try:
        info = json.loads((path / "run.json").read_text())
        step, steps = int(info["step"]), int(info["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not a run (an upload, a half-made folder): skip it, never crash a listing
    state_step = _json(path / "state" / "state.json").get("step")
    if isinstance(state_step, int):
        step = state_step
    status = str(info.get("status", "unknown"))
    if path.resolve() in busy:
        status = "training"
    elif status == "running":
        status = "interrupted"  # the process that wrote "running" is gone
    elif status == "queued":
        status = "not started"  # it was in line when the server stopped; Resume starts it
    has_state = (path / "state" / "state.json").is_file()
    meta = info.get("meta") if isinstance(info.get("meta"), dict) else {}
    return RunInfo(name=path.name, path=path, status=status, step=step, steps=steps,
                   has_model=(path / "model" / "model.safetensors").is_file(),
                   resumable=(has_state and status in ("stopped", "interrupted", "finished", "failed"))
                   or (status in ("not started", "failed") and (path / "data").is_dir()),
                   family=str(info.get("family", "?")), resolution=int(info.get("resolution") or 0),
                   base=meta.get("base_name") or info.get("base"))


def list_runs(root: Path, busy: set[Path] = frozenset()) -> list[RunInfo]:
    if not root.is_dir():
        return []
    runs = []
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.is_symlink() and RUN_NAME.match(p.name) and p.name.lower() not in RESERVED:
            if (info := read_run(p, busy)) is not None:
                runs.append(info)
    return runs


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


# --- data snapshot ---------------------------------------------------------------------------
def write_data(run_dir: Path, images: torch.Tensor, names: list[str]) -> Path:
    """The training set as ``<run>/data/00000_<name>.png`` at the training resolution (lossless)."""
    from .. import render

    data_dir = run_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for i, (arr, name) in enumerate(zip(render.to_uint8(images), names)):
        stem = sanitise_name(Path(name).stem)[:40]
        ckpt.atomic_write_bytes(data_dir / f"{i:05d}_{stem}.png", render.png_bytes(arr))
    return data_dir


def _data_of(run_dir: Path, meta: dict[str, Any]) -> tuple[Path, str, Any]:
    """Where a run's images are (its own snapshot, else the CLI command's --data) and how to fit them."""
    if (run_dir / "data").is_dir():
        return run_dir / "data", "crop", (255, 255, 255)
    command = str(meta.get("command") or "")
    try:
        from ..__main__ import _colour, parser

        words = shlex.split(command)
        args = parser().parse_args(words[words.index("train"):])
        source = Path(args.data)
        if source.exists():
            return source, args.fit, _colour(args.background)
    except (ValueError, SystemExit, AttributeError):
        pass
    raise ValueError("this run's images are not on this machine any more, so it cannot be resumed here")


def resume_spec(run_dir: Path, *, owner_key: str, until: int | None, resolve_base=None) -> JobSpec:
    """A job that continues ``run_dir`` from its last checkpoint (towards ``until`` steps).

    A run that was still in line when the server stopped has no checkpoint: it starts again from
    its ``run.json`` (options, and the base model by name through ``resolve_base``, which only
    finds models the visitor may use)."""
    info = _json(run_dir / "run.json")
    state = _json(run_dir / "state" / "state.json")
    if not info:
        raise ValueError(f"{run_dir.name} has no checkpoint to resume from")
    if "step" not in state:
        return _restart_spec(run_dir, info, owner_key=owner_key, until=until, resolve_base=resolve_base)
    step = int(state["step"])
    steps = int(until) if until else int(info.get("steps", step))
    if steps <= step:
        raise ValueError(f"{run_dir.name} is already at step {step}; ask for more steps to continue it")
    if steps > 1_000_000:
        raise ValueError("steps must be at most 1,000,000")
    options = resume_options(run_dir, steps=steps)
    config = config_from_dict(info["config"])
    meta = dict(info.get("meta") or {})
    data, fit, background = _data_of(run_dir, meta)
    return JobSpec(run_dir=run_dir, name=run_dir.name, owner_key=owner_key, data=data,
                   options=options, fit=fit, background=background, config=config, meta=meta, resume=True)


def _restart_spec(run_dir: Path, info: dict, *, owner_key: str, until: int | None, resolve_base) -> JobSpec:
    from ..train import options_from_dict

    if info.get("status") not in ("queued", "failed") or not (run_dir / "data").is_dir():
        raise ValueError(f"{run_dir.name} has no checkpoint to resume from")
    try:
        opts = dict(info["options"])
        if until:
            opts["steps"] = int(until)
        config = info.get("config") or {}
        options = options_from_dict(opts, info.get("family") or config.get("family"), config)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{run_dir.name}: its run.json cannot be read ({exc})") from None
    meta = dict(info.get("meta") or {})
    base = None
    if meta.get("base_name"):
        if resolve_base is None:
            raise ValueError(f"{run_dir.name} never started and its base model cannot be found here")
        base = resolve_base(str(meta["base_name"]))
        config = None
    else:
        config = config_from_dict(info["config"])
    return JobSpec(run_dir=run_dir, name=run_dir.name, owner_key=owner_key, data=run_dir / "data",
                   options=options, base=base, config=config, meta=meta, resume=True)


# --- download --------------------------------------------------------------------------------
def zip_model(run_dir: Path) -> Path:
    """``<name>.zip`` holding ``<name>/{config.json, model.safetensors, README.md, samples.png}``."""
    model_dir = run_dir / "model"
    ckpt.read_model_dir(model_dir)  # never hand out a model that would not load
    _sweep_downloads()
    out = DOWNLOADS / secrets.token_hex(8) / f"{run_dir.name}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in MODEL_ZIP_FILES:
            if (model_dir / name).is_file():
                zf.write(model_dir / name, f"{run_dir.name}/{name}")
    tmp.replace(out)
    return out


def _sweep_downloads(now: float | None = None) -> None:
    now = time.time() if now is None else now
    if not DOWNLOADS.is_dir():
        return
    for d in DOWNLOADS.iterdir():
        try:
            if now - d.stat().st_mtime > DOWNLOAD_TTL_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            continue
