"""`pip install .`: what pyproject.toml packages, the `msgen` command, and where an installed
package finds its shipped weights and keeps runs (never in site-packages); the source checkout
keeps weights/ and ./runs."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from msgen import zoo

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_and_the_msgen_command_are_declared():
    setuptools = PYPROJECT["tool"]["setuptools"]
    found = sorted(".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "msgen").rglob("__init__.py"))
    assert sorted(set(setuptools["packages"]) - {"msgen.weights"}) == found
    assert PYPROJECT["project"]["scripts"] == {"msgen": "msgen.__main__:main"}
    dynamic = setuptools["dynamic"]
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}
    assert dynamic["optional-dependencies"]["bench"] == {"file": ["requirements-bench.txt"]}


def test_package_data_holds_every_shipped_model_file_and_example():
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["msgen.weights"]
    wanted = [p.relative_to(ROOT / "weights").as_posix() for p in (ROOT / "weights").rglob("*")
              if p.is_file() and (p.parent.name == "examples" and p.suffix == ".png" or
                                  p.name in ("config.json", "model.safetensors", "README.md", "samples.png"))]
    assert len(wanted) >= 5 * 4 + 8
    assert [w for w in wanted if not any(fnmatch.fnmatch(w, g) for g in globs)] == []


def test_lightweight_gan_is_a_bench_requirement_not_a_test_one():
    names = lambda f: {line.split("==")[0].strip().lower() for line in (ROOT / f).read_text().splitlines()
                       if line.strip() and not line.startswith("#")}
    assert "lightweight-gan" in names("requirements-bench.txt")
    assert "lightweight-gan" not in names("requirements-test.txt") | names("requirements.txt")


def test_a_source_checkout_keeps_weights_and_dot_runs(monkeypatch):
    monkeypatch.delenv("MSGEN_RUNS", raising=False)
    assert zoo.CHECKOUT == ROOT
    assert zoo.default_runs_dir() == Path("runs")
    monkeypatch.setenv("MSGEN_RUNS", "/somewhere/runs")
    assert zoo.default_runs_dir() == Path("/somewhere/runs")
    if not os.environ.get("MSGEN_WEIGHTS"):
        assert zoo.WEIGHTS_DIR == ROOT / "weights"


CHILD = r"""
import json, sys
from msgen import zoo
print(json.dumps({"checkout": zoo.CHECKOUT and str(zoo.CHECKOUT), "runs": str(zoo.RUNS_DIR),
                  "weights": str(zoo.WEIGHTS_DIR), "models": [[e.name, e.source] for e in zoo.list_models()]}))
"""


def test_an_installed_layout_reads_package_weights_and_keeps_runs_in_the_users_data_folder(tmp_path):
    """The package copied as pip lays it out (site-packages/msgen with weights/ inside), imported
    from another folder: shipped models from the package, runs from ~/.local/share/msgen/runs."""
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "msgen", site / "msgen", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "weights" / "sprites32", site / "msgen" / "weights" / "sprites32")
    home, cwd = tmp_path / "home", tmp_path / "elsewhere"
    shutil.copytree(ROOT / "weights" / "fashion32", home / ".local" / "share" / "msgen" / "runs" / "mine" / "model")
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MSGEN_RUNS", "MSGEN_WEIGHTS", "XDG_DATA_HOME")}
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=env | {"PYTHONPATH": str(site), "HOME": str(home)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["checkout"] is None
    assert out["weights"] == str(site / "msgen" / "weights")
    assert out["runs"] == str(home / ".local" / "share" / "msgen" / "runs")
    assert out["models"] == [["sprites32", "shipped"], ["mine", "run"]]
    assert not list(cwd.iterdir())
