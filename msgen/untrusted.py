"""Bounded reading of model files a stranger may have written: ``config.json`` and the
``model.safetensors`` header.

Any Hub repo id can be loaded, so these files are hostile until checked. Everything here reads a
bounded number of bytes, parses with bounded depth and number sizes, and fails with one
``ValueError`` subclass (``UntrustedFileError``) that names the limit, never a RecursionError,
OverflowError or TypeError. Nothing is allocated from the file's say-so: the safetensors header is
read without its data (``safe_open`` memory-maps the file and validates the offsets) so the
caller can compare every tensor's name, dtype and shape with its model before loading any data.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

MAX_CONFIG_BYTES = 256 * 2**10  # a config.json with its metadata block is ~2 KB; metrics tables fit many times over
MAX_JSON_DEPTH = 16  # config.json nests 4 deep (msgen -> metrics -> table -> value)
MAX_NUMBER_CHARS = 40  # longest number literal: a 5001-digit integer is refused before int() sees it
MAX_HEADER_BYTES = 2**20  # safetensors JSON header; ~7 KB for the shipped 68-tensor models
MAX_TENSORS = 4096

# One linear pass over escapes, quotes and brackets (a regex matching whole strings can be
# made to backtrack quadratically by a file full of unclosed quotes).
_TOKEN = re.compile(r'\\.|["\[\]{}]', re.DOTALL)

# safetensors dtype names -> what a model's float parameters accept (loaded into float32 params).
FLOAT_DTYPES = frozenset({"F32", "F16", "BF16"})


class UntrustedFileError(ValueError):
    """A file that breaks one of this module's limits; the message names the file and the limit."""


def _read_head(path: Path, limit: int) -> tuple[bytes, int]:
    """(at most ``limit`` bytes, the file's size) of a regular file: never a FIFO, device or
    /dev/zero link (opened non-blocking, judged by fstat on the open file, not by its name)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UntrustedFileError(f"{path}: cannot be opened ({exc.strerror or type(exc).__name__})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedFileError(f"{path}: not a regular file")
        return fh.read(limit), st.st_size


def read_regular_file(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file (never a FIFO, device or /dev/zero link)."""
    path = Path(path)
    data, _size = _read_head(path, limit + 1)
    if len(data) > limit:
        raise UntrustedFileError(f"{path}: larger than the {limit // 1024} KiB limit for this file")
    return data


def json_depth(text: str) -> int:
    """Deepest nesting of arrays and objects, counted without recursion (strings skipped)."""
    depth = deepest = 0
    in_string = False
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok == '"':
            in_string = not in_string
        elif in_string or tok[0] == "\\":
            continue  # an escape, or a bracket inside a string (a backslash outside one is invalid JSON)
        elif tok in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _number(kind: type):
    def parse(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise UntrustedFileError(f"a number with {len(text)} characters (the limit is {MAX_NUMBER_CHARS})")
        value = kind(text)
        if kind is float and not math.isfinite(value):
            raise UntrustedFileError(f"the number {text} is out of range")
        return value

    return parse


def _constant(name: str) -> Any:
    raise UntrustedFileError(f"{name} is not a number JSON allows")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise UntrustedFileError(f"the key {key[:64]!r} appears twice")
        out[key] = value
    return out


def parse_json(data: bytes, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Strict JSON: UTF-8, nesting <= ``max_depth``, short finite numbers, no NaN, no duplicate keys."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UntrustedFileError(f"{what} is not valid JSON: not UTF-8 text") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise UntrustedFileError(f"{what} is nested {depth} deep (the limit is {max_depth})")
    try:
        return json.loads(text, parse_int=_number(int), parse_float=_number(float), parse_constant=_constant,
                          object_pairs_hook=_no_duplicates)
    except UntrustedFileError as exc:
        raise UntrustedFileError(f"{what} is refused: {exc}") from None
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise UntrustedFileError(f"{what} is not valid JSON: {str(exc)[:200]}") from None


def safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) of every tensor in a safetensors file, reading no tensor data.

    The 8-byte header length is checked against ``MAX_HEADER_BYTES`` and the file size first, so a
    header that claims 2**63 bytes costs nothing; ``safe_open`` then validates every tensor's
    offsets against its dtype, shape and the file (a header lying about sizes is refused there)."""
    from safetensors import safe_open

    path = Path(path)
    head, file_size = _read_head(path, 8)
    if len(head) < 8:
        raise UntrustedFileError(f"{path} could not be read: too short to be a safetensors file")
    size = int.from_bytes(head, "little")
    if size > MAX_HEADER_BYTES:
        raise UntrustedFileError(f"{path}: its header claims {size} bytes (the limit is {MAX_HEADER_BYTES})")
    if 8 + size > file_size:
        raise UntrustedFileError(f"{path} could not be read: its header claims {size} bytes but the file has {file_size}")
    try:
        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
            if len(names) > MAX_TENSORS:
                raise UntrustedFileError(f"{path}: {len(names)} tensors (the limit is {MAX_TENSORS})")
            out = {}
            for name in names:
                sl = f.get_slice(name)
                out[name] = (str(sl.get_dtype()), tuple(int(d) for d in sl.get_shape()))
            return out
    except UntrustedFileError:
        raise
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UntrustedFileError(f"{path} could not be read: {first}") from None
