"""What every tab's handlers do to a request's values before using them: one place for bounds.

A request's values come from a stranger (gradio_client, raw HTTP, a forged page), not only from
the page's own widgets, so a number box may hold a string, a dict or ``NaN``, and an image may be
``{"path": "/etc/passwd"}``. Each check here either returns a clean value or raises
``ValueError`` with one sentence naming the field and its bounds; the tabs turn that into a
``gr.Error`` or a status line. Nothing here imports gradio, so the CLI can share the bounds.

Images: with ``preprocess=False`` an event gets the raw payload, and gradio only checks the
paths of payloads that carry its ``FileData`` marker; a bare ``{"path": ...}`` would reach the
handler untouched. So ``uploaded_image`` accepts only a file inside gradio's own upload cache
(where gradio puts what a visitor uploaded, under a name derived from the content) or inline
``data:`` image bytes, and never a path a caller chose.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from pathlib import Path
from typing import Any

from ..models import SEED_MAX  # noqa: F401  (one bound for the web API, the CLI and msgen.generate)

MAX_INLINE_BYTES = 25 * 2**20  # an inline data: image, decoded (as msgen.data's per-file limit)


def whole(value: Any, label: str, lo: int, hi: int, *, default: int | None = None) -> int:
    """An integer in [lo, hi] from a number box: ``3``, ``3.0`` and ``"3"`` pass; ``3.5``, ``True``,
    ``"x"``, ``NaN`` and containers do not. ``None``/``""`` give ``default`` when there is one."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is not None:
            return default
        raise ValueError(f"{label} is required: a whole number from {lo:,} to {hi:,}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{label} must be a whole number from {lo:,} to {hi:,}")
    try:
        number = float(value) if not isinstance(value, int) else value
    except (ValueError, OverflowError):
        raise ValueError(f"{label} must be a whole number from {lo:,} to {hi:,}") from None
    if isinstance(number, float) and (not math.isfinite(number) or number != int(number)):
        raise ValueError(f"{label} must be a whole number from {lo:,} to {hi:,}")
    number = int(number)
    if not lo <= number <= hi:
        raise ValueError(f"{label} must be a whole number from {lo:,} to {hi:,}")
    return number


def real(value: Any, label: str, lo: float, hi: float, *, default: float | None = None) -> float:
    """A finite number in [lo, hi]; the same rules as ``whole`` without the integer part."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is not None:
            return default
        raise ValueError(f"{label} is required: a number from {lo:g} to {hi:g}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{label} must be a number from {lo:g} to {hi:g}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{label} must be a number from {lo:g} to {hi:g}") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise ValueError(f"{label} must be a number from {lo:g} to {hi:g}")
    return number


def seed(value: Any, label: str = "seed", *, default: int | None = None) -> int:
    return whole(value, label, 0, SEED_MAX, default=default)


def choice(value: Any, label: str, allowed) -> Any:
    """``value`` if it is one of ``allowed`` (compared as given), else ValueError listing them."""
    allowed = list(allowed)
    if isinstance(value, (str, int)) and not isinstance(value, bool) and value in allowed:
        return value
    raise ValueError(f"{label} must be one of: {', '.join(str(a) for a in allowed)}")


def text(value: Any, label: str, max_len: int = 200) -> str:
    """A short free-text field; ``None`` is empty. Containers and over-long text are refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{label} must be text")
    if len(value) > max_len:
        raise ValueError(f"{label} must be at most {max_len} characters")
    return value


def upload_folder() -> Path:
    """Gradio's upload cache (``GRADIO_TEMP_DIR``, else ``<tmp>/gradio``), resolved."""
    try:
        from gradio.utils import get_upload_folder

        return Path(get_upload_folder()).resolve()
    except ImportError:  # gradio-free callers (the CLI) never hand over request payloads
        import tempfile

        return (Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")).resolve()


def in_upload_folder(path: Any) -> Path:
    """``path`` resolved, if it is a regular file inside gradio's upload cache; else ValueError.
    The message is the same whatever the path is, so it tells a prober nothing about the disk."""
    refused = ValueError("that file was not uploaded to this page; upload the picture again")
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise refused
    try:
        real_path = Path(os.path.realpath(path))
        root = upload_folder()
        if not real_path.is_relative_to(root) or real_path == root or not real_path.is_file():
            raise refused
    except (OSError, ValueError):
        raise refused from None
    return real_path


_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+-]+(;[A-Za-z0-9=._-]+)*;base64,", re.ASCII)


def uploaded_image(value: Any) -> str | bytes:
    """A request's image payload -> a path inside gradio's upload cache, or the bytes of an
    inline ``data:image/...;base64,`` URL. Anything else (a bare path string, a path outside the
    cache, an http URL, a container of the wrong shape) is refused with ValueError."""
    if value is None:
        raise ValueError("upload an image (or click an example) first")
    if not isinstance(value, dict):
        raise ValueError("send the image as an upload (gradio_client.handle_file) or as a data: URL")
    url = value.get("url")
    path = value.get("path")
    if path:
        return str(in_upload_folder(path))
    if isinstance(url, str) and _DATA_URL.match(url):
        encoded = url.split(",", 1)[1]
        if len(encoded) > MAX_INLINE_BYTES * 4 // 3 + 4:
            raise ValueError(f"the inline image is over the {MAX_INLINE_BYTES // 2**20} MB limit")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the inline image is not valid base64") from None
    raise ValueError("send the image as an upload (gradio_client.handle_file) or as a data: URL")


def refuse_remote_files(value: Any, depth: int = 0) -> None:
    """ValueError if any file payload in ``value`` names a remote file (``path`` an http(s) or
    protocol-relative URL): the server never fetches a file on a caller's behalf."""
    if depth > 32:
        raise ValueError("the request nests too deeply")
    if isinstance(value, dict):
        path = value.get("path")
        if isinstance(path, str) and re.match(r"^\s*(https?:)?//", path, re.IGNORECASE):
            raise ValueError("files must be uploaded; this server does not fetch URLs")
        for v in value.values():
            refuse_remote_files(v, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            refuse_remote_files(v, depth + 1)
