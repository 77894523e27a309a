"""How the web server is launched: upload size caps, a request-body cap, a disk guard, cache expiry.

Gradio stores every upload on disk before any handler sees it, and keeps what it stored (and
every picture it served) until the process ends. On a public Space that is a disk anyone can
fill. So ``launch_options`` gives ``launch()`` a per-file ``max_file_size`` and an ASGI
middleware (``UploadGuard``) that refuses an upload request without a Content-Length (a chunked
upload cut off half-way leaves gradio's partial temp files behind), whose body is over
``max_request_bytes``, or that arrives while the upload folder's disk has less than
``min_free_bytes`` left; caps every other request body at ``MAX_BODY_BYTES`` (counted, so a
missing or lying Content-Length gains nothing); and sweeps files a broken upload left at the top
of gradio's upload folder (gradio's own cache lives in sub-folders). ``CACHE_EXPIRY`` is
the ``delete_cache`` of ``gr.Blocks``: every ``CACHE_SWEEP_S`` seconds, cached files older than
``common.CACHE_TTL_S`` are deleted (the page's own opening pictures are kept).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from . import common

CACHE_SWEEP_S = 600
CACHE_EXPIRY = (CACHE_SWEEP_S, common.CACHE_TTL_S)
MAX_BODY_BYTES = 40 * 2**20  # any other request: an inline 25 MB image is ~34 MB of base64 JSON
STALE_UPLOAD_S = 1800  # a partial upload file this old at the top of the upload folder is debris
SWEEP_EVERY_S = 60.0


@dataclass(frozen=True)
class UploadCaps:
    max_file_bytes: int  # one uploaded file (gradio's max_file_size)
    max_request_bytes: int  # one upload request, all its files together
    min_free_bytes: int = 1 * 2**30  # uploads are refused while the disk has less than this free


def caps(shared: bool) -> UploadCaps:
    """Locally a zip may be as large as msgen.data accepts; a shared host takes a quarter of that."""
    from ..data import LIMITS

    if shared:
        return UploadCaps(max_file_bytes=100 * 2**20, max_request_bytes=200 * 2**20)
    return UploadCaps(max_file_bytes=LIMITS.max_total_bytes, max_request_bytes=LIMITS.max_total_bytes + 16 * 2**20)


class UploadGuard:
    """ASGI middleware: refuse over-large upload bodies and uploads to a nearly full disk with 413/507."""

    def __init__(self, app, max_request_bytes: int, min_free_bytes: int):
        self.app, self.max_request_bytes, self.min_free_bytes = app, max_request_bytes, min_free_bytes

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        upload = str(scope.get("path", "")).rstrip("/").endswith("/upload")
        cap = self.max_request_bytes if upload else MAX_BODY_BYTES
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        try:
            declared = int(headers.get(b"content-length", b"-1"))
        except ValueError:
            declared = -1
        if declared > cap:
            return await _refuse(send, 413, f"request is over this server's {cap // 2**20} MB limit"
                                 f"{' per upload request' if upload else ''}")
        if upload:
            sweep_stale_uploads()
            if declared < 0:
                return await _refuse(send, 411, "uploads must say their Content-Length")
            if _free_bytes() < self.min_free_bytes:
                return await _refuse(send, 507, "the server's disk is nearly full; try again later")
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:  # a body longer than it said, or chunked without a length
                    return {"type": "http.disconnect"}
            return message

        return await self.app(scope, counted, send)


_last_sweep = [0.0]


def sweep_stale_uploads(now: float | None = None) -> int:
    """Delete regular files older than ``STALE_UPLOAD_S`` at the top of gradio's upload folder
    (the temp files of uploads that never completed); at most once per ``SWEEP_EVERY_S``."""
    import time

    from .validate import upload_folder

    now = time.time() if now is None else now
    if now - _last_sweep[0] < SWEEP_EVERY_S:
        return 0
    _last_sweep[0] = now
    removed = 0
    try:
        entries = list(upload_folder().iterdir())
    except OSError:
        return 0
    for p in entries:
        try:
            if p.is_file() and not p.is_symlink() and now - p.stat().st_mtime > STALE_UPLOAD_S:
                p.unlink()
                removed += 1
        except OSError:
            continue
    return removed


async def _refuse(send, status: int, message: str) -> None:
    import json

    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _free_bytes() -> int:
    from .validate import upload_folder

    folder = upload_folder()
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return 2**62


def launch_options(shared: bool) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch`` (app.py and the tests' servers use the same)."""
    from starlette.middleware import Middleware

    c = caps(shared)
    guard = Middleware(UploadGuard, max_request_bytes=c.max_request_bytes, min_free_bytes=c.min_free_bytes)
    return {"max_file_size": c.max_file_bytes, "app_kwargs": {"middleware": [guard]}}
