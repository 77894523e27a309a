"""Run folders as the Train tab sees them: safe names, listing, data snapshots, resume, download.

Every path here is built from a visitor's folder (``AppContext.owner_dir``) and a name that
matched ``RUN_NAME``; nothing a visitor types is ever joined to a path unchecked, so no run is
written outside the runs folder and no shipped model is touched. A run started on the page
keeps its training set in ``<run>/data/`` as lossless PNGs at the training resolution, already
cropped and resized (``Run.stage_data``): reloading them with ``msgen.data.load_image_set`` gives
the very tensor that was trained on, so a resume (from the page or ``python -m msgen train --data
<run>/data``) sees the same images, and no original upload is kept. What a run folder holds is
read through ``msgen.run.Run``; nothing here opens a run's files itself.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
import torch

from .. import checkpoint as ckpt
from ..models import config_from_dict
from ..run import Run, RunError, RunRecord, sanitise_name
from .jobs import JobSpec

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED = {"sessions"}  # the shared-host root inside the runs folder
DOWNLOADS = Path(tempfile.gettempdir()) / "msgen-downloads"
DOWNLOAD_TTL_S = 3600
MODEL_ZIP_FILES = ("config.json", "model.safetensors", "README.md", "samples.png")


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
    run = Run(path)
    try:
        record = run.record()
    except (OSError, RunError):
        return None  # not a run (an upload, a half-made folder): skip it, never crash a listing
    state_step = run.state_step()
    step = record.step if state_step is None else state_step
    status = record.status
    if path.resolve() in busy:
        status = "training"
    elif status == "running":
        status = "interrupted"  # the process that wrote "running" is gone
    elif status == "queued":
        status = "not started"  # it was in line when the server stopped; Resume starts it
    return RunInfo(name=path.name, path=path, status=status, step=step, steps=record.steps,
                   has_model=run.has_model(),
                   resumable=(run.has_state() and status in ("stopped", "interrupted", "finished", "failed"))
                   or (status in ("not started", "failed") and run.data_dir.is_dir()),
                   family=record.family_name or "?", resolution=record.resolution,
                   base=record.meta.get("base_name") or record.base)


def list_runs(root: Path, busy: set[Path] = frozenset()) -> list[RunInfo]:
    if not root.is_dir():
        return []
    runs = []
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.is_symlink() and RUN_NAME.match(p.name) and p.name.lower() not in RESERVED:
            if (info := read_run(p, busy)) is not None:
                runs.append(info)
    return runs


# --- data snapshot ---------------------------------------------------------------------------
def write_data(run_dir: Path, images: torch.Tensor, names: list[str]) -> Path:
    """The training set as ``<run>/data/00000_<name>.png`` at the training resolution (lossless)."""
    return Run(run_dir).stage_data(images, names)


def resume_spec(run_dir: Path, *, owner_key: str, until: int | None, resolve_base=None) -> JobSpec:
    """A job that continues ``run_dir`` from its last checkpoint (towards ``until`` steps).

    A run that was still in line when the server stopped has no checkpoint: it starts again from
    its ``run.json`` (options, and the base model by name through ``resolve_base``, which only
    finds models the visitor may use). Where the images are is the run's record (``Run.data_source``)."""
    run = Run(run_dir)
    if not run.exists():
        raise ValueError(f"{run_dir.name} has no checkpoint to resume from")
    record = run.record()  # RunError (a ValueError) names what is wrong with it
    step = run.state_step()
    if step is None:
        return _restart_spec(run, record, owner_key=owner_key, until=until, resolve_base=resolve_base)
    steps = int(until) if until else record.steps or step
    if steps <= step:
        raise ValueError(f"{run_dir.name} is already at step {step}; ask for more steps to continue it")
    if steps > 1_000_000:
        raise ValueError("steps must be at most 1,000,000")
    options = run.train_options(steps=steps)
    config = config_from_dict(record.config)
    meta = dict(record.meta)
    data, fit, background = run.data_source()
    return JobSpec(run_dir=run_dir, name=run_dir.name, owner_key=owner_key, data=data,
                   options=options, fit=fit, background=background, config=config, meta=meta, resume=True)


def _restart_spec(run: Run, record: RunRecord, *, owner_key: str, until: int | None, resolve_base) -> JobSpec:
    if record.status not in ("queued", "failed") or not run.data_dir.is_dir():
        raise ValueError(f"{run.name} has no checkpoint to resume from")
    try:
        options = run.train_options(**({"steps": int(until)} if until else {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{run.name}: its run.json cannot be read ({exc})") from None
    meta = dict(record.meta)
    base = config = None
    if meta.get("base_name"):
        if resolve_base is None:
            raise ValueError(f"{run.name} never started and its base model cannot be found here")
        base = resolve_base(str(meta["base_name"]))
    else:
        config = config_from_dict(record.config)
    return JobSpec(run_dir=run.path, name=run.name, owner_key=owner_key, data=run.data_dir,
                   options=options, base=base, config=config, meta=meta, resume=True)


# --- download --------------------------------------------------------------------------------
def zip_model(run_dir: Path) -> Path:
    """``<name>.zip`` holding ``<name>/{config.json, model.safetensors, README.md, samples.png}``."""
    model_dir = Run(run_dir).model_dir
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
