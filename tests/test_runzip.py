"""Run archives: download -> upload -> resume continues a run bit for bit; tampered, forged and
hostile zips are refused with a clear message and leave nothing behind; the Hub path round
trips through a local Hub-layout folder (no network)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from msgen import runzip
from msgen.data import load_image_set
from msgen.models import config_from_dict, make_config
from msgen.train import Trainer, TrainOptions, resume_options
from msgen.ui.runs import write_data
from tests.conftest import hub_cache, offline_hub
from tests.test_models import TINY


def opts(steps):
    return TrainOptions(steps=steps, batch_size=4, sample_every=2, checkpoint_every=2, device="cpu", seed=1)


def make_run(root: Path, name: str, steps: int) -> Path:
    g = torch.Generator().manual_seed(0)
    run = root / name
    data = write_data(run, torch.rand(6, 3, 16, 16, generator=g) * 2 - 1, [f"p{i}.png" for i in range(6)])
    Trainer(images=load_image_set(data, 16).images, run_dir=run, config=make_config("msggan", resolution=16, **TINY),
            options=opts(steps), meta={"title": name}).train()
    return run


def resume(run: Path, steps: int) -> Trainer:
    """Continue a run from its own folder only, as the Train tab does (msgen.ui.runs.resume_spec)."""
    info = json.loads((run / "run.json").read_text())
    t = Trainer(images=load_image_set(run / "data", 16).images, run_dir=run, config=config_from_dict(info["config"]),
                options=resume_options(run, steps=steps), meta=info["meta"])
    t.train()
    return t


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("runzip")
    straight = make_run(root, "straight", 6)
    half = make_run(root, "half", 3)
    return root, straight, runzip.pack(half, root / "dl" / "half.zip")


def rewrite(src: Path, dst: Path, change) -> Path:
    """A copy of the zip with ``change(name, data) -> (name, data) | None`` applied to each member."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            out = change(info.filename, zin.read(info))
            if out is not None:
                zout.writestr(out[0], out[1])
    return dst


