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

Finding the files is `msgen.sources` (folders, zips through `msgen.zipread`, lists; links,
FIFOs, unsafe zip paths, encrypted members and nested zips are refused there; hidden and
system files are skipped, and named here when a source holds nothing else). Each file's
bytes are judged and decoded by `msgen.decode` (content, not file names, decides). Order is
sorted by name.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ImageColor

from .decode import DataError, decode, mb, probe
from .sources import Entry, Rejected, Skipped, as_path, collect, read_file, too_big

__all__ = ["DataError", "Limits", "LIMITS", "Rejected", "ImageSet", "load_image_set", "load_image", "to_uint8",
           "DECODE_SLOTS"]


@dataclass(frozen=True)
class Limits:
    """Every ingestion limit; pass a smaller instance in tests or a stricter one on a shared Space."""

    max_files: int = 2000  # a fine-tune needs tens to hundreds; 2000 bounds decode time on 2 vCPUs
    max_file_bytes: int = 25 * 2**20  # a 12 MP phone JPEG is ~5 MB, a 4K PNG screenshot ~25 MB
    max_total_bytes: int = 400 * 2**20  # of all files / uncompressed zip members: bounds RAM and time
    max_pixels: int = 40_000_000  # per image: 40 MP of RGBA is 160 MB decoded; stops decompression bombs
    # Of one source, judged from the headers before anything is decoded, at the size each image
    # decodes at (a baseline JPEG at its reduced draft size, so a 12 MP photo counts 0.2-0.8 MP; a
    # progressive one in full per 10 scans; the rest in full). 200 pictures of 5 MP pass. Decoding
    # costs at most ~22 ms of CPU per MP (lossless WebP and LZW TIFF, the slowest measured), so the
    # costliest set that passes takes ~22 s of one core; a 430 KB zip of 2000 36 MP 1-bit PNGs
    # (72,000 MP) is refused after 28 headers instead of decoding for 431 s.
    max_total_pixels: int = 1_000_000_000
    max_decode_seconds: float = 60.0  # CPU seconds: a backstop behind max_total_pixels, for costs no header shows
    # For a decode slot (DECODE_SLOTS) before answering "busy"; None waits as long as it takes
    # (a training worker, whose run would otherwise fail while a visitor's upload decodes).
    decode_wait_seconds: float | None = 30.0
    min_side: int = 8  # below this there is nothing left to learn at any resolution
    max_jpeg_scans: int = 100  # JPEGs are written with 1-10 (progressive) scans; each costs a full pass
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


@dataclass
class ImageSet:
    """What a source yielded: accepted images in name order, plus what was left out and why."""

    images: torch.Tensor  # N x 3 x r x r float32 in [-1, 1]; N may be 0
    names: list[str]  # accepted file names, same order as images
    rejected: list[Rejected]
    resolution: int


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


def _list(source, limits: Limits, zips: contextlib.ExitStack) -> tuple[list[Entry], list[Rejected]]:
    entries, rejected, skipped = [], [], []
    for item in collect(source, limits, zips):
        if isinstance(item, Skipped):
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


def _judge(entries: list[Entry], rejected: list[Rejected], resolution: int, fit: str,
           limits: Limits) -> list[Entry]:
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
            pixels += probe(data, resolution, fit, max_pixels=limits.max_pixels, min_side=limits.min_side,
                            max_scans=limits.max_jpeg_scans)
        except DataError as e:
            rejected.append(Rejected(entry.name, str(e)))
            continue
        if pixels > limits.max_total_pixels:
            raise DataError(f"the images add up to more than the {limits.max_total_pixels / 1e6:g} MP limit on "
                            "decoded pixels for one set: send fewer or smaller pictures")
        passed.append(entry)
    return passed


def _decode_all(entries: list[Entry], rejected: list[Rejected], resolution: int, fit: str,
                background: tuple, limits: Limits) -> tuple[list[torch.Tensor], list[str]]:
    # The deadline stands behind max_total_pixels for what a header cannot show (a file that
    # changed since it was judged, a format slower than its pixel count says). It counts this
    # thread's CPU time, so that a busy host does not refuse what an idle one accepts.
    deadline = time.thread_time() + limits.max_decode_seconds
    images, names = [], []
    for entry in entries:
        try:
            data = entry.read(limits.max_file_bytes)  # read again rather than hold every file at once
            images.append(decode(data, resolution, fit, background, max_pixels=limits.max_pixels,
                                 min_side=limits.min_side, max_scans=limits.max_jpeg_scans))
            names.append(entry.name)
        except DataError as e:
            rejected.append(Rejected(entry.name, str(e)))
        if time.thread_time() > deadline:
            raise DataError(f"decoding took over the {limits.max_decode_seconds:g} s CPU limit for one set: "
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
            raise DataError(too_big(len(data), limits))
    else:
        path = Path(as_path(path_or_bytes))
        name = path.name
        if not path.is_file():
            raise DataError(f"no such file: {path}")
        data = read_file(path, limits.max_file_bytes)
    try:
        return _to_float(decode(data, resolution, fit, background, max_pixels=limits.max_pixels,
                                min_side=limits.min_side, max_scans=limits.max_jpeg_scans))
    except DataError as e:
        raise DataError(f"{name}: {e}" if name else str(e)) from None


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats (any shape) to a uint8 0..255 tensor of that shape, by ``msgen.render``'s
    one rounding rule (nearest, halves up); out-of-range values clamp."""
    from .render import to_bytes

    return torch.from_numpy(to_bytes(images))


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


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1.0
