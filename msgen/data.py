"""Image-set ingestion: turn what a person uploads into a training tensor, or say why not.

Shared by the web Train tab and the CLI. A *source* is a folder (walked recursively), one
image file, a zip file, or a list of any of these (Gradio hands over a list of temp paths).
Every file is judged on its own: a bad one becomes a `Rejected` entry with a short reason
and the rest still load. Only whole-source problems raise `DataError`: the source does not
exist, is over a limit, or is a zip bomb. Nothing else ever escapes, because the input is
untrusted and the Space must keep serving other people.

Limits live in one place, `Limits` (defaults in `LIMITS`); each field's comment says why its
value. Per file: size, pixels and shortest side, judged from the header before any pixel is
decoded. Per source: files, bytes, and decoded pixels in all, the last judged from every header
before the first image is decoded, so an upload too costly to decode is refused in seconds; a
decoding deadline stands behind it. Per zip: entries and directory size, checked before
Python's zipfile reads the directory (`msgen.zipread`), and a compression ratio per member.
Per process: `DECODE_SLOTS` sources decode at once; a source that waits longer than
``decode_wait_seconds`` for a slot is refused as "busy", so training uploads cannot take every
core from visitors who are generating.

Zip members are read in memory and never extracted; absolute or ``..`` paths, symbolic
links, encrypted members and nested zips are refused. In folders, symbolic links that
lead outside the folder are refused and linked folders are not followed. Hidden files,
``__MACOSX``, ``Thumbs.db`` and ``desktop.ini`` are skipped: silently inside a folder or zip,
with a reason when picked one by one or when nothing else is found. Order is sorted by name.

Each file's bytes are judged and decoded by `msgen.decode` (content, not file names, decides).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ImageColor

from . import zipread
from .decode import DataError, decode, mb, probe

__all__ = ["DataError", "Limits", "LIMITS", "Rejected", "ImageSet", "load_image_set", "load_image", "to_uint8",
           "DECODE_SLOTS"]


@dataclass(frozen=True)
class Limits:
    """Every ingestion limit; pass a smaller instance in tests or a stricter one on a shared Space."""

    max_files: int = 2000  # a fine-tune needs tens to hundreds; 2000 bounds decode time on 2 vCPUs
    max_file_bytes: int = 25 * 2**20  # a 12 MP phone JPEG is ~5 MB, a 4K PNG screenshot ~25 MB
    max_total_bytes: int = 400 * 2**20  # of all files / uncompressed zip members: bounds RAM and time
    max_pixels: int = 40_000_000  # per image: 40 MP of RGBA is 160 MB decoded; stops decompression bombs
    # Of one source, counted at the size each image decodes at (a baseline JPEG at its reduced
    # draft size, so a 12 MP photo costs ~0.2-0.8 MP; everything else in full). Decoding costs up to
    # ~30 ms per MP (16-bit PNG, the slowest) on one core, so this caps a source at about 30 s, while
    # 200 pictures of 5 MP pass; a 430 KB zip of 2000 36 MP 1-bit PNGs (72,000 MP) is refused after
    # 28 headers instead of decoding for 431 s.
    max_total_pixels: int = 1_000_000_000
    max_decode_seconds: float = 120.0  # a backstop behind max_total_pixels, for costs no header shows
    decode_wait_seconds: float = 30.0  # for a decode slot (DECODE_SLOTS) before answering "busy"
    min_side: int = 8  # below this there is nothing left to learn at any resolution
    max_zip_ratio: float = 200.0  # real images compress < 10:1; bombs reach 1000:1 and more
    zip_ratio_floor: int = 2**20  # smaller members are exempt: a flat 1 MB BMP harms no one
    max_zip_entries: int = 10_000  # counted in the directory's bytes before zipfile parses it
    # A directory header is 46 bytes plus name, extra field and comment: 10000 entries with
    # 200-character paths take ~2.7 MB. Read before zipfile builds ~400 bytes of objects per entry.
    max_zip_dir_bytes: int = 5 * 2**20


LIMITS = Limits()

# One source decodes at a time per process: decoding holds a core for up to a minute, and on a
# 2-vCPU Space the other core must stay with the visitors who are generating.
DECODE_SLOTS = 1
_decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)


@dataclass(frozen=True)
class Rejected:
    """A file left out of a set; `reason` is one short sentence meant for the person who sent it."""

    name: str
    reason: str


@dataclass
class ImageSet:
    """What a source yielded: accepted images in name order, plus what was left out and why."""

    images: torch.Tensor  # N x 3 x r x r float32 in [-1, 1]; N may be 0
    names: list[str]  # accepted file names, same order as images
    rejected: list[Rejected]
    resolution: int


_JUNK = {"__macosx", "thumbs.db", "desktop.ini", "icon\r"}
_SKIPPED_KEPT = 50  # skipped names remembered, to explain a source that held nothing else


def load_image_set(source, resolution: int, *, fit: str = "crop", background=(255, 255, 255),
                   limits: Limits = LIMITS) -> ImageSet:
    """Load every image in `source` as an N x 3 x r x r tensor in [-1, 1]; see the module docstring."""
    background = _check_args(resolution, fit, background)
    with contextlib.ExitStack() as zips:
        entries, rejected = _list(source, limits, zips)
        with _decode_slot(limits):
            entries = _judge(entries, rejected, resolution, fit, limits)
            images, names = _decode_all(entries, rejected, resolution, fit, background, limits)
    rejected.sort(key=lambda r: r.name)
    stacked = torch.stack(images) if images else torch.empty(0, 3, resolution, resolution, dtype=torch.uint8)
    return ImageSet(_to_float(stacked), names, rejected, resolution)


def _list(source, limits: Limits, zips: contextlib.ExitStack) -> tuple[list[_Entry], list[Rejected]]:
    entries, rejected, skipped = [], [], []
    for item in _collect(source, limits, zips):
        if isinstance(item, _Skipped):
            if len(skipped) < _SKIPPED_KEPT:
                skipped.append(Rejected(item.name, item.reason))
            continue
        (rejected if isinstance(item, Rejected) else entries).append(item)
        # Checked while walking so that pointing at "/" fails fast instead of listing a disk.
        if len(entries) + len(rejected) > limits.max_files:
            raise DataError(f"too many files: more than {limits.max_files} in one set; choose fewer")
    if not entries and not rejected:
        rejected = skipped  # say why nothing came of it, rather than show an empty table
    entries.sort(key=lambda e: e.name)
    total = sum(e.size for e in entries)
    if total > limits.max_total_bytes:
        raise DataError(f"the files add up to {mb(total)}, over the {mb(limits.max_total_bytes)} limit")
    return entries, rejected


def _judge(entries: list[_Entry], rejected: list[Rejected], resolution: int, fit: str,
           limits: Limits) -> list[_Entry]:
    """Every entry's header, before any pixel is decoded: the entries that pass, in order."""
    passed, read, pixels = [], 0, 0
    for entry in entries:
        try:
            data = entry.read(limits.max_file_bytes)
        except DataError as e:
            rejected.append(Rejected(entry.name, str(e)))
            continue
        read += len(data)  # sizes can change or lie between listing and reading
        if read > limits.max_total_bytes:
            raise DataError(f"the files add up to more than the {mb(limits.max_total_bytes)} limit")
        try:
            pixels += probe(data, resolution, fit, max_pixels=limits.max_pixels, min_side=limits.min_side)
        except DataError as e:
            rejected.append(Rejected(entry.name, str(e)))
            continue
        if pixels > limits.max_total_pixels:
            raise DataError(f"the images add up to more than the {limits.max_total_pixels / 1e6:g} MP limit on "
                            "decoded pixels for one set: send fewer or smaller pictures")
        passed.append(entry)
    return passed


