"""Runs that outlive the machine: a run's full state as a zip or a Hub repo, and back.

(About 430 lines: packing, the zip's and the Hub's untrusted-input checks and the staging swap are one path.)

A free Space's disk is wiped on restart, so a run leaves as an archive and comes back as one.
The archive (a zip under one top folder ``<name>/``, or the root of a Hub repo) holds exactly::

    run.json                 what the run is (family, config, options, meta)
    state/state.json         step, options, optimiser hyper-parameters
    state/state.safetensors  weights, EMA, optimiser moments, random streams
    model/config.json        the exported model (model/README.md is rebuilt from it)
    model/model.safetensors
    model/samples.png        optional
    quality.json             optional
    data/00000_<name>.png    the training set at the training resolution (the run's snapshot)
    manifest.json            sha256 and size of every file above, written at pack time

An uploaded archive is untrusted input, judged like ``msgen.data`` judges a zip of images: the
archive and every member have size caps, the entry count is read before the directory is
parsed, compression ratios are bounded, and absolute or ``..`` paths, links, encrypted members
and any file not in the list above refuse the whole archive. Members are streamed into a
hidden staging folder with their sha256, which must match the manifest, so a truncated or
edited archive is refused naming the file. The manifest proves integrity, not origin: anyone
can write one, so everything is then checked against the run's own config as if it were
hostile (JSON and safetensors only, never a pickle; every tensor's name and shape against
the model the config builds; every PNG at the training resolution) before the run is moved
into place with ``os.replace``. The Hub path downloads only the manifest's files, then the
same checks run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import struct
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import checkpoint as ckpt
from .run import ARCHIVE_FILE as RUN_FILE  # the run folder's layout is msgen.run's
from .run import RESUMABLE_FILES as REQUIRED

FORMAT = "msgen-run/1"
MANIFEST = "manifest.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_JUNK = ("__MACOSX/", ".DS_Store")
STAGING_TTL_S = 3600  # an import takes seconds; older staging folders are a killed process's


class RunArchiveError(ValueError):
    """An archive that cannot become a run, with a message a user can act on."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_archive_bytes: int = 1024 * 2**20  # a 128 px run with 2000 images is ~300 MB
    max_total_bytes: int = 1536 * 2**20  # all members unpacked
    max_state_bytes: int = 768 * 2**20  # one safetensors file: weights + EMA + Adam moments
    max_json_bytes: int = 4 * 2**20
    max_png_bytes: int = 25 * 2**20
    max_entries: int = 2100  # msgen.data's 2000 images + the run's own files
    max_ratio: float = 200.0  # for members over 1 MB; floats and PNGs barely compress
    max_steps: int = 10_000_000
    min_free_bytes: int = 1 * 2**30  # an import never leaves the disk with less than this free


LIMITS = ArchiveLimits()
# A shared host (a public Space) trains runs of at most 128 px on a few thousand images; a quarter.
SHARED_LIMITS = ArchiveLimits(max_archive_bytes=256 * 2**20, max_total_bytes=384 * 2**20,
                              max_state_bytes=256 * 2**20)


def _cap(rel: str, limits: ArchiveLimits) -> int:
    if rel.endswith(".safetensors"):
        return limits.max_state_bytes
    return limits.max_png_bytes if rel.endswith(".png") else limits.max_json_bytes


# --- pack ----------------------------------------------------------------------------------
def run_files(run_dir: Path) -> list[str]:
    """The files of ``run_dir`` that an archive carries, sorted; refuses a run that cannot resume."""
    run_dir = Path(run_dir)
    missing = [r for r in REQUIRED if not (run_dir / r).is_file()]
    if missing:
        raise RunArchiveError(f"{run_dir.name} cannot be packed for resuming: no {', '.join(missing)}")
    found = [str(p.relative_to(run_dir)) for p in sorted(run_dir.rglob("*"))
             if p.is_file() and not p.is_symlink() and RUN_FILE.match(str(p.relative_to(run_dir)))]
    if not any(f.startswith("data/") for f in found):
        raise RunArchiveError(f"{run_dir.name} has no data snapshot (data/*.png), so it cannot be resumed elsewhere")
    return found


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest(run_dir: Path, files: list[str]) -> dict[str, Any]:
    return {"format": FORMAT, "files": {f: {"sha256": _sha256(run_dir / f), "size": (run_dir / f).stat().st_size}
                                        for f in files}}


