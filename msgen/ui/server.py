"""How the web server is launched: upload size caps, a request-body cap, a disk guard, cache expiry.

Gradio stores every upload on disk before any handler sees it, and keeps what it stored (and
every picture it served) until the process ends. On a public Space that is a disk anyone can
fill. So ``launch_options`` gives ``launch()`` a per-file ``max_file_size`` and an ASGI
middleware (``UploadGuard``) that refuses an upload request whose body is over
``max_request_bytes`` (by its Content-Length, or by counting a chunked body) or that arrives
while the upload folder's disk has less than ``min_free_bytes`` left; and ``CACHE_EXPIRY`` is
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
        if scope.get("type") != "http" or not str(scope.get("path", "")).rstrip("/").endswith("/upload"):
            return await self.app(scope, receive, send)
        limit_mb = self.max_request_bytes // 2**20
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        try:
            declared = int(headers.get(b"content-length", b"-1"))
        except ValueError:
            declared = -1
        if declared > self.max_request_bytes:
            return await _refuse(send, 413, f"upload is over this server's {limit_mb} MB limit per request")
        if _free_bytes() < self.min_free_bytes:
            return await _refuse(send, 507, "the server's disk is nearly full; try again later")
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_request_bytes:  # a chunked body that lies by omission
                    return {"type": "http.disconnect"}
            return message

        return await self.app(scope, counted, send)


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