def _decode_all(entries: list[_Entry], rejected: list[Rejected], resolution: int, fit: str,
                background: tuple, limits: Limits) -> tuple[list[torch.Tensor], list[str]]:
    # The deadline stands behind max_total_pixels for what a header cannot show (a file that
    # changed since it was judged, a format slower than its pixel count says).
    deadline = time.monotonic() + limits.max_decode_seconds
    images, names = [], []
    for entry in entries:
        try:
            data = entry.read(limits.max_file_bytes)  # read again rather than hold every file at once
            images.append(decode(data, resolution, fit, background, max_pixels=limits.max_pixels,
                                 min_side=limits.min_side))
            names.append(entry.name)
        except DataError as e:
            rejected.append(Rejected(entry.name, str(e)))
        if time.monotonic() > deadline:
            raise DataError(f"decoding took over the {limits.max_decode_seconds:g} s limit for one set: "
                            "send fewer or smaller pictures")
    return images, names


@contextlib.contextmanager
def _decode_slot(limits: Limits):
    if not _decode_slots.acquire(timeout=limits.decode_wait_seconds):
        raise DataError("the server is busy decoding other uploads; try again in a minute")
    try:
        yield
    finally:
        _decode_slots.release()


def load_image(path_or_bytes, resolution: int, *, fit: str = "crop", background=(255, 255, 255),
               limits: Limits = LIMITS) -> torch.Tensor:
    """One image as a 3 x r x r float tensor in [-1, 1]; any problem is a `DataError` naming the file."""
    background = _check_args(resolution, fit, background)
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data, name = bytes(path_or_bytes), None
        if len(data) > limits.max_file_bytes:
            raise DataError(_too_big(len(data), limits))
    else:
        path = Path(_as_path(path_or_bytes))
        name = path.name
        if not path.is_file():
            raise DataError(f"no such file: {path}")
        data = _read_file(path, limits.max_file_bytes)
    try:
        return _to_float(decode(data, resolution, fit, background, max_pixels=limits.max_pixels, min_side=limits.min_side))
    except DataError as e:
        raise DataError(f"{name}: {e}" if name else str(e)) from None


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats (any shape) to uint8 0..255, rounding to nearest; out-of-range values clamp."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


