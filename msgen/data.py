"""Image-set ingestion: turn what a person uploads into a training tensor, or say why not.

Shared by the web Train tab and the CLI. A *source* is a folder (walked recursively), one
image file, a zip file, or a list of any of these (Gradio hands over a list of temp paths).
Every file is judged on its own: a bad one becomes a `Rejected` entry with a short reason
and the rest still load. Only whole-source problems raise `DataError`: the source does not
exist, holds too many files or bytes, or is a zip bomb. Nothing else ever escapes, because
the input is untrusted and the Space must keep serving other people.

Limits live in one place, `Limits` (defaults in `LIMITS`):

- ``max_files`` 2000 files per source (junk such as ``.DS_Store`` is not counted);
- ``max_file_bytes`` 25 MB per file or zip member;
- ``max_total_bytes`` 400 MB for all files, or all uncompressed zip members, together;
- ``max_pixels`` 40 MP per image, judged from the header before any pixel is decoded
  (PIL's own decompression-bomb check stays on behind it);
- ``min_side`` 8 px, the shortest side worth keeping;
- ``max_zip_ratio`` 200:1 uncompressed to compressed per zip member, for members over
  ``zip_ratio_floor`` (1 MB); members are also read with a cap, so lying headers gain nothing;
- ``max_zip_entries`` 10000 entries in one zip, counted before its directory is parsed.

Zip members are read in memory and never extracted; absolute or ``..`` paths, symbolic
links, encrypted members and nested zips are refused. In folders, symbolic links that
lead outside the folder are refused and linked folders are not followed. Hidden files,
``__MACOSX``, ``Thumbs.db`` and ``desktop.ini`` are skipped silently. Order is sorted by name.

Each file's bytes are judged and decoded by `msgen.decode` (content, not file names, decides).
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ImageColor

from .decode import NESTED_ZIP, ZIP_MAGIC, DataError, brief, decode

__all__ = ["DataError", "Limits", "LIMITS", "Rejected", "ImageSet", "load_image_set", "load_image", "to_uint8"]


@dataclass(frozen=True)
class Limits:
    """Every ingestion limit; pass a smaller instance in tests or a stricter one on a shared Space."""

    max_files: int = 2000  # a fine-tune needs tens to hundreds; 2000 bounds decode time on 2 vCPUs
    max_file_bytes: int = 25 * 2**20  # a 12 MP phone JPEG is ~5 MB, a 4K PNG screenshot ~25 MB
    max_total_bytes: int = 400 * 2**20  # of all files / uncompressed zip members: bounds RAM and time
    max_pixels: int = 40_000_000  # per image: 40 MP of RGBA is 160 MB decoded; stops decompression bombs
    min_side: int = 8  # below this there is nothing left to learn at any resolution
    max_zip_ratio: float = 200.0  # real images compress < 10:1; bombs reach 1000:1 and more
    zip_ratio_floor: int = 2**20  # smaller members are exempt: a flat 1 MB BMP harms no one
    max_zip_entries: int = 10_000  # checked before zipfile parses the directory into Python objects


LIMITS = Limits()


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


def load_image_set(source, resolution: int, *, fit: str = "crop", background=(255, 255, 255),
                   limits: Limits = LIMITS) -> ImageSet:
    """Load every image in `source` as an N x 3 x r x r tensor in [-1, 1]; see the module docstring."""
    background = _check_args(resolution, fit, background)
    images, names, rejected = [], [], []
    with contextlib.ExitStack() as zips:
        entries = []
        for item in _collect(source, limits, zips):
            (rejected if isinstance(item, Rejected) else entries).append(item)
            # Checked while walking so that pointing at "/" fails fast instead of listing a disk.
            if len(entries) + len(rejected) > limits.max_files:
                raise DataError(f"too many files: more than {limits.max_files} in one set; choose fewer")
        entries.sort(key=lambda e: e.name)
        total = sum(e.size for e in entries)
        if total > limits.max_total_bytes:
            raise DataError(f"the files add up to {_mb(total)}, over the {_mb(limits.max_total_bytes)} limit")
        read = 0
        for entry in entries:
            try:
                data = entry.read(limits.max_file_bytes)
            except DataError as e:
                rejected.append(Rejected(entry.name, str(e)))
                continue
            read += len(data)  # sizes can change or lie between listing and reading
            if read > limits.max_total_bytes:
                raise DataError(f"the files add up to more than the {_mb(limits.max_total_bytes)} limit")
            try:
                images.append(decode(data, resolution, fit, background, max_pixels=limits.max_pixels, min_side=limits.min_side))
                names.append(entry.name)
            except DataError as e:
                rejected.append(Rejected(entry.name, str(e)))
    rejected.sort(key=lambda r: r.name)
    stacked = torch.stack(images) if images else torch.empty(0, 3, resolution, resolution, dtype=torch.uint8)
    return ImageSet(_to_float(stacked), names, rejected, resolution)


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


class _BadZip(DataError):
    """An unreadable zip: the whole source if it was the source, one rejected item in a list."""


def _collect(source, limits: Limits, zips: contextlib.ExitStack) -> Iterator[_Entry | Rejected]:
    if isinstance(source, (list, tuple)):
        for item in source:
            path = Path(_as_path(item))
            if _is_junk(path.name):
                continue
            if not path.exists():
                yield Rejected(path.name, "file not found")
            elif path.is_dir():
                yield from _walk(path, limits, prefix=path.name + "/")
            elif _is_zip(path):
                try:
                    yield from _zip(path, limits, zips, prefix=path.name + "/")
                except _BadZip as e:
                    yield Rejected(path.name, str(e))
            else:
                yield _file_entry(path, path.name, limits)
        return
    path = Path(_as_path(source))
    if not path.exists():
        raise DataError(f"no such file or folder: {path}")
    if path.is_dir():
        yield from _walk(path, limits, prefix="")
    elif _is_zip(path):
        try:
            yield from _zip(path, limits, zips, prefix="")
        except _BadZip as e:
            raise DataError(f"{path.name}: {e}") from None
    else:
        yield _file_entry(path, path.name, limits)


def _walk(root: Path, limits: Limits, prefix: str) -> Iterator[_Entry | Rejected]:
    root = root.resolve()
    # followlinks=False: a linked folder can loop forever or lead out of the upload.
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not _is_junk(d))
        for d in dirnames:
            if (here / d).is_symlink():
                yield Rejected(prefix + (here / d).relative_to(root).as_posix(), "link to a folder (not followed)")
        for fn in sorted(filenames):
            if _is_junk(fn):
                continue
            path = here / fn
            name = prefix + path.relative_to(root).as_posix()
            if path.is_symlink() and not _inside(path, root):
                yield Rejected(name, "symbolic link points outside the folder")
            else:
                yield _file_entry(path, name, limits)


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
        raise DataError(f"file is over the {_mb(cap)} limit")
    return data


def _zip(path: Path, limits: Limits, zips: contextlib.ExitStack, prefix: str) -> Iterator[_Entry | Rejected]:
    size = path.stat().st_size
    if size > limits.max_total_bytes:
        raise DataError(f"{path.name}: the zip is {_mb(size)}, over the {_mb(limits.max_total_bytes)} limit")
    count = _zip_entry_count(path)
    if count is not None and count > limits.max_zip_entries:
        raise DataError(f"{path.name}: the zip has {count} entries, over the {limits.max_zip_entries} limit")
    try:
        zf = zips.enter_context(zipfile.ZipFile(path))
        infos = zf.infolist()
    except Exception as e:  # zipfile's parser raises assorted types on hostile bytes
        raise _BadZip(f"not a readable zip file ({brief(e)})") from None
    if len(infos) > limits.max_zip_entries:
        raise DataError(f"{path.name}: the zip has {len(infos)} entries, over the {limits.max_zip_entries} limit")
    declared = sum(i.file_size for i in infos)
    if declared > limits.max_total_bytes:
        raise DataError(f"{path.name}: would unpack to {_mb(declared)}, over the "
                        f"{_mb(limits.max_total_bytes)} limit (zip bomb?)")
    for info in sorted(infos, key=lambda i: i.filename):
        member = info.filename.replace("\\", "/")
        if info.is_dir():
            continue
        problem = _member_problem(info, member, limits)
        if problem is None and any(_is_junk(part) for part in member.split("/")):
            continue
        if problem:
            yield Rejected(prefix + member, problem)
        else:
            yield _Entry(prefix + member, info.file_size, lambda cap, info=info: _read_member(zf, info, cap))


def _member_problem(info: zipfile.ZipInfo, member: str, limits: Limits) -> str | None:
    parts = member.split("/")
    if member.startswith("/") or (len(member) > 1 and member[1] == ":") or ".." in parts or "\0" in member:
        return f"unsafe path in zip: {member}"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link in zip (not followed)"
    if info.flag_bits & 0x1:
        return "password-protected zip member"
    if member.lower().endswith(".zip"):
        return NESTED_ZIP
    if info.file_size > limits.max_file_bytes:
        return _too_big(info.file_size, limits)
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > limits.zip_ratio_floor and ratio > limits.max_zip_ratio:
        return f"compresses {ratio:.0f}:1, over the {limits.max_zip_ratio:g}:1 limit (zip bomb?)"
    return None


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    try:
        with zf.open(info) as f:
            data = f.read(cap + 1)  # the cap, not the header, bounds what we inflate
    except Exception as e:  # zlib/bz2/lzma/CRC errors all mean the same thing to the user
        raise DataError(f"damaged zip member ({brief(e)})") from None
    if len(data) > cap:
        raise DataError(f"file is over the {_mb(cap)} limit")
    return data


def _zip_entry_count(path: Path) -> int | None:
    """The entry count from the end-of-central-directory record, or None to let zipfile judge."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - (22 + 65535)))  # record + the longest possible comment
            tail = f.read()
    except OSError:
        return None
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    count = struct.unpack("<H", tail[at + 10 : at + 12])[0]
    return None if count == 0xFFFF else count  # 0xFFFF defers to the zip64 record


def _is_zip(path: Path) -> bool:
    if path.suffix.lower() == ".zip":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) in ZIP_MAGIC
    except OSError:
        return False


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK


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
    return f"file is {_mb(size)}, over the {_mb(limits.max_file_bytes)} limit"


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n % 2**20 else f"{n // 2**20} MB"
