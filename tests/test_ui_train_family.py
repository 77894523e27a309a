"""The Train tab's family options: built from the chosen family's options dataclass, only that
family's shown, turned back into its options (or left to the Trainer), repeated in the CLI line."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from msgen.models.hvae import HVAEOptions
from msgen.models.msggan import GANOptions
from msgen.ui import common
from msgen.ui import train as T
from msgen.ui import train_family as TF
from msgen.ui.jobs import JobManager


@pytest.fixture
def ctx(tmp_path, tiny_weights):
    c = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=tiny_weights)
    c.jobs = JobManager()
    return c


def test_the_form_values_become_the_chosen_familys_options():
    values = {"hvae.beta": 2.0, "msggan.loss": "hinge"}  # another family's controls never apply
    assert TF.options("hvae", ["color"], values) == HVAEOptions(beta=2.0)
    assert TF.options("msggan", ["color", "cutout"], values) == GANOptions(augment=("color", "cutout"), loss="hinge")
    assert TF.options("hvae", list(T.POLICIES), {}) is None  # nothing set: the Trainer's defaults
    with pytest.raises(ValueError, match="beta must be between"):
        TF.options("hvae", [], {"hvae.beta": -1.0})


def test_family_of_the_base_choice(ctx):
    assert TF.family_of(ctx, "model:tinyvae16", None) == "hvae"
    assert TF.family_of(ctx, "model:tiny16", None) == "msggan"
    assert TF.family_of(ctx, "scratch:hvae", None) == "hvae"
    assert TF.family_of(ctx, "model:nope", None) == TF.family_of(ctx, "scratch:nope", None) == ""


def test_the_cli_line_repeats_the_family_options(ctx):
    base = T.Base(resolution=16, config=None, family="hvae")
    opts = T.options_from_form(ctx, 10, 4, 2e-4, [], 5, 0, "hvae", {"hvae.beta": 2.5})
    line = T.cli_command(ctx, base, opts, Path("d"), Path("r"), 1)
    assert "--beta 2.5" in line and "--augment" not in line
    gan = T.options_from_form(ctx, 10, 4, 2e-4, ["color"], 5, 0, "msggan", {})
    assert "--augment color" in T.cli_command(ctx, T.Base(resolution=16, family="msggan"), gan, Path("d"), Path("r"), 1)


def test_only_the_chosen_familys_controls_are_shown(ctx):
    with gr.Blocks():
        ctx.owner = gr.BrowserState(None)
        groups, controls, augment = TF.layout("msggan")
    assert groups["msggan"].visible and not groups["hvae"].visible
    assert "hvae.beta" in controls and augment.value == list(T.POLICIES)
    assert [u["visible"] for u in TF.visibility("hvae", groups)] == [name == "hvae" for name in groups]
