"""Export/import: bit-exact round trips, pickles refused, Hub loading through a local cache."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import msgen
from msgen import checkpoint as ckpt
from tests.conftest import make_tiny_model


def test_save_load_round_trip_is_bit_exact(tmp_path):
    path = make_tiny_model(tmp_path / "m", resolution=32, seed=3)
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    from msgen.models import build_generator, make_config

    g1 = msgen.load(path)
    g2 = msgen.load(path)
    z = g1.sample_latents(2, 99)
    assert torch.equal(g1(z).finest, g2(z).finest)
    # Re-export the loaded model: identical pixels again.
    ckpt.save_model(tmp_path / "again", g1)
    g3 = msgen.load(tmp_path / "again")
    for a, b in zip(g1(z).images.values(), g3(z).images.values()):
        assert torch.equal(a, b)


def test_card_and_config_agree(tmp_path):
    path = make_tiny_model(tmp_path / "m", resolution=16)
    cfg = json.loads((path / "config.json").read_text())
    card = (path / "README.md").read_text()
    assert card.startswith("---\nlicense:")
    assert f'"resolution": {cfg["resolution"]}' in card


@pytest.mark.parametrize("name", ["model.pt", "weights.pkl", "pytorch_model.bin", "x.ckpt"])
def test_pickles_are_refused(tmp_path, name):
    bad = tmp_path / name
    bad.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ckpt.CheckpointError, match="pickle"):
        msgen.load(bad)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / name).write_bytes(b"\x80\x04")
    with pytest.raises(ckpt.CheckpointError, match="pickle"):
        msgen.load(folder)


def test_broken_folders_give_clear_errors(tmp_path):
    path = make_tiny_model(tmp_path / "m", resolution=16)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match="not valid JSON"):
        msgen.load(path)
    path2 = make_tiny_model(tmp_path / "m2", resolution=16)
    (path2 / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ckpt.CheckpointError, match="could not be read"):
        msgen.load(path2)
    path3 = make_tiny_model(tmp_path / "m3", resolution=16)
    cfg = json.loads((path3 / "config.json").read_text())
    cfg["resolution"] = 32
    (path3 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ckpt.CheckpointError, match="do not match"):
        msgen.load(path3)
    with pytest.raises(ckpt.CheckpointError, match="no model folder"):
        msgen.load(tmp_path / "missing")


def test_save_is_atomic_and_keeps_old_model_on_failure(tmp_path, monkeypatch):
    path = make_tiny_model(tmp_path / "m", resolution=16, seed=1)
    before = (path / "model.safetensors").read_bytes()
    g = msgen.load(path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", boom)
    with pytest.raises(OSError):
        ckpt.save_model(path, g)
    assert (path / "model.safetensors").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp litter


def test_hub_offline_without_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ckpt.CheckpointError, match="not in the local cache"):
        msgen.load("someone/some-model")


def test_hub_repo_id_loads_from_local_cache(tmp_path, monkeypatch):
    """The real huggingface_hub snapshot code path, fed by a cache laid out as the Hub's."""
    src = make_tiny_model(tmp_path / "m", resolution=16, seed=5)
    cache = tmp_path / "cache"
    repo = cache / "models--someone--tiny"
    commit = "0" * 40
    snap = repo / "snapshots" / commit
    shutil.copytree(src, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    import huggingface_hub.constants as c

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    g = msgen.load("someone/tiny")
    ref = msgen.load(src)
    z = g.sample_latents(1, 0)
    assert torch.equal(g(z).finest, ref(z).finest)


def test_push_to_hub_without_network_fails_clearly_and_keeps_model(tmp_path, monkeypatch):
    path = make_tiny_model(tmp_path / "m", resolution=16)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(ckpt.CheckpointError, match="push to the Hub failed"):
        ckpt.push_to_hub(path, "someone/tiny", token="hf_fake")
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    with pytest.raises(ckpt.CheckpointError, match="owner/name"):
        ckpt.push_to_hub(path, "../evil", token="x")