# --- finding files ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    name: str
    size: int  # as listed (file size or declared member size); reading is capped regardless
    read: Callable[[int], bytes]  # cap -> bytes; raises DataError for this file only


@dataclass(frozen=True)
class _Skipped:
    """A hidden or system file passed over; shown only when a source yields nothing else."""

    name: str
    reason: str


def _collect(source, limits: Limits, zips: contextlib.ExitStack) -> Iterator[_Entry | Rejected | _Skipped]:
    if isinstance(source, (list, tuple)):
        for item in source:
            path = Path(_as_path(item))
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
    path = Path(_as_path(source))
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


def _walk(root: Path, limits: Limits, prefix: str) -> Iterator[_Entry | Rejected | _Skipped]:
    root = root.resolve()
    # followlinks=False: a linked folder can loop forever or lead out of the upload.
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for d in dirnames:
            if _is_junk(d):
                yield _Skipped(prefix + (here / d).relative_to(root).as_posix(), _junk_reason(d, folder=True))
        dirnames[:] = sorted(d for d in dirnames if not _is_junk(d))
        for d in dirnames:
            if (here / d).is_symlink():
                yield Rejected(prefix + (here / d).relative_to(root).as_posix(), "link to a folder (not followed)")
        for fn in sorted(filenames):
            path = here / fn
            name = prefix + path.relative_to(root).as_posix()
            if _is_junk(fn):
                yield _Skipped(name, _junk_reason(fn))
            elif path.is_symlink() and not _inside(path, root):
                yield Rejected(name, "symbolic link points outside the folder")
            else:
                yield _file_entry(path, name, limits)


def _zip(path: Path, limits: Limits, zips: contextlib.ExitStack, prefix: str) -> Iterator[_Entry | Rejected | _Skipped]:
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
            yield _Skipped(prefix + member, _junk_reason(junk, folder=junk != member.split("/")[-1]))
        elif problem:
            yield Rejected(prefix + member, problem)
        else:
            yield _Entry(prefix + member, info.file_size, lambda cap, info=info: zipread.read_member(zf, info, cap))


def _inside(link: Path, root: Path) -> bool:
    try:
        return link.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a link loop; treat as leading nowhere safe
        return False


def _file_entry(path: Path, name: str, limits: Limits) -> _Entry | Rejected:
    try:
        st = path.stat()
    except OSError:
        return Rejected(name, "broken link or unreadable file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        return Rejected(name, "not a regular file")
    if st.st_size > limits.max_file_bytes:
        return Rejected(name, _too_big(st.st_size, limits))
    return _Entry(name, st.st_size, lambda cap: _read_file(path, cap))


def _read_file(path: Path, cap: int) -> bytes:
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


# --- small helpers -----------------------------------------------------------------------


def _check_args(resolution, fit, background) -> tuple[int, int, int]:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    if fit not in ("crop", "pad"):
        raise ValueError(f"fit must be 'crop' or 'pad', got {fit!r}")
    if isinstance(background, str):  # Gradio's ColorPicker gives "#rrggbb"
        background = ImageColor.getrgb(background)[:3]
    background = tuple(background)
    if len(background) != 3 or not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in background):
        raise ValueError(f"background must be three ints in 0..255, got {background!r}")
    return tuple(int(c) for c in background)


def _as_path(item) -> str | os.PathLike:
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


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1.0


def _too_big(size: int, limits: Limits) -> str:
    return f"file is {mb(size)}, over the {mb(limits.max_file_bytes)} limit"