def pack(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write ``run_dir`` as a resumable zip at ``out`` (atomically); returns ``out``."""
    run_dir, out = Path(run_dir), Path(out)
    files = run_files(run_dir)
    man = manifest(run_dir, files)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for rel in files:  # PNGs and float tensors barely deflate: store them, deflate the JSON
                kind = zipfile.ZIP_DEFLATED if rel.endswith(".json") else zipfile.ZIP_STORED
                zf.write(run_dir / rel, f"{run_dir.name}/{rel}", compress_type=kind)
            zf.writestr(f"{run_dir.name}/{MANIFEST}", json.dumps(man, indent=1), compress_type=zipfile.ZIP_DEFLATED)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


# --- unpack --------------------------------------------------------------------------------------
def unpack_zip(path: str | os.PathLike, runs_root: str | os.PathLike, *,
               dest: Callable[[str], Path] | None = None, limits: ArchiveLimits = LIMITS) -> Path:
    """Check an uploaded run zip and move it into ``runs_root``; returns the new run folder.

    ``dest(name)`` picks the folder from the archive's run name (default: ``runs_root/name``,
    with ``-2``, ``-3`` ... on a clash). Any problem raises ``RunArchiveError``, leaving nothing.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > limits.max_archive_bytes:
        raise RunArchiveError(f"the run zip is {_mb(size)}, over the {_mb(limits.max_archive_bytes)} limit")
    count = _zip_entry_count(path)
    if count is None or count > limits.max_entries:
        raise RunArchiveError("not a run zip: unreadable" if count is None else
                              f"the zip has {count} entries, over the {limits.max_entries} limit")
    try:
        zf = zipfile.ZipFile(path)
        infos = zf.infolist()
    except Exception as exc:  # zipfile raises assorted types on hostile bytes
        raise RunArchiveError(f"not a readable zip file ({_brief(exc)})") from None
    with zf:
        top, members = _zip_members(infos, limits)
        _room_for(Path(runs_root), sum(i.file_size for i in members.values()), limits)
        with _staging(Path(runs_root)) as stage:
            for rel, info in members.items():
                with zf.open(info) as src:
                    _copy_capped(src, stage / rel, min(info.file_size, _cap(rel, limits)), rel)
            return _accept(stage, top, Path(runs_root), dest, limits)


