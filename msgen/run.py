"""A training run's folder and its one owner, ``Run``: layout, ``run.json``, state, quality, data.

One run is one folder (the names are those every earlier version wrote, so old runs and run zips
still open)::

    <run>/run.json      what the run is (``RunRecord``): status, step / steps, config, options
                        (``TrainOptions``, the family's own inside), data, the command, meta
    <run>/state/        state.safetensors (weights, EMA, optimiser moments, RNG) + state.json (step,
                        options, optimiser hyper-parameters); never exported
    <run>/model/        the exported model (config.json, model.safetensors, README.md, samples.png)
    <run>/quality.json  the quality report (``msgen.report``), before and after training
    <run>/data/         the training set at the training resolution, when the run keeps a snapshot

Only this module opens those files: the Trainer, ``python -m msgen train``, the Train tab and the
run archives (``msgen.runzip`` / ``msgen.runcheck``) all go through ``Run``. Every write is atomic
(a temp file, then ``os.replace``); every read is bounded (``MAX_JSON_BYTES``), and ``run.json``
and ``state.json`` are parsed strictly (``msgen.untrusted``: depth, numbers, duplicate keys), so a
tampered file is one ``RunError`` naming the file and the field. ``run.json`` carries
``"version": 2``; a file without it (the flat form earlier versions wrote) is translated on
reading. The command that was run is kept for display only: a resume reads ``data`` (where the
images came from and how they were fitted), never the command. Families are never named here.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from . import untrusted
from .options import TrainOptions, options_from_dict
from .runrecord import MAX_STEPS, RUN_JSON, WHITE, DataRecord, RunError, RunRecord, record_from_json

__all__ = ["Run", "RunRecord", "DataRecord", "RunError", "record_from_json", "sanitise_name"]

QUALITY_JSON, STATE_JSON, STATE_TENSORS = "quality.json", "state/state.json", "state/state.safetensors"
MODEL_DIR, DATA_DIR = "model", "data"
# what a resumable archive of a run carries (msgen.runzip), and what it must carry
ARCHIVE_FILE = re.compile(r"^(run\.json|quality\.json|state/state\.json|state/state\.safetensors|model/config\.json|"
                          r"model/model\.safetensors|model/samples\.png|data/\d{5}_[A-Za-z0-9_.-]{0,40}\.png)$")
RESUMABLE_FILES = (RUN_JSON, STATE_JSON, STATE_TENSORS, "model/config.json", "model/model.safetensors")
MAX_JSON_BYTES = 4 * 2**20  # run.json, state.json, quality.json: a few KB each in practice


def sanitise_name(text: str | None) -> str:
    """A name from free text: letters, digits, ``_ . -``; never empty, never a path."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", (text or "").strip())
    name = re.sub(r"-{2,}", "-", name).lstrip("._-")[:64].rstrip("._-")
    return name or time.strftime("run-%Y%m%d-%H%M%S")


def _read_json(path: Path, what: str, *, strict: bool = True) -> Any:
    if not path.exists():
        raise FileNotFoundError(what)
    try:
        data = untrusted.read_regular_file(path, MAX_JSON_BYTES)
        return untrusted.parse_json(data, what) if strict else json.loads(data)
    except FileNotFoundError:
        raise
    except (untrusted.UntrustedFileError, ValueError) as exc:
        raise RunError(str(exc).replace(str(path), what)) from None


