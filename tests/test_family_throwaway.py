"""A family is one file: a made-up family written into ``msgen/models/`` shows up everywhere.

The test writes a tiny family module (defined in the string below, copying nothing) into the
package, re-scans the registry and finds the family in the registry, the CLI (``train --help``
and ``models``), the Train tab's family choices and, once a model of it is saved in a runs
folder, the model lists of the Generate tab; then it runs the whole family contract on it. No
other file changes. The module is removed afterwards and the registry re-scanned.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import torch

from msgen import models

ROOT = Path(__file__).resolve().parent.parent
SOURCE = '''
"""A throwaway family made up by tests/test_family_throwaway.py: one linear layer per level."""

import time
from dataclasses import dataclass

import torch
from torch import nn

from . import Family, MultiScaleOutput, UIHints, bounded, check_fields, check_generate_args, check_options, option
from . import register, seeded_normal

time.sleep(SLOW)  # a slow import: a registry read meanwhile must wait for it


@dataclass(frozen=True)
class ToyConfig:
    family: str = "NAME"
    resolution: int = bounded(16, 8, 64)  # finest level
    latent_dim: int = bounded(8, 1, 64)  # z

    def __post_init__(self):
        check_fields(self)

    @property
    def levels(self):
        return tuple(2**i for i in range(2, self.resolution.bit_length()))


class ToyGenerator(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config, self.levels = config, config.levels
        self.heads = nn.ModuleList(nn.Linear(config.latent_dim, 3 * l * l) for l in self.levels)

    def sample_latents(self, n, seed):
        return seeded_normal((n, self.config.latent_dim), seed)

    def granularity_modules(self):
        return dict(zip(self.levels, self.heads))

    def forward(self, latents, *, upto=None, truncation=0.5, mix=None):
        upto = check_generate_args(self, upto, truncation, mix)
        images = {}
        for lvl, head in zip(self.levels, self.heads):
            z = mix[0] if mix is not None and lvl >= mix[1] else latents
            images[lvl] = torch.tanh(head(z * truncation)).view(-1, 3, lvl, lvl)
            if lvl == upto:
                break
        return MultiScaleOutput(images=images)


@dataclass(frozen=True)
class ToyOptions:
    pixel_weight: float = option(1.0, "weight of the pixel loss", lo=0.0, hi=10.0, label="Pixel loss weight")

    def __post_init__(self):
        check_options(self)


class ToyRecipe:
    def __init__(self, generator, discriminator, options):
        self.G, self.opt = generator, options.for_family("NAME").family
        self.modules = {"generator": generator}
        self.optimizers = {"generator": torch.optim.Adam(generator.parameters(), lr=options.lr)}

    def step(self, real, step, gen):
        z = torch.randn(real.shape[0], self.G.config.latent_dim, generator=gen)
        loss = self.opt.pixel_weight * (self.G(z).finest - real).pow(2).mean()
        self.optimizers["generator"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["generator"].step()
        return {"loss": loss.item()}


register(Family(name="NAME", config_cls=ToyConfig, generator_cls=ToyGenerator, recipe_cls=ToyRecipe,
                options_cls=ToyOptions, description="a throwaway test family",
                ui=UIHints(truncation_range=(0.0, 1.0), default_truncation=0.5)))
'''


@pytest.fixture
def toy(request):
    """(family name, module path): the module written into msgen/models/, removed afterwards."""
    name = f"toy{uuid.uuid4().hex[:8]}"
    path = ROOT / "msgen" / "models" / f"{name}.py"
    slow = getattr(request, "param", 0.0)
    path.write_text(SOURCE.replace("NAME", name).replace("SLOW", str(slow)))
    try:
        yield name, path
    finally:
        path.unlink(missing_ok=True)
        for cached in (path.parent / "__pycache__").glob(f"{name}.*"):
            cached.unlink(missing_ok=True)
        models.discover(refresh=True)
        assert name not in models.families()


def test_a_new_family_file_is_found_everywhere(toy, tmp_path):
    from msgen.checkpoint import save_model
    from msgen.models import build_generator, make_config
    from msgen.ui import common
    from msgen.ui import generate as G
    from msgen.ui import train as T
    from msgen.ui import train_family
    from msgen.zoo import list_models

    name, _path = toy
    assert name not in models.FAMILIES  # not there before the re-scan
    models.discover(refresh=True)
    assert name in models.families() and models.get_family(name).description == "a throwaway test family"
    assert name in T.families() and f"scratch:{name}" in [v for _l, v in T.base_choices(common.AppContext(
        runs_dir=tmp_path / "none", weights_dir=tmp_path / "empty"), None)]
    assert [f.name for f in train_family.shown_fields(name)] == ["pixel_weight"]
    # A model of the family in a runs folder: listed, and offered by the Generate tab.
    runs = tmp_path / "runs"
    torch.manual_seed(0)
    save_model(runs / "toyrun" / "model", build_generator(make_config(name)), meta={"dataset_short": "noise"})
    assert [(e.name, e.family) for e in list_models(runs_dir=runs, weights_dir=tmp_path / "empty")] == [("toyrun", name)]
    ctx = common.AppContext(runs_dir=runs, weights_dir=tmp_path / "empty")
    assert "toyrun" in [v for _l, v in G.model_choices(ctx, None)]
    assert G.truncation_of(name) == (0.5, models.UIHints().truncation_label)
    # The CLI: a family choice with its own flag, and the model in `models`.
    env = {**os.environ, "MSGEN_WEIGHTS": str(tmp_path / "empty")}
    help_text = subprocess.run([sys.executable, "-m", "msgen", "train", "--help"], capture_output=True, text=True,
                               cwd=ROOT, env=env, timeout=300).stdout
    assert name in help_text and "--pixel-weight" in help_text
    listed = subprocess.run([sys.executable, "-m", "msgen", "models", "--runs", str(runs)], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=300).stdout
    assert "toyrun" in listed and name in listed


def test_the_contract_suite_runs_for_a_new_family(toy, tmp_path):
    from test_family_contract import run_contract

    name, _path = toy
    models.discover(refresh=True)
    run_contract(name, tmp_path)


@pytest.mark.parametrize("toy", [0.5], indirect=True)
def test_threads_never_see_a_half_filled_registry(toy):
    """Eight threads read the registry while a (slow) family module is still importing: each
    waits for discovery to finish and sees every family."""
    name, _path = toy
    models._DISCOVERED = False  # as on first use: the next read scans (and finds the new module)
    seen, barrier = [], threading.Barrier(8)

    def ask():
        barrier.wait()
        seen.append(name in models.families())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [True] * 8
