"""Untrusted checkpoints and the CLI: every hostile config.json, model.safetensors or run folder is
one clear ``CheckpointError`` before memory is spent, listings survive odd run folders, and CLI
errors are one line with exit status 2.

Memory cases run in a child process under an address-space limit (``RLIMIT_AS``: what importing
torch maps, plus 2 GiB), so a loader that allocates from the file's say-so fails there with a
MemoryError instead of swapping this machine.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import msgen
from msgen import checkpoint as ckpt
from msgen.__main__ import main
from tests.conftest import make_tiny_model

ROOT = Path(__file__).resolve().parent.parent
HEADROOM = 2 * 2**30
TIME_LIMIT_S = 20.0


def tiny(root: Path, name: str = "m", **kw) -> Path:
    return make_tiny_model(root / name, resolution=16, **kw)


def edit_config(path: Path, **fields) -> Path:
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(fields)
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def splice_config(path: Path, field: str, raw: str) -> Path:
    """Set ``field`` to ``raw`` JSON text that json.dumps would not write (a 5001-digit int, NaN)."""
    cfg = json.loads((path / "config.json").read_text())
    cfg[field] = "@@RAW@@"
    (path / "config.json").write_text(json.dumps(cfg).replace('"@@RAW@@"', raw))
    return path


def edit_tensors(path: Path, fn) -> Path:
    tensors = load_file(str(path / "model.safetensors"))
    save_file(fn(tensors), str(path / "model.safetensors"))
    return path


def raw_safetensors(path: Path, header: dict, data: bytes = b"", *, claimed: int | None = None) -> Path:
    blob = json.dumps(header).encode()
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(blob) if claimed is None else claimed) + blob + data)
    return path


def refused(path, match: str) -> str:
    with pytest.raises(ckpt.CheckpointError, match=match) as info:
        msgen.load(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600
    return message


# --- config.json ---------------------------------------------------------------------------------
CONFIG_CASES = {
    "nested 100k deep": (lambda p: (p / "config.json").write_text("[" * 100_000 + "]" * 100_000), "nested 100000 deep"),
    "5001-digit int": (lambda p: splice_config(p, "latent_dim", "9" * 5001), "5001 characters"),
    "dict in an int field": (lambda p: edit_config(p, latent_dim={"a": 1}), "latent_dim must be a whole number, got dict"),
    "bool as int": (lambda p: edit_config(p, channel_max=True), "channel_max must be a whole number, got bool"),
    "float 1e9 in an int field": (lambda p: splice_config(p, "channel_base", "1e9"), "channel_base must be a whole number"),
    "string in an int field": (lambda p: edit_config(p, mapping_layers="3"), "mapping_layers must be a whole number"),
    "NaN literal": (lambda p: splice_config(p, "w_avg_beta", "NaN"), "NaN"),
    "1e999": (lambda p: splice_config(p, "w_avg_beta", "1e999"), "out of range"),
    "out of bounds float": (lambda p: edit_config(p, w_avg_beta=5.0), "w_avg_beta must be between 0.0 and 1.0"),
    "negative width": (lambda p: edit_config(p, channel_max=-4), "channel_max must be between 1 and 2048"),
    "top level a list": (lambda p: (p / "config.json").write_text("[1, 2]"), "JSON object"),
    "over the size cap": (lambda p: edit_config(p, msgen={"description": "x" * 300_000}), "KiB limit"),
    "unknown field": (lambda p: edit_config(p, evil=1), "does not know: evil"),
    "family not a string": (lambda p: edit_config(p, family={"x": 1}), "family"),
    "unknown family": (lambda p: edit_config(p, family="nope"), "unknown model family"),
    "duplicate key": (lambda p: (p / "config.json").write_text('{"family": "msggan", "family": "hvae"}'), "twice"),
    "not UTF-8": (lambda p: (p / "config.json").write_bytes(b'{"family": "\xff"}'), "not UTF-8"),
    "msgen block a list": (lambda p: edit_config(p, msgen=[1, 2]), '"msgen" metadata block must be a JSON object'),
    "msgen title a dict": (lambda p: edit_config(p, msgen={"title": {"a": 1}}), "title must be a string"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_hostile_config_json_is_one_clear_error(tmp_path, case):
    make, match = CONFIG_CASES[case]
    path = tiny(tmp_path)
    make(path)
    refused(path, match)


def test_config_json_that_is_a_device_or_fifo_never_hangs(tmp_path):
    path = tiny(tmp_path)
    (path / "config.json").unlink()
    (path / "config.json").symlink_to("/dev/zero")
    refused(path, "config.json")
    (path / "config.json").unlink()
    os.mkfifo(path / "config.json")
    refused(path, "config.json")
    with pytest.raises(ckpt.CheckpointError, match="not a regular file"):
        ckpt.read_config(path)  # opened without blocking, then refused


def test_every_numeric_field_of_every_family_declares_bounds():
    import dataclasses

    from msgen.models import families

    for family in families().values():
        for f in dataclasses.fields(family.config_cls):
            if f.type in ("int", "float"):
                assert "bounds" in f.metadata, f"{family.name}.{f.name} has no bounds"
        with pytest.raises(ValueError, match="must be between"):
            msgen.models.make_config(family.name, channel_max=10**9)


# --- model.safetensors -----------------------------------------------------------------------------
def _one(name, fn):
    return lambda t: {k: (fn(v) if k == name else v) for k, v in t.items()}


RGB = "generator.to_rgb.0.weight"
WEIGHT_CASES = {
    "all int64": (lambda p: edit_tensors(p, lambda t: {k: v.long() for k, v in t.items()}), "is I64, expected floats"),
    "NaN weight": (lambda p: edit_tensors(p, _one(RGB, lambda v: v.index_fill(0, torch.tensor([0]), float("nan")))),
                   f"tensor {RGB} holds NaN or infinite"),
    "Inf weight": (lambda p: edit_tensors(p, _one(RGB, lambda v: v.index_fill(0, torch.tensor([0]), float("inf")))),
                   f"tensor {RGB} holds NaN or infinite"),
    "shape mismatch": (lambda p: edit_tensors(p, _one(RGB, lambda v: torch.zeros(3, v.shape[1] + 1, 1, 1))),
                       rf"tensor {RGB} has shape \[3, 33, 1, 1\], the config's model needs \[3, 32, 1, 1\]"),
    "config and weights disagree": (lambda p: edit_config(p, w_dim=16), "weights do not match config.json: tensor"),
    "missing tensor": (lambda p: edit_tensors(p, lambda t: {k: v for k, v in t.items() if k != RGB}), f"{RGB} is missing"),
    "extra tensor": (lambda p: edit_tensors(p, lambda t: t | {"generator.evil": torch.zeros(1)}), "'generator.evil' is not part"),
    "part of a discriminator": (lambda p: edit_tensors(p, lambda t: {k: v for k, v in t.items()
                                                                     if k != "discriminator.out.weight"}),
                                "discriminator.out.weight is missing"),
    "garbage": (lambda p: (p / "model.safetensors").write_bytes(b"garbage!" * 4), "header claims .* bytes"),
    "too short": (lambda p: (p / "model.safetensors").write_bytes(b"abc"), "too short"),
    "header length past the file": (lambda p: raw_safetensors(p, {}, claimed=10_000), "claims 10000 bytes but the file has"),
    "huge header length": (lambda p: raw_safetensors(p, {}, claimed=2**62), "the limit is 1048576"),
    "header lying about sizes": (lambda p: raw_safetensors(p, {RGB: {"dtype": "F32", "shape": [2**20, 2**20],
                                                                      "data_offsets": [0, 384]}}, b"\0" * 384),
                                 "could not be read"),
    "offsets past the data": (lambda p: raw_safetensors(p, {RGB: {"dtype": "F32", "shape": [3, 32, 1, 1],
                                                                   "data_offsets": [0, 384]}}, b"\0" * 16),
                              "could not be read"),
    "header nested deep": (lambda p: raw_safetensors(p, {"x": json.loads("[" * 500 + "]" * 500)}), "could not be read"),
}


@pytest.mark.parametrize("case", sorted(WEIGHT_CASES))
def test_hostile_weights_are_one_clear_error(tmp_path, case):
    make, match = WEIGHT_CASES[case]
    path = tiny(tmp_path)
    make(path)
    refused(path, match)


def test_generator_only_export_loads_and_matches(tmp_path):
    path = tiny(tmp_path, seed=4)
    ref = msgen.load(path)
    edit_tensors(path, lambda t: {k: v for k, v in t.items() if k.startswith("generator.")})
    g = msgen.load(path)
    z = g.sample_latents(2, 5)
    assert torch.equal(g(z).finest, ref(z).finest)
    assert ckpt.split_tensors(ckpt.read_model_dir(path)[2], "discriminator.") == {}


@pytest.mark.parametrize("name", ["model.pt", "weights.pkl", "pytorch_model.bin", "x.ckpt", "y.pth"])
def test_pickles_are_still_refused(tmp_path, name):
    folder = tmp_path / "only-pickles"
    folder.mkdir()
    (folder / name).write_bytes(b"\x80\x04cos\nsystem\n")
    refused(folder, "pickle")
    refused(folder / name, "pickle")


# --- memory: refused before allocating, under an address-space limit -------------------------------
CHILD = r"""
import json, resource, sys, time
import msgen
vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
limit = vm + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
out = {}
for path in sys.argv[2:]:
    t = time.perf_counter()
    try:
        msgen.load(path)
        result = "loaded"
    except msgen.CheckpointError as exc:
        result = "refused: " + str(exc)
    except BaseException as exc:
        result = type(exc).__name__ + ": " + str(exc)[:300]
    out[path] = [result, time.perf_counter() - t]
