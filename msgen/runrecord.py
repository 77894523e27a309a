"""``run.json``'s schema: ``RunRecord`` (with ``DataRecord``), read strictly, old flat files translated.

``msgen.run.Run`` reads and writes the file; this module only says what may be in it. A file with
``"version": 2`` must hold exactly these fields, each of its type and within its bounds; a file
without a version is the flat form earlier versions wrote and is translated (its ``fit`` /
``background`` and, for an old CLI run, the ``--data`` words of its command become ``data``).
Nothing a resume needs is read from the command of a file this version wrote.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from typing import Any

VERSION = 2
RUN_JSON = "run.json"
MAX_STEPS = 10_000_000  # TrainOptions' own bound
FITS = ("crop", "pad")
WHITE = (255, 255, 255)
STATUSES = ("queued", "running", "stopped", "finished", "failed", "unknown")


class RunError(ValueError):
    """A run folder whose files are not what msgen writes, with a message naming the file."""


@dataclass(frozen=True)
class DataRecord:
    """Where a run's images came from. ``source`` None: the run's own ``data/`` snapshot."""

    source: str | None = None  # a folder, zip or image file (absolute where the CLI was given one)
    fit: str = "crop"
    background: tuple[int, int, int] = WHITE
    images: int | None = None  # how many were used


@dataclass(frozen=True)
class RunRecord:
    """``run.json``: what the run is and how it stands."""

    status: str = "unknown"  # queued, running, stopped, finished, failed
    step: int = 0
    steps: int = 0
    family: str | None = None
    resolution: int = 0
    config: dict[str, Any] | None = None  # dataclasses.asdict of the model's config
    options: dict[str, Any] | None = None  # options_to_dict(TrainOptions); older runs: the flat form
    base: str | None = None  # the exported model it fine-tunes
    resumed: bool = False
    processes: int = 1
    data: DataRecord = DataRecord()
    command: str | None = None  # what was run, for display (the card's "Command"); never parsed
    meta: dict[str, Any] = field(default_factory=dict)  # the model card's metadata
    error: str | None = None  # why it failed

    @property
    def family_name(self) -> str | None:
        return self.family or (self.config or {}).get("family")

    def to_json(self) -> dict[str, Any]:
        out = {"version": VERSION, **dataclasses.asdict(self)}
        out["data"]["background"] = list(self.data.background)
        if out["error"] is None:
            del out["error"]
        return out


_KEYS = {f.name for f in dataclasses.fields(RunRecord)} | {"version"}
_V1_KEYS = _KEYS - {"version", "data", "command"}


_REQUIRED = object()


def _check(data: dict, key: str, types: tuple, default: Any, where: str, ok=lambda v: True) -> Any:
    """``data[key]`` of one of ``types`` passing ``ok``; ``default`` when absent (None: null allowed)."""
    if key not in data and default is _REQUIRED:
        raise RunError(f"{where} has no {key}")
    value = data.get(key, default)
    if value is None and default is None:
        return None
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types) or not ok(value):
        raise RunError(f"{where}: {key} is not valid ({str(value)[:60]!r})")
    return value


def record_from_json(data: Any, where: str = RUN_JSON) -> RunRecord:
    """A ``RunRecord`` from ``run.json``'s parsed JSON (an old flat file translated); ``RunError`` if odd."""
    if not isinstance(data, dict):
        raise RunError(f"{where} must hold a JSON object")
    if "version" not in data:
        data = _translate_v1(data)
    elif data["version"] != VERSION:
        raise RunError(f"{where}: version {str(data['version'])[:20]} is not one this msgen reads")
    unknown = sorted(str(k)[:40] for k in set(data) - _KEYS)
    if unknown:
        raise RunError(f"{where} has fields msgen does not write: {', '.join(unknown[:5])}")
    count = (int,)
    raw = _check(data, "data", (dict,), {}, where)
    bg = _check(raw, "background", (list, tuple), list(WHITE), f"{where} data",
                lambda v: len(v) == 3 and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in v))
    record = DataRecord(source=_check(raw, "source", (str,), None, f"{where} data", lambda v: 0 < len(v) <= 4096),
                        fit=_check(raw, "fit", (str,), "crop", f"{where} data", lambda v: v in FITS),
                        background=tuple(bg), images=_check(raw, "images", count, None, f"{where} data", lambda v: v >= 0))
    if set(raw) - {"source", "fit", "background", "images"}:
        raise RunError(f"{where}: data has fields msgen does not write")
    short = lambda n: lambda v: len(v) <= n  # noqa: E731
    return RunRecord(
        status=_check(data, "status", (str,), "unknown", where, lambda v: v in STATUSES),
        step=_check(data, "step", count, _REQUIRED, where, lambda v: 0 <= v <= MAX_STEPS),
        steps=_check(data, "steps", count, _REQUIRED, where, lambda v: 0 <= v <= MAX_STEPS),
        family=_check(data, "family", (str,), None, where, short(64)),
        resolution=_check(data, "resolution", count, 0, where, lambda v: 0 <= v <= 8192),
        config=_check(data, "config", (dict,), None, where), options=_check(data, "options", (dict,), None, where),
        base=_check(data, "base", (str,), None, where, short(4096)), resumed=_check(data, "resumed", (bool,), False, where),
        processes=_check(data, "processes", count, 1, where, lambda v: 1 <= v <= 4096), data=record,
        command=_check(data, "command", (str,), None, where, short(20_000)),
        meta=_check(data, "meta", (dict,), {}, where) or {}, error=_check(data, "error", (str,), None, where, short(20_000)))


def _translate_v1(old: dict[str, Any]) -> dict[str, Any]:
    """The flat ``run.json`` earlier versions wrote, in this version's form: the queued runs'
    ``fit`` / ``background`` and (old CLI runs only) the ``--data`` words of the command become
    ``data``; meta's command becomes ``command``. Unknown keys of an old file are dropped."""
    new = {k: v for k, v in old.items() if k in _V1_KEYS}
    meta = old.get("meta")
    command = meta.get("command") if isinstance(meta, dict) and isinstance(meta.get("command"), str) else None
    data = _legacy_command_data(command) if command else {}
    for key in ("fit", "background"):
        if key in old:
            data[key] = old[key]
    return new | {"version": VERSION, "data": data, "command": command}


def _legacy_command_data(command: str) -> dict[str, Any]:
    """``--data``, ``--fit``, ``--background`` of an old run's ``python -m msgen train`` line. Runs
    this version writes record ``data`` themselves; this reads only files written before it."""
    try:
        words = shlex.split(command)[:400]
    except ValueError:
        return {}
    found: dict[str, str] = {}
    for i, word in enumerate(words):
        for flag in ("--data", "--fit", "--background"):
            if word == flag and i + 1 < len(words):
                found[flag] = words[i + 1]
            elif word.startswith(flag + "="):
                found[flag] = word.split("=", 1)[1]
    out: dict[str, Any] = {}
    if found.get("--data") not in (None, "", "DATA"):  # a shared host's line hides its paths
        out["source"] = found["--data"]
    if found.get("--fit") in FITS:
        out["fit"] = found["--fit"]
    colour = {"white": [255, 255, 255], "black": [0, 0, 0]}.get(found.get("--background", "white"))
    if colour is None:
        try:
            colour = [int(p) for p in found["--background"].split(",")]
        except ValueError:
            colour = None
    if colour is not None:
        out["background"] = colour
    return out