def test_download_upload_resume_matches_an_uninterrupted_run(packed, tmp_path):
    root, straight, archive = packed
    names = zipfile.ZipFile(archive).namelist()
    assert "half/state/state.safetensors" in names and "half/manifest.json" in names
    assert any(n.startswith("half/data/") for n in names) and "half/model/README.md" not in names
    run = runzip.unpack_zip(archive, tmp_path / "runs")
    assert run == tmp_path / "runs" / "half" and not (run / "manifest.json").exists()
    assert (run / "model" / "README.md").is_file()
    assert json.loads((run / "state" / "state.json").read_text())["step"] == 3
    t = resume(run, 6)
    assert t.step == 6 and json.loads((run / "run.json").read_text())["resumed"] is True
    a, b = load_file(str(straight / "state" / "state.safetensors")), load_file(str(run / "state" / "state.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # weights, EMA, Adam, RNG
    again = runzip.unpack_zip(archive, tmp_path / "runs")  # a second upload never overwrites the first
    assert again.name == "half-2"


def test_tampered_zip_is_refused_clearly_and_leaves_nothing(packed, tmp_path):
    _, _, archive = packed

    def flip(name, data):
        if name.endswith("data/00002_p2.png"):
            data = data[:-20] + bytes(20)
        return name, data

    bad = rewrite(archive, tmp_path / "t.zip", flip)
    with pytest.raises(runzip.RunArchiveError, match="changed after it was packed: data/00002_p2.png"):
        runzip.unpack_zip(bad, tmp_path / "runs")
    dropped = rewrite(archive, tmp_path / "d.zip", lambda n, d: None if n.endswith("00001_p1.png") else (n, d))
    with pytest.raises(runzip.RunArchiveError, match="00001_p1.png is missing"):
        runzip.unpack_zip(dropped, tmp_path / "runs")
    no_manifest = rewrite(archive, tmp_path / "m.zip", lambda n, d: None if n.endswith("manifest.json") else (n, d))
    with pytest.raises(runzip.RunArchiveError, match="no manifest.json"):
        runzip.unpack_zip(no_manifest, tmp_path / "runs")
    assert list((tmp_path / "runs").iterdir()) == []  # no run, no staging folder


@pytest.mark.parametrize("member, message", [
    ("half/model/evil.pkl", "unexpected file"),
    ("half/state/state.pt", "unexpected file"),
    ("half/../escape.png", "unsafe path"),
    ("/etc/run.json", "one top folder|unsafe path"),
    ("other/run.json", "one top folder"),
])
def test_hostile_members_are_refused(packed, tmp_path, member, message):
    _, _, archive = packed
    bad = tmp_path / "bad.zip"
    shutil.copy(archive, bad)
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr(member, b"\x80\x04 not for loading")
    with pytest.raises(runzip.RunArchiveError, match=message):
        runzip.unpack_zip(bad, tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def _forge(archive: Path, tmp_path: Path, rel: str, new: bytes | None) -> Path:
    """Replace (or drop) one file and rewrite the manifest to match: integrity holds, so the content
    checks must catch it."""
    with zipfile.ZipFile(archive) as zf:
        top = zf.namelist()[0].split("/")[0]
        files = {n.split("/", 1)[1]: zf.read(n) for n in zf.namelist()}
    if new is None:
        del files[rel]
    else:
        files[rel] = new
    import hashlib

    files["manifest.json"] = json.dumps({"format": runzip.FORMAT, "files": {
        k: {"sha256": hashlib.sha256(v).hexdigest(), "size": len(v)} for k, v in files.items() if k != "manifest.json"}}).encode()
    out = tmp_path / "forged.zip"
    with zipfile.ZipFile(out, "w") as zf:
        for k, v in files.items():
            zf.writestr(f"{top}/{k}", v)
    return out


def test_forged_zip_with_a_matching_manifest_is_checked_against_its_config(packed, tmp_path):
    _, _, archive = packed
    with zipfile.ZipFile(archive) as zf:
        state = load_file(_tmp_state(zf, tmp_path))
        run_json = json.loads(zf.read("half/run.json"))
    key = next(k for k in state if k.startswith("generator.") and state[k].ndim == 4)
    state[key] = torch.zeros(1, 1, 1, 1)
    save_file(state, str(tmp_path / "s.safetensors"))
    forged = _forge(archive, tmp_path, "state/state.safetensors", (tmp_path / "s.safetensors").read_bytes())
    with pytest.raises(runzip.RunArchiveError, match="wrong shape"):
        runzip.unpack_zip(forged, tmp_path / "runs")
    run_json["config"]["evil"] = 1
    forged = _forge(archive, tmp_path, "run.json", json.dumps(run_json).encode())
    with pytest.raises(runzip.RunArchiveError, match="does not know: evil"):
        runzip.unpack_zip(forged, tmp_path / "runs")
    forged = _forge(archive, tmp_path, "data/00000_p0.png", b"<html>not a png</html>")
    with pytest.raises(runzip.RunArchiveError, match="not a readable PNG"):
        runzip.unpack_zip(forged, tmp_path / "runs")
    forged = _forge(archive, tmp_path, "state/state.safetensors", None)
    with pytest.raises(runzip.RunArchiveError, match="lacks state/state.safetensors"):
        runzip.unpack_zip(forged, tmp_path / "runs")
    assert list((tmp_path / "runs").iterdir()) == []


def _tmp_state(zf: zipfile.ZipFile, tmp_path: Path) -> str:
    path = tmp_path / "orig.safetensors"
    path.write_bytes(zf.read("half/state/state.safetensors"))
    return str(path)


def test_not_a_zip_and_oversized_archives(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 but nothing more")
    with pytest.raises(runzip.RunArchiveError, match="not a run zip"):
        runzip.unpack_zip(junk, tmp_path / "runs")
    with pytest.raises(runzip.RunArchiveError, match="over the"):
        runzip.unpack_zip(junk, tmp_path / "runs", limits=runzip.ArchiveLimits(max_archive_bytes=4))


def test_hub_push_then_resume_from_the_repo(packed, tmp_path, monkeypatch):
    root, straight, _ = packed
    half = root / "half-hub"
    if not half.exists():
        shutil.copytree(root / "half", half)
    pushed = {}
    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, folder_path, repo_id, delete_patterns=None, **kw):
        pushed["files"] = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
        shutil.copytree(folder_path, tmp_path / "pushed")
        pushed["delete"] = delete_patterns

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    url = runzip.push_run(half, "someone/my-run", token="hf_fake")
    assert url.endswith("someone/my-run") and "manifest.json" in pushed["files"] and "data/*" in pushed["delete"]
    assert "state/state.safetensors" in pushed["files"]
    (tmp_path / "pushed" / "extra.bin").write_bytes(b"\x80\x04")  # never listed, never downloaded
    hub_cache(tmp_path / "cache", "someone/my-run", tmp_path / "pushed")
    offline_hub(monkeypatch, tmp_path / "cache")
    run = runzip.fetch_run("someone/my-run", tmp_path / "runs")
    assert run.name == "my-run" and not (run / "extra.bin").exists()
    resume(run, 6)
    a, b = load_file(str(straight / "state" / "state.safetensors")), load_file(str(run / "state" / "state.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_hub_errors_are_one_clear_line(packed, tmp_path, monkeypatch):
    root, _, _ = packed
    offline_hub(monkeypatch, tmp_path / "cache")
    with pytest.raises(runzip.RunArchiveError, match="could not fetch the run 'someone/missing'"):
        runzip.fetch_run("someone/missing", tmp_path / "runs")
    with pytest.raises(runzip.RunArchiveError, match="owner/name"):
        runzip.fetch_run("../etc", tmp_path / "runs")
    with pytest.raises(runzip.RunArchiveError, match="push to the Hub failed"):
        runzip.push_run(root / "half", "someone/run", token="hf_fake")


def test_an_import_never_fills_the_disk(packed, tmp_path, monkeypatch):
    _, _, archive = packed
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(runzip.shutil, "disk_usage", lambda path: usage(2**31, 2**31 - 2**29, 2**29))
    with pytest.raises(runzip.RunArchiveError, match="disk is nearly full"):
        runzip.unpack_zip(archive, tmp_path / "runs")
    assert list((tmp_path / "runs").iterdir()) == []
    with pytest.raises(runzip.RunArchiveError, match="over the 1 MB limit"):
        runzip.unpack_zip(archive, tmp_path / "runs", limits=runzip.ArchiveLimits(max_archive_bytes=2**20))


def test_a_hub_run_whose_files_are_larger_than_its_manifest_says_is_refused_before_download(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import huggingface_hub
    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "model_info", lambda self, repo_id, **kw: SimpleNamespace(sha="a" * 40))
    monkeypatch.setattr(HfApi, "get_paths_info", lambda self, repo_id, paths, **kw: [
        SimpleNamespace(path=p, size=50 * 2**30 if p != "manifest.json" else 100) for p in paths])
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"files": {"model/model.safetensors": {"size": 10, "sha256": "x"}}}')
    downloads = []

    def fake_download(repo_id, filename, **kw):
        downloads.append(filename)
        assert kw.get("revision") == "a" * 40  # pinned to the checked commit
        return str(manifest)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: downloads.append("snapshot"))
    with pytest.raises(runzip.RunArchiveError, match="bytes on the Hub, over its limit"):
        runzip.fetch_run("someone/liar", tmp_path / "runs")
    assert downloads == ["manifest.json"]  # the 50 GB file was never asked for
