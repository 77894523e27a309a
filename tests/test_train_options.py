"""Training options: the loop's ``TrainOptions`` with the family's own dataclass inside; runs
written by older versions (one flat options dict, a VAE's options inside its config) still
resume; a torn state is refused; the CLI builds the family's options from its flags."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from msgen import checkpoint as ckpt
from msgen.models import make_config
from msgen.models.hvae import HVAEOptions
from msgen.models.msggan import GANOptions
from msgen.train import Trainer, TrainOptions, options_from_dict, resume_options
from tests.conftest import make_tiny_model
from tests.test_models import TINY

HVAE_TINY = dict(channel_base=64, channel_max=16, z_channels=4)
OLD_GAN_FLAT = {"betas": [0.0, 0.99], "augment": ["color"], "loss": "rpgan", "r1_gamma": 1.0, "r1_every": 4,
                "r2_gamma": 1.0, "cdc_weight": 0.0, "ms_weight": 0.0, "ms_size": 0, "mixing_prob": 0.5}


def images(n=4, res=16):
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(0)) * 2 - 1


def run(tmp_path, config, **family) -> Trainer:
    opts = TrainOptions(steps=2, batch_size=2, sample_every=10, checkpoint_every=10, device="cpu",
                        family=family.get("options"))
    t = Trainer(images=images(res=config.resolution), run_dir=tmp_path / "run", config=config, options=opts)
    t.train()
    return t


def make_old(run_dir, flat: dict, legacy_config: dict | None = None) -> None:
    """Rewrite a run's options (and config) as the code before the family options dataclasses wrote them."""
    state = json.loads((run_dir / "state" / "state.json").read_text())
    info = json.loads((run_dir / "run.json").read_text())
    loop = {k: v for k, v in state["options"].items() if k != "family"}
    old = loop | flat
    state["options"], info["options"] = old, old
    state["tensors_step"] = state["step"]
    if legacy_config:
        info["config"] = info["config"] | legacy_config
        model_cfg = json.loads((run_dir / "model" / "config.json").read_text())
        (run_dir / "model" / "config.json").write_text(json.dumps(model_cfg | legacy_config))
    (run_dir / "state" / "state.json").write_text(json.dumps(state))
    (run_dir / "run.json").write_text(json.dumps(info))


def test_the_options_json_names_the_family_options_and_round_trips(tmp_path):
    t = run(tmp_path, make_config("msggan", resolution=16, **TINY), options=GANOptions(loss="hinge"))
    saved = json.loads((tmp_path / "run" / "state" / "state.json").read_text())["options"]
    assert saved["family"]["loss"] == "hinge" and "loss" not in saved
    assert resume_options(tmp_path / "run") == t.options
    assert resume_options(tmp_path / "run", steps=9).steps == 9


def test_a_gan_run_written_by_the_old_code_resumes(tmp_path):
    t = run(tmp_path, make_config("msggan", resolution=16, **TINY))
    make_old(tmp_path / "run", OLD_GAN_FLAT)
    opts = resume_options(tmp_path / "run", steps=3)
    assert opts.family == GANOptions(augment=("color",), loss="rpgan", r2_gamma=1.0) and opts.steps == 3
    t2 = Trainer(images=images(), run_dir=tmp_path / "run", config=t.G.config, options=opts)
    t2.train()
    assert t2.step == 3
    with pytest.raises(ValueError, match="training options have no"):
        options_from_dict({"steps": 3, "warp_speed": 9}, "msggan")


def test_a_vae_run_written_by_the_old_code_resumes_with_its_objective(tmp_path):
    from msgen.runcheck import check_run
    from msgen.ui import runs

    t = run(tmp_path, make_config("hvae", resolution=16, **HVAE_TINY))
    legacy = {"beta": 2.0, "kl_warmup_steps": 1000, "free_nats": 2.0, "min_sigma": 0.25, "aux_weight": 1.0,
              "lr_warmup_steps": 200, "grad_clip": 200.0, "skip_threshold": 2000.0}
    make_old(tmp_path / "run", OLD_GAN_FLAT, legacy)  # the GAN's options beside the loop's: they never applied
    opts = resume_options(tmp_path / "run", steps=3)
    assert opts.family == HVAEOptions(beta=2.0, kl_warmup_steps=1000)
    runs.write_data(tmp_path / "run", images(), [f"{i}.png" for i in range(4)])
    check_run(tmp_path / "run")  # what a run archive's import checks
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    config = ckpt.read_model_dir(tmp_path / "run" / "model")[0]
    assert config == t.G.config  # the legacy keys are accepted and dropped
    t2 = Trainer(images=images(), run_dir=tmp_path / "run", config=config, options=opts)
    assert t2.recipe.hopt.beta == 2.0
    t2.train()
    assert t2.step == 3 and info["config"]["beta"] == 2.0


def test_fine_tuning_a_base_exported_with_the_options_in_its_config_keeps_them(tmp_path):
    base = make_tiny_model(tmp_path / "base", family="hvae", resolution=16, **HVAE_TINY)
    cfg = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps(cfg | {"beta": 3.0, "kl_warmup_steps": 10}))
    t = Trainer(images=images(), run_dir=tmp_path / "ft", base=base, options=TrainOptions(steps=1, batch_size=2))
    assert t.options.family == HVAEOptions(beta=3.0, kl_warmup_steps=10)
    given = TrainOptions(steps=1, batch_size=2, family=HVAEOptions(beta=1.5))
    assert Trainer(images=images(), run_dir=tmp_path / "ft2", base=base, options=given).options.family.beta == 1.5
    with pytest.raises(ValueError, match="trains with HVAEOptions"):
        Trainer(images=images(), run_dir=tmp_path / "ft3", base=base,
                options=TrainOptions(steps=1, batch_size=2, family=GANOptions()))


def test_a_torn_state_is_refused_clearly(tmp_path):
    t = run(tmp_path, make_config("msggan", resolution=16, **TINY))
    path = tmp_path / "run" / "state" / "state.json"
    state = json.loads(path.read_text())
    path.write_text(json.dumps(state | {"step": 1}))  # as if killed between the safetensors and the json write
    t2 = Trainer(images=images(), run_dir=tmp_path / "run", config=t.G.config,
                 options=dataclasses.replace(t.options, steps=4))
    with pytest.raises(ckpt.CheckpointError, match="killed between the two writes"):
        t2.train()


def test_the_cli_builds_the_family_options_from_its_flags():
    from msgen.__main__ import parser
    from msgen.familyflags import chosen

    p = parser()
    args = p.parse_args(["train", "--data", "d", "--out", "o", "--loss", "rpgan", "--r2", "1", "--augment", "none"])
    assert chosen(args, "msggan") == GANOptions(loss="rpgan", r2_gamma=1.0, augment=())
    assert chosen(p.parse_args(["train", "--data", "d", "--out", "o"]), "msggan") is None  # the family's defaults
    args = p.parse_args(["train", "--data", "d", "--out", "o", "--beta", "2", "--r1", "3"])
    with pytest.raises(ValueError, match="--r1-gamma is a training option of msggan models, and this run's model is"):
        chosen(args, "hvae")
    with pytest.raises(ValueError, match="beta must be between"):
        chosen(p.parse_args(["train", "--data", "d", "--out", "o", "--beta", "-1"]), "hvae")
