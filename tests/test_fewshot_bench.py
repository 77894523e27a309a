"""Smoke test for bench/fewshot.py: two fine-tune steps of the shipped 32 px base on 14 Tango icons,
through the page's job code, then every figure beside its real-vs-real floor, the grids and the JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import need_dataset

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    sys.path.append(str(ROOT / "bench"))  # appended: bench/app.py must not shadow the root app.py
    spec = importlib.util.spec_from_file_location("bench_fewshot", ROOT / "bench" / "fewshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_step_fine_tune_prints_every_figure_beside_its_floor(tmp_path, capsys):
    need_dataset("tango")
    if not (ROOT / "weights" / "fashion32" / "model.safetensors").is_file():
        pytest.skip("the shipped fashion32 base is not in weights/")
    bench = _bench()
    bench.main(["--out", str(tmp_path), "--sets", "tango", "--sizes", "14", "--steps", "2", "--threads", "1"])
    out = capsys.readouterr().out
    assert "| tango-14 real vs real |" in out and "| tango-14/default/2 |" in out
    results = json.loads((tmp_path / "results.json").read_text())
    run, floor = results["tango-14/default/2"], results["tango-14/floor"]
    for r in (run, floor):
        assert {"precision", "recall", "density", "coverage", "near_duplicates", "fid_efflite0", "kid_efflite0"} <= set(r)
        assert set(r["swd"]) == {"32", "16", "8", "mean"}
        assert 0 <= r["coverage"] <= 1 and 0 <= r["near_duplicates"] <= 1
    assert run["timing"]["steps"] == 2 and run["timing"]["threads"] == 1 and run["timing"]["wall_s"] > 0
    assert (tmp_path / "tango-14-default-2.png").is_file() and (tmp_path / "tango-14-real.png").is_file()
    # A second call reuses the finished run instead of training again.
    bench.main(["--out", str(tmp_path), "--sets", "tango", "--sizes", "14", "--steps", "2", "--threads", "1"])
    assert json.loads((tmp_path / "results.json").read_text())["tango-14/default/2"]["timing"] == run["timing"]
    capsys.readouterr()
    bench.main(["--out", str(tmp_path), "--summary"])
    assert "| default/2 | tango-14 |" in capsys.readouterr().out
