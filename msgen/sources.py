"""What files a source holds: folders, single files, zips and lists of them, as entries to read.

`msgen.data` builds image sets on top of this. Each thing found is an `Entry` (a name, a listed
size and a capped reader), a `Rejected` (with the reason, for the person who sent it) or a
`Skipped` hidden or system file (``.DS_Store``, ``__MACOSX``, ``Thumbs.db``, ``desktop.ini``),
passed over silently inside a folder or zip but named when picked one by one, and named by
`msgen.data` when a source holds nothing else. Zips are opened through `msgen.zipread`.
In folders, symbolic links that lead outside the folder are refused, linked folders are not
followed (they can loop or lead out of the upload) and FIFOs and devices are refused.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import zipread
from .decode import DataError, mb

if TYPE_CHECKING:
    from .data import Limits

__all__ = ["Entry", "Rejected", "Skipped", "collect", "read_file", "as_path", "too_big"]

_JUNK = {"__macosx", "thumbs.db", "desktop.ini", "icon\r"}


@dataclass(frozen=True)
class Rejected:
    """A file left out of a set; `reason` is one short sentence meant for the person who sent it."""

    name: str
    reason: str


@dataclass(frozen=True)
class Entry:
    """A file to read: its name in the set, its listed size, and a reader that enforces a cap."""

    name: str
    size: int  # as listed (file size or declared member size); reading is capped regardless
    read: Callable[[int], bytes]  # cap -> bytes; raises DataError for this file only


@dataclass(frozen=True)
class Skipped:
    """A hidden or system file passed over; shown only when a source yields nothing else."""

    name: str
    reason: str


def collect(source, limits: Limits, zips: contextlib.ExitStack) -> Iterator[Entry | Rejected | Skipped]:
    """Everything `source` holds, unsorted; open zips stay open on `zips` until the set is read."""
    if isinstance(source, (list, tuple)):
        for item in source:
            path = Path(as_path(item))
            if _is_junk(path.name):  # picked one by one, so the person should hear why it is left out
                yield Rejected(path.name, _junk_reason(path.name))
            elif not path.exists():
                yield Rejected(path.name, "file not found")
            elif path.is_dir():
                yield from _walk(path, limits, prefix=path.name + "/")
            elif zipread.is_zip(path):
                try:
                    yield from _zip(path, limits, zips, prefix=path.name + "/")
                except zipread.BadZip as e:
                    yield Rejected(path.name, str(e))
            else:
                yield _file_entry(path, path.name, limits)
        return
    path = Path(as_path(source))
    if not path.exists():
        raise DataError(f"no such file or folder: {path}")
    if path.is_dir():
        yield from _walk(path, limits, prefix="")
    elif zipread.is_zip(path):
        try:
            yield from _zip(path, limits, zips, prefix="")
        except zipread.BadZip as e:
            raise DataError(f"{path.name}: {e}") from None
    else:
        yield _file_entry(path, path.name, limits)


def _walk(root: Path, limits: Limits, prefix: str) -> Iterator[Entry | Rejected | Skipped]:
    root = root.resolve()
    # followlinks=False: a linked folder can loop forever or lead out of the upload.
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for d in dirnames:
            if _is_junk(d):
                yield Skipped(prefix + (here / d).relative_to(root).as_posix(), _junk_reason(d, folder=True))
        dirnames[:] = sorted(d for d in dirnames if not _is_junk(d))
        for d in dirnames:
            if (here / d).is_symlink():
                yield Rejected(prefix + (here / d).relative_to(root).as_posix(), "link to a folder (not followed)")
        for fn in sorted(filenames):
            path = here / fn
            name = prefix + path.relative_to(root).as_posix()
            if _is_junk(fn):
                yield Skipped(name, _junk_reason(fn))
            elif path.is_symlink() and not _inside(path, root):
                yield Rejected(name, "symbolic link points outside the folder")
            else:
                yield _file_entry(path, name, limits)


def _zip(path: Path, limits: Limits, zips: contextlib.ExitStack, prefix: str) -> Iterator[Entry | Rejected | Skipped]:
    # Directory-level checks first (msgen.zipread), then each member from its directory entry.
    try:
        f = zips.enter_context(open(path, "rb"))  # one open file for the checks and for zipfile
    except OSError as e:
        raise zipread.BadZip(f"could not read the file ({e.strerror or e})") from None
    zf = zips.enter_context(zipread.open_zip(f, path.name, limits))
    for info in sorted(zf.infolist(), key=lambda i: i.filename):
        member = info.filename.replace("\\", "/")
        if info.is_dir():
            continue
        problem = zipread.member_problem(info, member, limits)
        junk = next((part for part in member.split("/") if _is_junk(part)), None)
        if problem is None and junk is not None:
            yield Skipped(prefix + member, _junk_reason(junk, folder=junk != member.split("/")[-1]))
        elif problem:
            yield Rejected(prefix + member, problem)
        else:
            yield Entry(prefix + member, info.file_size, lambda cap, info=info: zipread.read_member(zf, info, cap))


def _inside(link: Path, root: Path) -> bool:
    try:
        return link.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a link loop; treat as leading nowhere safe
        return False


def _file_entry(path: Path, name: str, limits: Limits) -> Entry | Rejected:
    try:
        st = path.stat()
    except OSError:
        return Rejected(name, "broken link or unreadable file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        return Rejected(name, "not a regular file")
    if st.st_size > limits.max_file_bytes:
        return Rejected(name, too_big(st.st_size, limits))
    return Entry(name, st.st_size, lambda cap: read_file(path, cap))


def read_file(path: Path, cap: int) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError as e:
        raise DataError(f"could not read the file ({e.strerror or e})") from None
    if len(data) > cap:
        raise DataError(f"file is over the {mb(cap)} limit")
    return data


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK


def _junk_reason(name: str, folder: bool = False) -> str:
    kind = "folder" if folder else "file"
    if name.startswith("."):
        return f"hidden {kind} (name starts with a dot): skipped"
    return f"system {kind} ({name.strip()}): skipped"


def as_path(item) -> str | os.PathLike:
    # Gradio may hand over plain paths, or file objects carrying .path / .name.
    if isinstance(item, (str, os.PathLike)):
        if not os.fspath(item):  # Path("") would quietly mean the working directory
            raise DataError("empty file path")
        return item
    for attr in ("path", "name"):
        value = getattr(item, attr, None)
        if isinstance(value, (str, os.PathLike)):
            return value
    raise DataError(f"not a file path: {item!r}"[:200])


def too_big(size: int, limits: Limits) -> str:
    return f"file is {mb(size)}, over the {mb(limits.max_file_bytes)} limit"