def _zip_members(infos: list[zipfile.ZipInfo], limits: ArchiveLimits) -> tuple[str, dict[str, zipfile.ZipInfo]]:
    files = [i for i in infos if not i.is_dir() and not any(j in i.filename for j in _JUNK)]
    tops = {i.filename.replace("\\", "/").split("/", 1)[0] for i in files}
    if len(tops) != 1 or not all("/" in i.filename for i in files):
        raise RunArchiveError("not a run zip: everything must sit in one top folder, as Download run gives it")
    top = tops.pop()
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in files:
        name = info.filename.replace("\\", "/")
        rel = name.split("/", 1)[1]
        if name.startswith("/") or ".." in name.split("/") or ":" in name or "\0" in name:
            raise RunArchiveError(f"unsafe path in the run zip: {name}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise RunArchiveError(f"symbolic link in the run zip: {name}")
        if info.flag_bits & 0x1:
            raise RunArchiveError(f"password-protected member in the run zip: {name}")
        if rel != MANIFEST and not RUN_FILE.match(rel):
            raise RunArchiveError(f"unexpected file in the run zip: {name} (a run zip holds only run.json, "
                                  "quality.json, state/, model/, data/*.png and manifest.json)")
        if rel in members:
            raise RunArchiveError(f"the run zip holds {name} twice")
        if info.file_size > _cap(rel, limits):
            raise RunArchiveError(f"{name} is {_mb(info.file_size)}, over the {_mb(_cap(rel, limits))} limit")
        if info.file_size > 2**20 and info.file_size / max(info.compress_size, 1) > limits.max_ratio:
            raise RunArchiveError(f"{name} compresses over {limits.max_ratio:g}:1 (zip bomb?)")
        total += info.file_size
        members[rel] = info
    if total > limits.max_total_bytes:
        raise RunArchiveError(f"the run zip would unpack to {_mb(total)}, over the {_mb(limits.max_total_bytes)} limit")
    return top, members


def _room_for(root: Path, total: int, limits: ArchiveLimits) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(root).free < total + limits.min_free_bytes:
        raise RunArchiveError("the server's disk is nearly full; try again later")


def _copy_capped(src, target: Path, cap: int, rel: str) -> None:
    """Stream at most ``cap`` bytes into ``target``; a member longer than it said is refused."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with target.open("xb") as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                written += len(chunk)
                if written > cap:
                    raise RunArchiveError(f"{rel} is larger than its header says (over {_mb(cap)})")
                out.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, RunArchiveError):
            raise
        raise RunArchiveError(f"{rel} is damaged ({_brief(exc)})") from None


class _staging:
    """A hidden folder under the runs folder (never listed: its name is not a run name),
    removed unless ``_accept`` moved it into place."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        for old in root.glob(".import-*"):  # left by a process killed mid-import
            try:
                if time.time() - old.stat().st_mtime > STAGING_TTL_S:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                continue
        self.path = root / f".import-{secrets.token_hex(6)}"

    def __enter__(self) -> Path:
        self.path.mkdir()
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _accept(stage: Path, name: str, root: Path, dest: Callable[[str], Path] | None, limits: ArchiveLimits) -> Path:
    check_manifest(stage)
    missing = [r for r in REQUIRED if not (stage / r).is_file()]
    if missing:
        raise RunArchiveError(f"not a resumable run: it lacks {', '.join(missing)}")
    from .runcheck import check_run  # the content checks: configs, tensors, images

    check_run(stage, max_steps=limits.max_steps)
    (stage / MANIFEST).unlink()
    target = (dest or (lambda n: _free(root, n)))(_clean_name(name))
    os.replace(stage, target)
    return target


def check_manifest(stage: Path) -> None:
    """Every file listed with its sha256 and size, nothing more, nothing less."""
    try:
        man = json.loads((stage / MANIFEST).read_text())
        listed = man["files"]
        if man.get("format") != FORMAT or not isinstance(listed, dict):
            raise ValueError
    except FileNotFoundError:
        raise RunArchiveError("the run zip has no manifest.json, so it was not made by Download run") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise RunArchiveError("the run zip's manifest.json is not a msgen run manifest") from None
    present = {str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file()} - {MANIFEST}
    for rel in sorted(set(listed) | present):
        entry = listed.get(rel)
        if rel not in present:
            raise RunArchiveError(f"the run was changed after it was packed: {rel} is missing")
        if not isinstance(entry, dict) or entry.get("size") != (stage / rel).stat().st_size or \
                entry.get("sha256") != _sha256(stage / rel):
            raise RunArchiveError(f"the run was changed after it was packed: {rel} does not match its manifest")


def _free(root: Path, name: str) -> Path:
    candidate, i = name, 1
    while (root / candidate).exists():
        i += 1
        candidate = f"{name[:58]}-{i}"
    return root / candidate


def _clean_name(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("._-")[:64]
    return clean if NAME.match(clean) else "imported-run"


def _zip_entry_count(path: Path) -> int | None:
    """Entries from the end-of-central-directory record, before zipfile builds its objects."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 22 - 65535))
            tail = fh.read()
    except OSError:
        return None
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    count = struct.unpack("<H", tail[at + 10:at + 12])[0]
    if count == 0xFFFF:  # zip64: the real count is elsewhere; zipfile would parse an unbounded list
        return 2**31
    return count


# --- Hub -----------------------------------------------------------------------------------------
def push_run(run_dir: str | os.PathLike, repo_id: str, *, token: str | None, private: bool = True,
             use_server_login: bool = True) -> str:
    """Upload a run's full state (the archive's files, no zip) to a Hub repo; returns its URL.
    ``use_server_login=False`` (a stranger's request): never HF_TOKEN or a cached login."""
    from huggingface_hub import HfApi

    run_dir = Path(run_dir)
    if not token and not use_server_login:
        raise RunArchiveError("a Hugging Face token is needed to push")
    if not ckpt.REPO_ID.match(repo_id or ""):
        raise RunArchiveError(f"{repo_id!r} is not a Hub repo id of the form owner/name")
    files = run_files(run_dir)
    with tempfile.TemporaryDirectory(prefix="msgen-push-") as tmp:
        stage = Path(tmp)
        for rel in files:  # a frozen copy: training may write a new checkpoint meanwhile
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / rel, stage / rel)
        (stage / MANIFEST).write_text(json.dumps(manifest(stage, files), indent=1))
        api = HfApi(token=token or (None if use_server_login else False))
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(folder_path=str(stage), repo_id=repo_id, commit_message="Upload msgen run (resumable)",
                              delete_patterns=["data/*", "state/*", "model/*", "*.json"])
        except Exception as exc:  # network, auth and HTTP errors all become one clear line
            raise RunArchiveError(f"push to the Hub failed ({type(exc).__name__}): {_brief(exc)}") from None
    return str(url)


def fetch_run(repo_id: str, runs_root: str | os.PathLike, *, token: str | None = None,
              dest: Callable[[str], Path] | None = None, limits: ArchiveLimits = LIMITS,
              use_server_login: bool = True) -> Path:
    """Download a run pushed by ``push_run`` (only the files its manifest lists) and accept it as
    ``unpack_zip`` accepts a zip; returns the new run folder. ``use_server_login=False`` (a
    stranger's request): the caller's token or none, never the server's, which may read private repos."""
    from huggingface_hub import hf_hub_download, snapshot_download

    if not ckpt.REPO_ID.match(repo_id or ""):
        raise RunArchiveError(f"{repo_id!r} is not a Hub repo id of the form owner/name")
    auth = token or (None if use_server_login else False)
    try:
        revision = _hub_revision(repo_id, auth)
        _check_hub_sizes(repo_id, auth, revision, {MANIFEST: limits.max_json_bytes}, limits)
        man_path = Path(hf_hub_download(repo_id, MANIFEST, token=auth, revision=revision, etag_timeout=10))
        if man_path.stat().st_size > limits.max_json_bytes:
            raise RunArchiveError(f"{repo_id}: manifest.json is over the {_mb(limits.max_json_bytes)} limit")
        listed = json.loads(man_path.read_text()).get("files")
        if not isinstance(listed, dict) or len(listed) > limits.max_entries:
            raise ValueError("no file list")
        names = sorted(listed)
        bad = [n for n in names if not isinstance(n, str) or not RUN_FILE.match(n)]
        if bad:
            raise RunArchiveError(f"{repo_id}: unexpected file in the run's manifest: {bad[0]!r}")
        sizes = [listed[n].get("size") if isinstance(listed[n], dict) else None for n in names]
        if not all(isinstance(s, int) and 0 <= s <= _cap(n, limits) for n, s in zip(names, sizes)):
            raise RunArchiveError(f"{repo_id}: a file of the run is over its size limit")
        if sum(sizes) > limits.max_total_bytes:
            raise RunArchiveError(f"{repo_id}: the run is {_mb(sum(sizes))}, over the {_mb(limits.max_total_bytes)} limit")
        # The manifest's sizes are the repo's own claim: the Hub's record of each file is checked too,
        # at the same pinned commit, before anything but the manifest is downloaded.
        _check_hub_sizes(repo_id, auth, revision, {n: _cap(n, limits) for n in names}, limits)
        _room_for(Path(runs_root), 2 * sum(sizes), limits)  # the Hub cache's copy, then the run's
        folder = Path(snapshot_download(repo_id, allow_patterns=names + [MANIFEST], token=auth, revision=revision,
                                        etag_timeout=10))
    except RunArchiveError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise RunArchiveError(f"{repo_id} is not a msgen run (its manifest.json is missing or malformed)") from None
    except Exception as exc:  # offline, missing, private: one clear line
        raise RunArchiveError(f"could not fetch the run {repo_id!r} from the Hub ({type(exc).__name__}): "
                              f"{_brief(exc)}") from None
    with _staging(Path(runs_root)) as stage:
        for rel in names + [MANIFEST]:
            src = folder / rel
            if not src.is_file():
                raise RunArchiveError(f"{repo_id}: {rel} is listed in the manifest but missing")
            with src.open("rb") as fh:  # the Hub cache's links point into its own blob store
                _copy_capped(fh, stage / rel, _cap(rel, limits), rel)
        return _accept(stage, repo_id.split("/", 1)[1], Path(runs_root), dest, limits)


def _hub_revision(repo_id: str, auth) -> str | None:
    """The repo's current commit (downloads are pinned to it), or None when the Hub cannot be asked
    (offline: the local cache serves, and every copy out of it is capped)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return HfApi(token=auth).model_info(repo_id, expand=["sha"], timeout=10).sha
    except RepositoryNotFoundError:
        raise
    except Exception:
        return None


def _check_hub_sizes(repo_id: str, auth, revision: str | None, caps: dict[str, int], limits: ArchiveLimits) -> None:
    """Refuse before downloading when the Hub says a file is over its cap or the run over its total."""
    if revision is None:
        return
    from huggingface_hub import HfApi

    infos = HfApi(token=auth).get_paths_info(repo_id, list(caps), revision=revision)
    total = 0
    for info in infos:
        size = getattr(info, "size", None)
        if isinstance(size, int):
            total += size
            if size > caps.get(getattr(info, "path", ""), 0):
                raise RunArchiveError(f"{repo_id}: {info.path} is {size:,} bytes on the Hub, over its limit")
    if total > limits.max_total_bytes:
        raise RunArchiveError(f"{repo_id}: the run is {_mb(total)} on the Hub, over the {_mb(limits.max_total_bytes)} limit")


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


__all__ = ["ArchiveLimits", "LIMITS", "SHARED_LIMITS", "RunArchiveError", "pack", "unpack_zip", "push_run", "fetch_run", "run_files",
           "check_manifest"]
