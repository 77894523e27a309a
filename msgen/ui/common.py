"""What the app's tabs share: the model cache, the runs folder, visitors' privacy, cross-tab wiring.

``AppContext`` holds it, in typed fields: the owner token's ``gr.BrowserState`` and the
Generate tab's model list are made before any tab is built (``app.build_app``: the list
unrendered, placed by the Generate tab), so a tab that wires to another's component never
depends on the order the tabs are built in; the training line (``JobManager``) and the decoded
uploads (``StagedSets``) are made with the context.

Run locally, every run lives in one runs folder and is listed for the one user. On a shared
host (a Hugging Face Space, or ``--shared``), each browser gets an opaque owner token (kept in
its localStorage through ``gr.BrowserState``); its runs live in ``<runs>/sessions/<sha256(token)>``
so other visitors never see them in lists, and a name alone never reaches them. Such folders
expire after a time-to-live: each visit touches the folder's ``.seen`` marker, so expiry reads
one or two ``stat``s per visitor, never their files, and runs at most once a minute.
Gradio's own cache (uploads, pictures, download zips) is swept by age on a shorter clock
(``CACHE_TTL_S``, wired in app.py), so nothing a visitor uploaded or was shown outlives their
folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..zoo import WEIGHTS_DIR, ModelCache, ModelEntry, list_models

if TYPE_CHECKING:  # the fields' types; importing them here would load torch and gradio for every caller
    import gradio as gr

    from .jobs import JobManager
    from .staging import StagedSets

OWNER_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
SESSION_TTL_S = 6 * 3600  # uploads and models of a shared-host visitor are deleted after this
CACHE_TTL_S = 3600  # gradio's cache (uploads, shown pictures, zips): needed only while a page shows them
EXPIRE_EVERY_S = 60.0  # session expiry runs at most this often, whatever the traffic
SEEN = ".seen"  # per-visitor marker whose mtime is the visitor's last activity


def on_spaces() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def ensure_owner(owner: str | None) -> str:
    """The browser's owner token, or a fresh one (192 random bits) when it has none or a bad one.

    Wired to page load so a first visit gets its token before it uploads anything; handlers
    that store files call it too, so a token exists even when the load event lost a race.
    """
    return owner if valid_owner(owner) else secrets.token_urlsafe(24)


def client_id(request: Any) -> str:
    """The caller's address, for per-address limits. On a Space the app sits behind a proxy, so it
    is the first X-Forwarded-For hop, which a client can forge: a speed bump; the global caps
    (the training line, each run's budget) are the bounds that hold."""
    if request is None:
        return ""
    try:
        forwarded = request.headers.get("x-forwarded-for") if on_spaces() else None
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
        return str(request.client.host)[:64] if request.client else ""
    except AttributeError:
        return ""


def valid_owner(owner: Any) -> bool:
    """A well-formed token (a request may send a dict, a list, a number or nothing at all)."""
    return isinstance(owner, str) and OWNER_TOKEN.match(owner) is not None


@dataclass
class AppContext:
    runs_dir: Path
    shared: bool = False
    weights_dir: Path = WEIGHTS_DIR
    cache: ModelCache = field(default_factory=ModelCache)
    ttl_s: float = SESSION_TTL_S
    # --- shared across tabs ----------------------------------------------------------------------
    # The visitor's owner token (kept in the browser); every tab's events take it. Made by app.py
    # before the tabs; ``owner_state()`` makes one for a tab built on its own (tests).
    owner: gr.BrowserState | None = None
    # The Generate tab's model list, which the Train tab refreshes when a run ends; made before the
    # tabs (unrendered: ``generate.model_list``), so it exists whatever order the tabs are built in.
    model_dropdown: gr.Dropdown | None = None
    # The training line, everyone's runs (capped on a shared host); made with the context.
    jobs: JobManager = None  # type: ignore[assignment]
    # Uploads decoded once at the training resolution (the Train tab and its API).
    staged: StagedSets = None  # type: ignore[assignment]
    _last_expiry: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.jobs is None:
            from .jobs import JobManager
            from .train_limits import SHARED_LIMITS

            self.jobs = JobManager(max_jobs=SHARED_LIMITS.max_jobs if self.shared else None)
        if self.staged is None:
            from .staging import StagedSets

            self.staged = StagedSets()

    def owner_state(self) -> gr.BrowserState:
        """The owner token's state, made (in the current Blocks) if nobody made it yet."""
        if self.owner is None:
            import gradio as gr

            self.owner = gr.BrowserState(None, storage_key="msgen_owner")
        return self.owner

    def owner_dir(self, owner: str | None) -> Path:
        """Folder holding the runs visible to ``owner`` (the one runs folder when not shared)."""
        if not self.shared:
            return self.runs_dir
        if not valid_owner(owner):
            raise ValueError("this browser session has no valid owner token; reload the page")
        digest = hashlib.sha256(owner.encode()).hexdigest()[:32]
        return self.runs_dir / "sessions" / digest

    def touch(self, owner: str | None) -> None:
        """Record a visit: the visitor's folder lives another ``ttl_s`` from now."""
        if not self.shared or not valid_owner(owner):
            return
        marker = self.owner_dir(owner) / SEEN
        if not marker.parent.is_dir():  # nothing stored yet: a visit alone creates no folder
            return
        try:
            marker.touch()
        except OSError:  # a full disk must not break a page load; expiry then judges by mtimes
            pass

    def owner_key(self, owner: str | None) -> str:
        """A stable id of the visitor's folder, for in-memory bookkeeping such as training jobs."""
        return str(self.owner_dir(owner).resolve())

    def models(self, owner: str | None) -> list[ModelEntry]:
        try:
            runs = self.owner_dir(owner)
        except ValueError:
            runs = None
        shipped = list_models(runs_dir=Path("/nonexistent-msgen-runs"), weights_dir=self.weights_dir)
        if runs is None:
            return shipped
        return shipped + [e for e in list_models(runs_dir=runs, weights_dir=Path("/nonexistent-msgen-weights"))]

    def find(self, name: str, owner: str | None) -> ModelEntry:
        for entry in self.models(owner):
            if entry.name == name:
                return entry
        raise ValueError(f"unknown model {name!r}; pick one from the list")

    def expire_sessions(self, now: float | None = None, keep: Any = ()) -> int:
        """Delete shared-host session folders not visited for longer than the TTL; returns how many.

        ``keep``: folders (or paths inside them) that are in use, e.g. by a queued training run.
        A visitor's last activity is the newest of its folder's mtime and its ``.seen`` marker, so
        this costs two ``stat`` calls per visitor. Without ``now`` it runs at most once per
        ``EXPIRE_EVERY_S`` (page loads and uploads call it; most calls return at once).
        """
        root = self.runs_dir / "sessions"
        if not self.shared or not root.is_dir():
            return 0
        if now is None:
            now = time.time()
            if now - self._last_expiry < EXPIRE_EVERY_S:
                return 0
        self._last_expiry = now
        kept = {Path(p).resolve() for p in keep}
        removed = 0
        for d in root.iterdir():
            if d.is_symlink() or not d.is_dir():
                continue
            if any(k == d.resolve() or d.resolve() in k.parents for k in kept):
                continue
            try:
                seen = (d / SEEN).stat().st_mtime if (d / SEEN).exists() else 0.0
                newest = max(seen, d.stat().st_mtime)
            except OSError:
                continue
            if now - newest > self.ttl_s:
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
        return removed
