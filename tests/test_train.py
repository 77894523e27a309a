"""Trainer: a few-step run exports a loadable model; resume continues exactly; fine-tune starts
from the base; the stop flag is honoured within a step; callbacks get losses and previews."""

from __future__ import annotations

import threading

import pytest
import torch
from safetensors.torch import load_file

import msgen
from msgen.models import make_config
from msgen.train import Progress, Trainer, TrainOptions
from tests.conftest import make_tiny_model
from tests.test_models import TINY


def data(n=12, res=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, res, res, generator=g) * 2 - 1


def opts(**kw):
    return TrainOptions(**({"steps": 5, "batch_size": 4, "sample_every": 2, "checkpoint_every": 3, "device": "cpu"} | kw))


def tiny_cfg(res=16):
    return make_config("msggan", resolution=res, **TINY)


def test_five_step_run_writes_loadable_model(tmp_path):
    seen: list[Progress] = []
    t = Trainer(images=data(), run_dir=tmp_path / "run", config=tiny_cfg(), options=opts(), callbacks=(seen.append,))
    model_dir = t.train()
    g = msgen.load(model_dir)
    img = g(g.sample_latents(1, 0)).finest
    assert img.shape == (1, 3, 16, 16) and img.std() > 0
    assert [p.step for p in seen if not p.done] == [1, 2, 3, 4, 5]
    assert seen[-1].done and seen[-1].preview is not None
    assert any(p.preview is not None for p in seen[:-1])
    assert all({"d", "g"} <= set(p.losses) for p in seen[:-1])
    assert g.meta["steps"] == 5 and (model_dir / "samples.png").is_file()
    from PIL import Image

    with Image.open(model_dir / "samples.png") as im:  # 16 px tiles, enlarged as the page shows them
        assert im.width >= 400


