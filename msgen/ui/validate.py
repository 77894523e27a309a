"""What a web request's payloads must be before a tab uses them; every value's bounds are in
``msgen.validate`` (gradio-free, shared with the CLI and ``msgen.generate``) and re-exported here,
so a tab imports one module for both.

A request's values come from a stranger (gradio_client, raw HTTP, a forged page), not only from
the page's own widgets, so a number box may hold a string, a dict or ``NaN``, and an image may be
``{"path": "/etc/passwd"}``. Each check either returns a clean value or raises ``ValueError``
with one sentence naming the field and its bounds; the tabs turn that into a ``gr.Error`` or a
status line. Nothing here imports gradio at import time.

Images: with ``preprocess=False`` an event gets the raw payload, and gradio only checks the
paths of payloads that carry its ``FileData`` marker; a bare ``{"path": ...}`` would reach the
handler untouched. So ``uploaded_image`` accepts only a file inside gradio's own upload cache
(where gradio puts what a visitor uploaded, under a name derived from the content) or inline
``data:`` image bytes, and never a path a caller chose.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import Any

from ..validate import (  # noqa: F401  (the shared bounds and checks: tabs use them from here)
    DEFAULT_VARIANTS,
    MAX_SIDE,
    SEED_MAX,
    VARIANTS,
    choice,
    default_truncation,
    real,
    resample_temperature,
    seed,
    seed_at,
    text,
    truncation,
    truncation_range,
    whole,
)

MAX_INLINE_BYTES = 25 * 2**20  # an inline data: image, decoded (as msgen.data's per-file limit)


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
