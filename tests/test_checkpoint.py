"""Export/import: bit-exact round trips, pickles refused, Hub loading through a local cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import msgen
from msgen import checkpoint as ckpt
from tests.conftest import hub_cache, make_tiny_model, offline_hub


def test_save_load_round_trip_is_bit_exact(tmp_path):
    path = make_tiny_model(tmp_path / "m", resolution=32, seed=3)
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
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
    hub_cache(cache, "someone/tiny", src, "0" * 40)
    offline_hub(monkeypatch, cache)
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


# --- huggingface_hub's ModelHubMixin: the real save / push / from_pretrained code on local folders --
def test_msgen_model_is_the_hub_mixin_and_round_trips_generator_and_discriminator(tmp_path):
    from huggingface_hub import ModelHubMixin

    src = make_tiny_model(tmp_path / "m", resolution=16, seed=6)
    model = ckpt.MsgenModel.from_pretrained(src)
    assert isinstance(model, ModelHubMixin) and model.discriminator is not None and model.meta["title"] == "m"
    model.save_pretrained(tmp_path / "again")
    again = ckpt.MsgenModel.from_pretrained(tmp_path / "again")
    for a, b in ((model, again), (model.generator, again.generator), (model.discriminator, again.discriminator)):
        assert a.state_dict().keys() == b.state_dict().keys()
        assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == json.loads((src / "config.json").read_text())
    assert (tmp_path / "again" / "README.md").read_text() == (src / "README.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # swapped in, no temp folders left
    gen_only = ckpt.MsgenModel.from_pretrained(src, discriminator=False)
    assert gen_only.discriminator is None


def test_push_to_hub_goes_through_the_mixin_and_what_it_uploads_loads_by_repo_id(tmp_path, monkeypatch):
    """ckpt.push_to_hub -> MsgenModel.push_to_hub (the mixin's: create_repo, save_pretrained into a
    temporary folder, upload_folder); only the HTTP calls are stood in for. The uploaded files, laid
    out as the Hub cache, then load by repo id through the real snapshot_download."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import CommitInfo, RepoUrl

    src = make_tiny_model(tmp_path / "m", resolution=16, seed=7)
    (src / "samples.png").write_bytes(b"\x89PNG not really")
    (src / "stray.pkl").write_bytes(b"\x80\x04")  # never uploaded
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    remote, calls = tmp_path / "remote", []

    def create_repo(self, repo_id, **kw):
        calls.append(("create_repo", self.token, repo_id, kw.get("private")))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, commit_message=None, **kw):
        calls.append(("upload_folder", self.token, repo_id, commit_message))
        from huggingface_hub.utils import filter_repo_objects

        names = [p.name for p in Path(folder_path).iterdir()]
        remote.mkdir()
        for name in filter_repo_objects(names, allow_patterns=allow_patterns):
            shutil.copy2(Path(folder_path) / name, remote / name)
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{'1' * 40}", commit_message="",
                          commit_description="", oid="1" * 40)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    url = ckpt.push_to_hub(src, "you/tiny", token="hf_visitor", use_server_login=False)
    assert url == "https://huggingface.co/you/tiny"
    assert calls == [("create_repo", "hf_visitor", "you/tiny", True),
                     ("upload_folder", "hf_visitor", "you/tiny", "Upload msgen model")]
    assert sorted(p.name for p in remote.iterdir()) == ["README.md", "config.json", "model.safetensors", "samples.png"]
    assert (remote / "README.md").read_bytes() == before["README.md"]  # the card as it is on disk
    assert (remote / "samples.png").read_bytes() == before["samples.png"]
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # the local folder is untouched

    hub_cache(tmp_path / "cache", "you/tiny", remote, "1" * 40)
    offline_hub(monkeypatch, tmp_path / "cache")
    g, ref = msgen.load("you/tiny"), msgen.load(src)
    z = g.sample_latents(2, 3)
    assert torch.equal(g(z).finest, ref(z).finest)
    pulled = ckpt.MsgenModel.from_pretrained("you/tiny")
    assert torch.equal(pulled.discriminator.state_dict()["out.weight"],
                       ckpt.MsgenModel.from_pretrained(src).discriminator.state_dict()["out.weight"])


def test_from_pretrained_revision_picks_that_commit_from_the_cache(tmp_path, monkeypatch):
    old = make_tiny_model(tmp_path / "old", resolution=16, seed=1)
    new = make_tiny_model(tmp_path / "new", resolution=16, seed=2)
    cache = tmp_path / "cache"
    hub_cache(cache, "someone/tiny", new, "b" * 40)
    hub_cache(cache, "someone/tiny", old, "a" * 40, main=False)
    offline_hub(monkeypatch, cache)
    z = msgen.load(old).sample_latents(1, 0)
    for folder, model in ((old, ckpt.MsgenModel.from_pretrained("someone/tiny", revision="a" * 40)),
                          (new, ckpt.MsgenModel.from_pretrained("someone/tiny"))):
        assert torch.equal(model.generator(z).finest, msgen.load(folder)(z).finest)
    with pytest.raises(ckpt.CheckpointError, match="not in the local cache"):
        ckpt.MsgenModel.from_pretrained("someone/tiny", revision="c" * 40)
