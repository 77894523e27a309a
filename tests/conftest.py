"""Shared fixtures: tiny random checkpoints, a real app server on a free loopback port, a browser."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
ARTIFACTS = Path(os.environ.get("MSGEN_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = "/usr/bin/chromium"

torch.set_num_threads(min(2, torch.get_num_threads()))
# The pages serve some families in bfloat16 where the CPU multiplies it natively (msgen.device):
# off for the suite, so that exact-pixel checks mean the same on every CI machine; the tests of
# that path (test_ui_generate.py) turn it on themselves. App servers the tests start inherit it.
os.environ["MSGEN_CPU_BF16"] = "0"


def need_dataset(name: str) -> None:
    """Skip, naming the package, when a data set's Debian package is missing; inside CI, which
    installs the packages, go on so that the test fails instead."""
    from msgen.datasets import DATASETS, install_command

    info = DATASETS[name]
    if not Path(info.source).exists() and not IN_CI:
        pytest.skip(f"{info.title} not installed ({install_command(info)})")


def load_app_module():
    """The root app.py, by path: bench/app.py must never shadow it whatever sys.path holds."""
    import importlib.util
    import sys

    if "msgen_root_app" not in sys.modules:
        spec = importlib.util.spec_from_file_location("msgen_root_app", Path(__file__).resolve().parent.parent / "app.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["msgen_root_app"] = module
        spec.loader.exec_module(module)
    return sys.modules["msgen_root_app"]


def wait_for(predicate, timeout: float = 60.0, every: float = 0.2):
    """Poll ``predicate`` until it returns something truthy (browser tests); fail after ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def launch_options(shared: bool) -> dict:
    from msgen.ui.server import launch_options as options

    return options(shared)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tiny_model(out: Path, *, family: str = "msggan", resolution: int = 16, seed: int = 0, **overrides) -> Path:
    """A small randomly initialised exported model (tests must not depend on trained weights)."""
    from msgen.checkpoint import save_model
    from msgen.models import build_discriminator, build_generator, make_config

    small = {"msggan": dict(channel_base=256, channel_max=32, d_channel_base=256, d_channel_max=32, latent_dim=32, w_dim=32),
             "hvae": dict(channel_base=256, channel_max=32, z_channels=4)}
    cfg = make_config(family, resolution=resolution, **(small.get(family, {}) | overrides))
    torch.manual_seed(seed)
    g = build_generator(cfg).eval()
    d = build_discriminator(cfg)
    meta = {"title": out.name, "dataset": "random init (tests)", "dataset_short": "test"}
    return save_model(out, g, discriminator=d, meta=meta)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A weights folder with tiny16 and tiny32 msggan models and a tinyvae16 hvae model."""
    root = tmp_path_factory.mktemp("weights")
    make_tiny_model(root / "tiny16", resolution=16, seed=1)
    make_tiny_model(root / "tiny32", resolution=32, seed=2)
    make_tiny_model(root / "tinyvae16", family="hvae", resolution=16, seed=3)
    return root


def serve_app(runs_dir: Path, *, shared: bool, weights_dir: Path | None = None):
    """The real app (app.build_app) served on a free loopback port with the launch options of
    `python app.py`; returns (url ending in "/", demo). The caller closes it."""
    demo = load_app_module().build_app(runs_dir=runs_dir, shared=shared, weights_dir=weights_dir)
    port = free_port()
    demo.queue(default_concurrency_limit=8).launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
        **launch_options(shared),
    )
    return f"http://127.0.0.1:{port}/", demo


@pytest.fixture(scope="session")
def app_server(tiny_weights, tmp_path_factory):
    """The real app served locally (not shared) with tiny weights; yields (url, demo)."""
    url, demo = serve_app(tmp_path_factory.mktemp("runs"), shared=False, weights_dir=tiny_weights)
    yield url, demo
    demo.close()


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium through playwright. Skips outside CI when it is missing; fails in CI."""
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing in CI: .ci/run must install Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium); browser tests skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def fixture_images() -> Path:
    return FIXTURES / "images"


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def pixels(picture) -> np.ndarray:
    """The RGB pixels of a picture: a data URI the handlers returned, a file they wrote, or PIL."""
    from PIL import Image

    from msgen import render

    if isinstance(picture, Image.Image):
        return np.asarray(picture.convert("RGB"))
    if str(picture).startswith("data:"):
        return np.asarray(render.from_data_uri(picture).convert("RGB"))
    with Image.open(picture) as im:
        return np.asarray(im.convert("RGB"))


def hub_cache(cache: Path, repo_id: str, files: Path, commit: str = "1" * 40, *, main: bool = True) -> None:
    """``files`` laid out in ``cache`` as huggingface_hub lays out a downloaded snapshot of ``repo_id``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(files, repo / "snapshots" / commit)
    if main:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)


def offline_hub(monkeypatch, cache: Path) -> None:
    """huggingface_hub offline, reading ``cache``: the real snapshot code without a network."""
    import huggingface_hub.constants as c

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