class Run:
    """The run in folder ``path`` (which need not exist yet). Paths are built here from the
    layout's fixed names only; the caller chooses the folder (a checked run name, ``--out``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def state_dir(self) -> Path:
        return self.path / "state"

    @property
    def data_dir(self) -> Path:
        return self.path / DATA_DIR

    @property
    def samples_png(self) -> Path:
        return self.model_dir / "samples.png"

    def file(self, rel: str) -> Path:
        """One of the layout's files (``RUN_JSON``, ``STATE_JSON``, an ``ARCHIVE_FILE`` ...)."""
        if rel not in (RUN_JSON, QUALITY_JSON, STATE_JSON, STATE_TENSORS) and not ARCHIVE_FILE.match(rel):
            raise ValueError(f"{rel!r} is not a file of a run")
        return self.path / rel

    def has_model(self) -> bool:
        return (self.model_dir / "model.safetensors").is_file()

    # --- run.json ----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.file(RUN_JSON).is_file()

    def record(self) -> RunRecord:
        """``run.json`` read and checked; ``RunError`` (a ValueError) if it is missing or malformed."""
        try:
            return record_from_json(_read_json(self.file(RUN_JSON), RUN_JSON), RUN_JSON)
        except FileNotFoundError:
            raise RunError(f"{self.name} has no {RUN_JSON}") from None

    def write(self, record: RunRecord) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        ckpt.atomic_write_text(self.file(RUN_JSON), json.dumps(record.to_json(), indent=1, default=str))

    def mark_failed(self, message: str) -> None:
        """Record a failure (best effort: on a full disk even this may not fit)."""
        try:
            self.write(dataclasses.replace(self.record(), status="failed", error=str(message)[:2000]))
        except (OSError, ValueError):
            pass

    # --- state ------------------------------------------------------------------------------
    def has_state(self) -> bool:
        return self.file(STATE_JSON).is_file()

    def state_info(self) -> dict[str, Any] | None:
        """``state/state.json`` checked to hold an object with a whole step; None if there is none."""
        try:
            info = _read_json(self.file(STATE_JSON), STATE_JSON)
        except FileNotFoundError:
            return None
        step = info.get("step") if isinstance(info, dict) else None
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEPS:
            raise RunError(f"{STATE_JSON}: step must be a whole number from 0 to {MAX_STEPS:,}")
        return info

    def state_step(self) -> int | None:
        """The step of the last checkpoint, or None (no state, or one that cannot be read)."""
        try:
            info = self.state_info()
        except (OSError, ValueError):
            return None
        return None if info is None else int(info["step"])

    def step(self) -> int:
        return self.state_step() or 0

    def save_state(self, tensors: dict, info: dict[str, Any]) -> None:
        """The checkpoint: the tensors (stamped with the step), then ``state.json`` last, so a
        crash between the two writes leaves a newer safetensors that ``load_state`` refuses."""
        ckpt.atomic_save_tensors(self.file(STATE_TENSORS), tensors, metadata={"step": str(info["step"])})
        ckpt.atomic_write_text(self.file(STATE_JSON), json.dumps(info, indent=1))

    def state_tensor_names(self) -> set[str]:
        """The names of the last checkpoint's tensors (its header only); empty if there is none."""
        path = self.file(STATE_TENSORS)
        if not path.is_file():
            return set()
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return set(f.keys())
        except (OSError, ValueError, RuntimeError):  # unreadable: load_state says why, later
            return set()

    def load_state(self) -> tuple[dict[str, Any], dict] | None:
        """(state.json, tensors) of the last checkpoint, None if there is none; a torn one refused."""
        path = self.file(STATE_TENSORS)
        if not path.is_file() or not self.has_state():
            return None
        from safetensors import safe_open
        from safetensors.torch import load_file

        info = self.state_info()
        with safe_open(str(path), framework="pt") as f:
            stamp = (f.metadata() or {}).get("step")
        if stamp is not None and stamp != str(info["step"]):
            raise ckpt.CheckpointError(
                f"{self.state_dir}: state.safetensors is from step {stamp} but state.json from step {info['step']} "
                "(the process was killed between the two writes); the exported model in "
                f"{self.model_dir} is intact: fine-tune it as a base in a new run")
        return info, load_file(str(path))

    # --- quality report ---------------------------------------------------------------------
    def quality(self, *, strict: bool = False) -> dict[str, Any]:
        """``quality.json``; {} when absent or unreadable (``strict``: RunError when unreadable)."""
        try:
            data = _read_json(self.file(QUALITY_JSON), QUALITY_JSON, strict=False)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            if strict:
                raise RunError(f"{QUALITY_JSON} is not valid JSON") from None
            return {}
        if not isinstance(data, dict):
            if strict:
                raise RunError(f"{QUALITY_JSON} must hold a JSON object")
            return {}
        return data

    def write_quality(self, quality: dict[str, Any]) -> None:
        ckpt.atomic_write_text(self.file(QUALITY_JSON), json.dumps(quality, indent=1))

    # --- resume -----------------------------------------------------------------------------
    def train_options(self, **changes: Any) -> TrainOptions:
        """The options to resume with: the checkpoint's (else ``run.json``'s, for a run that never
        started), optionally changed (e.g. more steps); an older run's flat form translated."""
        record, state = self.record(), self.state_info()
        raw = state.get("options") if state is not None else record.options
        config = record.config or {}
        options = options_from_dict(raw, record.family_name, config)
        return dataclasses.replace(options, **changes)

    def data_source(self) -> tuple[Path, str, tuple[int, int, int]]:
        """(where the images are, fit, background): the run's own snapshot, else the recorded source."""
        if self.data_dir.is_dir():
            return self.data_dir, "crop", WHITE  # already fitted at the training resolution
        data = self.record().data
        if data.source and Path(data.source).exists():
            return Path(data.source), data.fit, data.background
        raise ValueError("this run's images are not on this machine any more, so it cannot be resumed here")

    # --- data staging -----------------------------------------------------------------------
    def stage_data(self, images, names: list[str]) -> Path:
        """The training set as ``data/00000_<name>.png`` at the training resolution (lossless):
        reloading it with ``msgen.data.load_image_set`` gives the very tensor that was trained on."""
        from . import render

        self.data_dir.mkdir(parents=True, exist_ok=True)
        for i, (arr, name) in enumerate(zip(render.to_uint8(images), names)):
            stem = sanitise_name(Path(name).stem)[:40]
            ckpt.atomic_write_bytes(self.data_dir / f"{i:05d}_{stem}.png", render.png_bytes(arr))
        return self.data_dir

    def sweep_temp_files(self) -> int:
        """Remove what a killed atomic write left: ``.<name>.*.tmp`` files (checkpoint.atomic_*)
        and ``.<name>.new-*`` / ``.<name>.old-*`` folders (checkpoint.save_model's swap)."""
        removed = 0
        for folder in (self.path, self.state_dir, self.model_dir):
            if not folder.is_dir() or folder.is_symlink():
                continue
            for p in folder.iterdir():
                if p.name.startswith(".") and any(m in p.name for m in ("tmp", ".new-", ".old-")) and not p.is_symlink():
                    try:
                        shutil.rmtree(p) if p.is_dir() else p.unlink()
                        removed += 1
                    except OSError:
                        continue
        return removed