print(json.dumps(out))
"""

MEMORY_CASES = {
    "latent_dim 2**22": (dict(latent_dim=2**22), "latent_dim must be between 1 and 2048"),
    "channels 1e9": (dict(channel_base=10**9, channel_max=10**9), "channel_base must be between"),
    "mapping_layers 1e6": (dict(mapping_layers=10**6), "mapping_layers must be between 1 and 16"),
    "every field at its bound": (dict(resolution=256, latent_dim=2048, w_dim=2048, mapping_layers=16, channel_base=2**16,
                                      channel_max=2048, d_channel_base=2**16, d_channel_max=2048),
                                 "config.json describes a model with .* parameters \\(the limit is 67,108,864\\)"),
    "hvae blocks 1e6": (dict(family="hvae", blocks_per_level=10**6), "blocks_per_level must be between 1 and 16"),
    "hvae z_global 2**30": (dict(family="hvae", z_global=2**30), "z_global must be between 0 and 4096"),
    "header length 2**62": ("header", "the limit is 1048576"),
}


@pytest.fixture(scope="module")
def memory_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory")
    paths = {"honest": tiny(root, "honest")}
    for i, (case, (change, _)) in enumerate(sorted(MEMORY_CASES.items())):
        if change == "header":
            paths[case] = raw_safetensors(tiny(root, f"c{i}"), {}, claimed=2**62)
            continue
        family = change.get("family", "msggan")
        path = make_tiny_model(root / f"c{i}", family=family, resolution=16)
        paths[case] = edit_config(path, **{k: v for k, v in change.items() if k != "family"})
    proc = subprocess.run([sys.executable, "-c", CHILD, str(HEADROOM), *map(str, paths.values())], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    by_path = json.loads(proc.stdout.strip().splitlines()[-1])
    return {case: by_path[str(path)] for case, path in paths.items()}


def test_an_honest_model_loads_under_the_memory_limit(memory_results):
    assert memory_results["honest"][0] == "loaded"


@pytest.mark.parametrize("case", sorted(MEMORY_CASES))
def test_huge_sizes_are_refused_before_allocating(memory_results, case):
    result, seconds = memory_results[case]
    assert result.startswith("refused: "), result
    assert __import__("re").search(MEMORY_CASES[case][1], result), result
    assert seconds < TIME_LIMIT_S


# --- list_models ------------------------------------------------------------------------------------
ODD_RUNS = {
    "msgen-list": lambda p: edit_config(p, msgen=[1]),
    "msgen-str": lambda p: edit_config(p, msgen="x"),
    "msgen-int": lambda p: edit_config(p, msgen=7),
    "dataset-dict": lambda p: edit_config(p, msgen={"dataset_short": {"a": 1}}),
    "config-list": lambda p: (p / "config.json").write_text("[]"),
    "deep": lambda p: (p / "config.json").write_text("[" * 100_000 + "]" * 100_000),
    "huge-resolution": lambda p: splice_config(p, "resolution", "9" * 5001),
    "resolution-dict": lambda p: edit_config(p, resolution={"a": 1}),
    "family-int": lambda p: edit_config(p, family=3),
    "not-utf8": lambda p: (p / "config.json").write_bytes(b"\xff\xfe{"),
}


def test_list_models_skips_odd_run_folders_and_keeps_the_rest(tmp_path, capsys):
    runs = tmp_path / "runs"
    tiny(runs / "good", "model")
    for name, make in ODD_RUNS.items():
        make(tiny(runs / name, "model"))
    names = [e.name for e in msgen.list_models(runs_dir=runs, weights_dir=tmp_path / "none")]
    assert names == ["good"]
    assert main(["models", "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "good" in out and not any(name in out for name in ODD_RUNS)


# --- the CLI ----------------------------------------------------------------------------------------
def _cli(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    return code, err


def _one_line_error(code, err, *needles):
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("argv", [["generate", "--seed", "-1"], ["generate", "--seed", "99999999999"],
                                  ["generate", "--mix-seed", "4294967296"], ["generate", "--seed", "1.5"],
                                  ["eval", "--model", "m", "--data", "d", "--seed", "-1"],
                                  ["train", "--data", "d", "--out", "o", "--seed", "4294967296"]])
def test_cli_refuses_out_of_range_seeds(argv, capsys, tmp_path):
    extra = ["--out", str(tmp_path / "x.png")] if argv[0] == "generate" else []
    _one_line_error(*_cli(argv + extra, capsys), "0 to 4294967295")
    assert not (tmp_path / "x.png").exists()


def test_cli_seed_range_is_the_apis(tmp_path, capsys):
    path = tiny(tmp_path)
    assert msgen.SEED_MAX == 2**32 - 1
    for bad in (-1, 2**32, True):
        with pytest.raises(ValueError, match="seed must be a whole number from 0 to 4294967295"):
            msgen.generate(msgen.load(path), seed=bad)
    assert _cli(["generate", "--model", str(path), "--seed", str(msgen.SEED_MAX), "--out", str(tmp_path / "a.png")],
                capsys)[0] == 0


def test_cli_bounds_upscale(tmp_path, capsys):
    path = tiny(tmp_path)
    out = tmp_path / "x.png"
    _one_line_error(*_cli(["generate", "--model", str(path), "--upscale", "100000", "--out", str(out)], capsys),
                    "2048 px")
    _one_line_error(*_cli(["generate", "--model", str(path), "--upscale", "0", "--out", str(out)], capsys), "from 1 to")
    # Within the argument's range but too big for this grid: refused before the PNG is made.
    _one_line_error(*_cli(["generate", "--model", str(path), "--n", "8", "--upscale", "16", "--out", str(out)], capsys),
                    "at most 2048 px")
    assert not out.exists()
    assert _cli(["generate", "--model", str(path), "--upscale", "128", "--out", str(out)], capsys)[0] == 0
    from PIL import Image

    assert Image.open(out).size == (2048, 2048)


def test_cli_hostile_model_and_unexpected_errors_are_one_line(tmp_path, capsys, monkeypatch):
    path = tiny(tmp_path)
    (path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    _one_line_error(*_cli(["generate", "--model", str(path), "--out", str(tmp_path / "x.png")], capsys), "nested")
    _one_line_error(*_cli(["train", "--data", str(tmp_path), "--family", "msggan", "--out", str(tmp_path / "r"),
                           "--config", "[" * 5000 + "]" * 5000], capsys), "--config is nested")
    _one_line_error(*_cli(["train", "--data", str(tmp_path), "--family", "msggan", "--out", str(tmp_path / "r"),
                           "--config", "[1]"], capsys), "JSON object")
    _one_line_error(*_cli(["train", "--data", str(tmp_path), "--family", "msggan", "--out", str(tmp_path / "r"),
                           "--config", '{"channel_max": 2048, "channel_base": 65536, "w_dim": 2048}'], capsys),
                    "--config describes a model with")
    good = tiny(tmp_path, "good")

    def boom(*a, **k):
        raise TypeError("something\nwent wrong")

    monkeypatch.setattr(msgen, "generate", boom)
    _one_line_error(*_cli(["generate", "--model", str(good), "--out", str(tmp_path / "x.png")], capsys),
                    "unexpected TypeError: something")


def test_real_cli_process_prints_one_line_and_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "msgen", "generate", "--seed", "-1", "--out", str(tmp_path / "x.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "0 to 4294967295" in proc.stderr, proc.stderr


# --- the Hub: sizes checked before anything is downloaded -------------------------------------------
class _FakeApi:
    sizes = {"config.json": 2000, "model.safetensors": 50 * 2**30, "README.md": 2000}

    def __init__(self, *a, **k):
        pass

    def model_info(self, repo_id, **kw):
        return type("Info", (), {"sha": "a" * 40})()

    def get_paths_info(self, repo_id, paths, revision=None, **kw):
        assert revision == "a" * 40
        return [type("RepoFile", (), {"path": p, "size": s})() for p, s in self.sizes.items() if p in paths]


def test_hub_model_too_big_is_refused_before_download(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: calls.append(k) or str(tiny(tmp_path)))
    with pytest.raises(ckpt.CheckpointError, match=r"model.safetensors is 53,687,091,200 bytes \(the limit is"):
        msgen.load("someone/huge")
    assert calls == []
    monkeypatch.setattr(_FakeApi, "sizes", {"config.json": 2000, "model.safetensors": 30_000, "README.md": 2000})
    msgen.load("someone/fine")
    assert calls and calls[0]["revision"] == "a" * 40  # pinned to the commit whose sizes were checked


# --- MsgenModel.from_pretrained: the huggingface_hub mixin's entry point runs every check ---------
HOSTILE_VIA_MIXIN = {
    "config.json a FIFO": (lambda p: ((p / "config.json").unlink(), os.mkfifo(p / "config.json")), "config.json"),
    "config.json nested 100k deep": (CONFIG_CASES["nested 100k deep"][0], "nested 100000 deep"),
    "unknown config field": (CONFIG_CASES["unknown field"][0], "does not know: evil"),
    "5001-digit int": (CONFIG_CASES["5001-digit int"][0], "5001 characters"),
    "extra tensor": WEIGHT_CASES["extra tensor"],
    "header lying about sizes": WEIGHT_CASES["header lying about sizes"],
    "NaN weight": WEIGHT_CASES["NaN weight"],
    "only pickles": (lambda p: ((p / "model.safetensors").unlink(), (p / "pytorch_model.bin").write_bytes(b"\x80\x04")),
                     "pickle"),
}


@pytest.mark.parametrize("where", ["folder", "hub cache"])
@pytest.mark.parametrize("case", sorted(HOSTILE_VIA_MIXIN))
def test_hostile_model_is_refused_through_the_mixin_entry_points(tmp_path, monkeypatch, case, where):
    """The mixin's own from_pretrained would json.load a FIFO (a hang), a 100k-deep config (a
    RecursionError) or an unknown field straight into the constructor; MsgenModel's never does,
    whether given a folder or a repo id served from the Hub cache, and _from_pretrained (the mixin's
    hook) is checked the same way."""
    import huggingface_hub.constants as c

    make, match = HOSTILE_VIA_MIXIN[case]
    path = tiny(tmp_path)
    make(path)
    target = str(path)
    if where == "hub cache":
        repo = tmp_path / "cache" / "models--someone--evil"
        snap = repo / "snapshots" / ("e" * 40)
        snap.parent.mkdir(parents=True)
        os.replace(path, snap)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("e" * 40)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "cache"))
        target = "someone/evil"
    with pytest.raises(ckpt.CheckpointError, match=match):
        ckpt.MsgenModel.from_pretrained(target)
    with pytest.raises(ckpt.CheckpointError, match=match):
        ckpt.MsgenModel._from_pretrained(model_id=target, revision=None, cache_dir=None, force_download=False,
                                         local_files_only=False, token=None)


def test_the_mixins_unchecked_config_read_is_never_used(tmp_path, monkeypatch):
    import huggingface_hub.hub_mixin as hub_mixin

    def unchecked(*a, **k):
        raise AssertionError("huggingface_hub's json.load of config.json ran")

    monkeypatch.setattr(hub_mixin.json, "load", unchecked)
    monkeypatch.setattr(hub_mixin, "hf_hub_download", unchecked)
    path = tiny(tmp_path, seed=2)
    model = ckpt.MsgenModel.from_pretrained(path)
    z = model.generator.sample_latents(1, 0)
    assert torch.equal(model.generator(z).finest, msgen.load(path)(z).finest)