def test_resume_continues_the_same_run_bit_for_bit(tmp_path):
    straight = Trainer(images=data(), run_dir=tmp_path / "a", config=tiny_cfg(), options=opts(steps=6))
    straight.train()
    first = Trainer(images=data(), run_dir=tmp_path / "b", config=tiny_cfg(), options=opts(steps=3))
    first.train()
    assert first.step == 3
    resumed = Trainer(images=data(), run_dir=tmp_path / "b", config=tiny_cfg(), options=opts(steps=6))
    resumed.train()
    assert resumed.step == 6
    a = load_file(str(tmp_path / "a" / "state" / "state.safetensors"))
    b = load_file(str(tmp_path / "b" / "state" / "state.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # same weights, EMA, Adam moments and RNG


def test_fine_tune_starts_from_the_base_weights(tmp_path):
    base = make_tiny_model(tmp_path / "base", resolution=16, seed=11)
    t = Trainer(images=data(), run_dir=tmp_path / "ft", base=base, options=opts(steps=1))
    ref = msgen.load(base)
    for (k, v), (k2, v2) in zip(ref.state_dict().items(), t.G.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    from msgen.checkpoint import read_model_dir, split_tensors

    d_ref = split_tensors(read_model_dir(base)[2], "discriminator.")
    assert all(torch.equal(d_ref[k], v) for k, v in t.D.state_dict().items())
    t.train()
    assert msgen.load(t.model_dir).meta["base"] == str(base)


def test_stop_flag_is_honoured_within_one_step(tmp_path):
    stop = threading.Event()

    def cb(p: Progress):
        if p.step == 2:
            stop.set()

    t = Trainer(images=data(), run_dir=tmp_path / "s", config=tiny_cfg(), options=opts(steps=50), callbacks=(cb,), stop=stop)
    t.train()
    assert t.step == 2
    g = msgen.load(t.model_dir)  # the checkpoint written on stop loads
    assert g.meta["steps"] == 2


def test_bad_options_and_data_are_refused(tmp_path):
    with pytest.raises(ValueError, match="batch size"):
        TrainOptions(batch_size=0)
    from msgen.models.msggan import GANOptions

    with pytest.raises(ValueError, match="augment must be among"):
        GANOptions(augment=("rotate",))
    with pytest.raises(ValueError, match="loss must be among"):
        GANOptions(loss="wasserstein")
    with pytest.raises(ValueError, match="at least one image"):
        Trainer(images=torch.zeros(0, 3, 16, 16), run_dir=tmp_path / "x", config=tiny_cfg())
    with pytest.raises(ValueError, match="32px"):
        Trainer(images=data(res=16), run_dir=tmp_path / "y", config=tiny_cfg(32))


def test_train_help_shows_every_default(capsys):
    import pytest

    from msgen.__main__ import parser

    with pytest.raises(SystemExit):
        parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    from msgen.defaults import FINETUNE as F

    for flag, default in (("--resolution", 32), ("--sample-every", F.sample_every),
                          ("--checkpoint-every", F.checkpoint_every), ("--seed", F.seed), ("--threads", F.threads)):
        assert f"{flag} {flag[2:].upper().replace('-', '_')}" in text and f"default: {default}" in text, flag
    for flag, default in (("--steps", F.steps), ("--batch", F.batch_size), ("--lr", f"{F.lr:g}")):
        assert f"{flag} {flag[2:].upper()} default: the base family's ({default} for {F.base}" in text, flag


def test_the_cli_and_the_page_share_one_set_of_defaults():
    from msgen.__main__ import parser
    from msgen.defaults import FINETUNE
    from msgen.ui import jobs
    from msgen.ui import train as T

    from msgen.checkpoint import read_config
    from msgen.defaults import start_of
    from msgen.models import FineTune, get_family
    from msgen.zoo import resolve_model

    args = parser().parse_args(["train", "--data", "d", "--out", "o"])
    assert (args.steps, args.batch, args.lr) == (None, None, None)  # the base family's, once the base is known
    assert (args.sample_every, args.checkpoint_every, args.seed, args.threads) == (
        FINETUNE.sample_every, FINETUNE.checkpoint_every, FINETUNE.seed, FINETUNE.threads)
    # The default base is shipped, of the family the defaults name, and they are that family's.
    assert read_config(resolve_model(FINETUNE.base))[0].family == FINETUNE.base_family
    fam = get_family(FINETUNE.base_family).finetune
    assert (FINETUNE.steps, FINETUNE.batch_size, FINETUNE.lr) == (fam.steps, fam.batch_size, fam.lr)
    assert start_of("no-such-family") == FineTune() and start_of("msggan") == get_family("msggan").finetune
    from msgen.familyflags import given
    from msgen.models.msggan import GANOptions

    # No family flag: the Trainer uses the family's defaults, which are the page's augmentation.
    assert given(args) == {} and GANOptions().augment == FINETUNE.augment and args.model is None and args.family is None
    assert (T.DEFAULT_STEPS, T.DEFAULT_BATCH, T.DEFAULT_LR, T.DEFAULT_PREVIEW_EVERY, T.CHECKPOINT_EVERY) == (
        FINETUNE.steps, FINETUNE.batch_size, FINETUNE.lr, FINETUNE.sample_every, FINETUNE.checkpoint_every)
    assert jobs.JobManager().threads == FINETUNE.threads


def test_a_fine_tune_without_steps_takes_its_base_familys_defaults(tmp_path, tiny_weights, monkeypatch):
    import dataclasses

    from msgen import models
    from msgen.__main__ import main
    from msgen.models import FineTune
    from msgen.run import Run
    from msgen.ui import common
    from msgen.ui import train_form
    from tests.conftest import FIXTURES

    fam = models.get_family("msggan")
    monkeypatch.setitem(models.FAMILIES, "msggan", dataclasses.replace(fam, finetune=FineTune(steps=3, lr=3e-4, batch_size=4)))
    run = tmp_path / "run"
    assert main(["train", "--data", str(FIXTURES / "images"), "--out", str(run), "--model", str(tiny_weights / "tiny16"),
                 "--threads", "1"]) in (0, None)
    opts = Run(run).train_options()
    assert (opts.steps, opts.batch_size, opts.lr) == (3, 4, 3e-4) and Run(run).step() == 3
    ctx = common.AppContext(runs_dir=tmp_path / "runs", weights_dir=tiny_weights)
    assert train_form.start_values(ctx, "model:tiny16", None) == (3, 4, 3e-4)  # what the form proposes for that base
    assert train_form.start_values(ctx, "scratch:msggan", None) == (3, 4, 3e-4)
    assert train_form.start_values(ctx, "model:no-such-model", None) == (FineTune().steps, FineTune().batch_size,
                                                                           FineTune().lr)


def test_cli_train_writes_the_quality_report_and_generate_takes_the_run_folder(tmp_path, tiny_weights):
    import json
    import subprocess
    import sys

    from tests.conftest import FIXTURES

    run = tmp_path / "run"
    env = {**__import__("os").environ, "MSGEN_DEBUG": "1"}
    out = subprocess.run([sys.executable, "-m", "msgen", "train", "--data", str(FIXTURES / "images"), "--out", str(run),
                          "--model", str(tiny_weights / "tiny16"), "--steps", "4", "--batch", "4"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    quality = json.loads((run / "quality.json").read_text())
    assert {"before", "after", "diversity_after", "floor"} <= set(quality) and "4" in quality["after"]
    assert "coverage" in (run / "model" / "README.md").read_text() and "coverage" in out.stdout
    png = tmp_path / "g.png"
    out = subprocess.run([sys.executable, "-m", "msgen", "generate", "--model", str(run), "--out", str(png)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and png.is_file(), out.stderr[-2000:]
