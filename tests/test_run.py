"""``msgen.run.Run``, the one owner of a run folder: its layout, ``run.json`` (structured, round
trips, old flat files translated, malformed ones refused), the checkpoint's step, the quality
report's atomic write, and the options and data a resume reads without parsing any command."""

from __future__ import annotations

import dataclasses
import json
import shlex

import pytest
import torch

from msgen import checkpoint as ckpt
from msgen.data import load_image_set
from msgen.models import make_config
from msgen.models.msggan import GANOptions
from msgen.options import options_to_dict
from msgen.run import DataRecord, Run, RunError, RunRecord
from msgen.train import Trainer, TrainOptions
from msgen.ui import runs
from tests.test_models import TINY


def images(n=4, res=16):
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(0)) * 2 - 1


def train(run_dir, steps=2, data=None, **kw) -> Trainer:
    opts = TrainOptions(steps=steps, batch_size=2, sample_every=10, checkpoint_every=10, device="cpu",
                        family=GANOptions(loss="hinge"))
    t = Trainer(images=images(), run_dir=run_dir, config=make_config("msggan", resolution=16, **TINY), options=opts,
                data=data, **kw)
    t.train()
    return t


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    data = runs.write_data(root / "source", images(), [f"p{i}.png" for i in range(4)])
    t = train(root / "r", data=DataRecord(source=str(data), fit="pad", background=(0, 0, 0), images=4),
              meta={"title": "r", "command": "python -m msgen train --data 'unbalanced"})
    return root, t


def copy_run(trained, tmp_path, name="copy"):
    import shutil

    root, _t = trained
    return Run(shutil.copytree(root / "r", tmp_path / name))


def test_the_layout_keeps_the_names_every_version_wrote(trained):
    root, t = trained
    run = Run(root / "r")
    files = sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*") if p.is_file())
    assert files == ["model/README.md", "model/config.json", "model/model.safetensors", "model/samples.png",
                     "run.json", "state/state.json", "state/state.safetensors"]
    assert (run.model_dir, run.state_dir, run.data_dir) == (t.model_dir, t.state_dir, run.path / "data")
    assert run.has_model() and run.has_state() and run.samples_png.is_file()
    with pytest.raises(ValueError, match="not a file of a run"):
        run.file("../elsewhere/run.json")


def test_run_json_is_structured_and_round_trips(trained, tmp_path):
    root, t = trained
    run = Run(root / "r")
    raw = json.loads(run.file("run.json").read_text())
    assert raw["version"] == 2 and raw["status"] == "finished" and raw["step"] == 2 and raw["steps"] == 2
    assert raw["data"] == {"source": str(root / "source" / "data"), "fit": "pad", "background": [0, 0, 0], "images": 4}
    assert raw["options"] == json.loads(json.dumps(options_to_dict(t.options))) and raw["options"]["family"]["loss"] == "hinge"
    assert raw["config"]["family"] == "msggan" and raw["command"].startswith("python -m msgen train")
    record = run.record()
    assert record.data.background == (0, 0, 0) and record.family_name == "msggan"
    copy = Run(tmp_path / "c")
    copy.write(record)
    assert copy.record() == record and json.loads(copy.file("run.json").read_text()) == raw
    changed = dataclasses.replace(record, status="failed", error="disk full")
    copy.write(changed)
    assert copy.record() == changed


def test_steps_come_from_the_checkpoint(trained, tmp_path):
    root, _t = trained
    assert Run(root / "r").step() == 2 and Run(root / "r").state_step() == 2
    empty = Run(tmp_path / "none")
    assert empty.step() == 0 and empty.state_step() is None and empty.state_info() is None
    run = copy_run(trained, tmp_path)
    run.file("state/state.json").write_text('{"step": "two"}')
    assert run.state_step() is None
    with pytest.raises(RunError, match="step must be a whole number"):
        run.state_info()
    info = runs.read_run(run.path)
    assert info is not None and info.step == 2  # the record's step stands in for an unreadable state


def test_the_quality_report_is_written_atomically(tmp_path, monkeypatch):
    run = Run(tmp_path / "q")
    assert run.quality() == {}
    run.path.mkdir()
    run.write_quality({"before": {"mean": 1.0}})
    assert run.quality() == {"before": {"mean": 1.0}}

    def crash(*_a, **_k):
        raise OSError("killed mid-write")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(OSError):
        run.write_quality({"after": {"mean": 2.0}})
    monkeypatch.undo()
    assert run.quality() == {"before": {"mean": 1.0}}  # the old report, whole
    assert [p.name for p in run.path.iterdir()] == ["quality.json"]  # no temp file left
    run.file("quality.json").write_text("[1, 2")
    assert run.quality() == {}
    with pytest.raises(RunError, match="quality.json"):
        run.quality(strict=True)


def test_a_resume_reads_the_record_never_the_command(trained, tmp_path, monkeypatch):
    run = copy_run(trained, tmp_path)

    def no_parsing(*_a, **_k):
        raise AssertionError("the command was parsed")

    monkeypatch.setattr(shlex, "split", no_parsing)
    monkeypatch.setattr("msgen.__main__.parser", no_parsing)
    spec = runs.resume_spec(run.path, owner_key="k", until=5)
    source = trained[0] / "source" / "data"
    assert (spec.data, spec.fit, spec.background) == (source, "pad", (0, 0, 0))
    assert spec.options == dataclasses.replace(trained[1].options, steps=5) and spec.options.family.loss == "hinge"
    moved = dataclasses.replace(run.record(), data=DataRecord(source=str(source.parent / "nowhere")))
    run.write(moved)
    with pytest.raises(ValueError, match="not on this machine"):
        runs.resume_spec(run.path, owner_key="k", until=5)
    runs.write_data(run.path, images(), [f"p{i}.png" for i in range(4)])  # a snapshot comes first
    assert runs.resume_spec(run.path, owner_key="k", until=5).data == run.data_dir


def old_record(run: Run, data_dir) -> dict:
    """``run.json`` as the code before ``Run`` wrote it: flat, the data only inside the command."""
    new = json.loads(run.file("run.json").read_text())
    command = f"python -m msgen train --data {shlex.quote(str(data_dir))} --out runs/x --fit pad --background 0,0,0"
    flat_options = {k: v for k, v in new["options"].items() if k != "family"} | new["options"]["family"]
    return {"status": "stopped", "step": 2, "steps": 2, "family": "msggan", "resolution": 16, "base": None,
            "resumed": False, "options": flat_options, "meta": {"title": "x", "command": command},
            "processes": 1, "config": new["config"]}


def test_an_old_run_json_is_translated_and_resumes(trained, tmp_path):
    run = copy_run(trained, tmp_path, "old")
    source = trained[0] / "source" / "data"
    run.file("run.json").write_text(json.dumps(old_record(run, source)))
    record = run.record()
    assert record.data == DataRecord(source=str(source), fit="pad", background=(0, 0, 0))
    assert record.command.startswith("python -m msgen train") and record.status == "stopped"
    info = runs.read_run(run.path)
    assert info.resumable and info.family == "msggan" and info.status == "stopped"
    spec = runs.resume_spec(run.path, owner_key="k", until=3)
    assert spec.data == source and spec.fit == "pad" and spec.options.family.loss == "hinge"
    t = Trainer(images=load_image_set(spec.data, 16, fit=spec.fit).images, run_dir=run.path, config=spec.config,
                options=spec.options, meta=spec.meta)
    t.train()
    assert t.step == 3
    after = json.loads(run.file("run.json").read_text())
    assert after["version"] == 2 and after["resumed"] is True and after["data"]["source"] == str(source)


def test_a_queued_run_of_the_old_code_keeps_its_fit(tmp_path):
    run = Run(tmp_path / "q")
    run.path.mkdir()
    run.file("run.json").write_text(json.dumps({"status": "queued", "step": 0, "steps": 5, "family": "msggan",
                                                 "fit": "pad", "background": [1, 2, 3], "options": {"steps": 5},
                                                 "meta": {}, "config": None}))
    assert run.record().data == DataRecord(fit="pad", background=(1, 2, 3))


@pytest.mark.parametrize("text, match", [
    ("[]", "JSON object"),
    ("{", "not valid JSON"),
    ('{"version": 2, "step": "1", "steps": 2}', "step is not valid"),
    ('{"version": 2, "step": 1}', "no steps"),
    ('{"version": 2, "step": true, "steps": 2}', "step is not valid"),
    ('{"version": 3, "step": 1, "steps": 2}', "version 3"),
    ('{"version": 2, "step": 1, "steps": 2, "evil": 1}', "does not write: evil"),
    ('{"version": 2, "step": 1, "steps": 2, "data": {"fit": "stretch"}}', "fit is not valid"),
    ('{"version": 2, "step": 1, "steps": 2, "data": {"background": [1, 2]}}', "background is not valid"),
    ('{"version": 2, "step": 1, "steps": 2, "data": {"source": "/x", "shell": "rm"}}', "data has fields"),
    ('{"version": 2, "step": 1, "steps": 2, "status": "pwned"}', "status is not valid"),
    ('{"version": 2, "step": 1, "steps": 2, "meta": 5}', "meta is not valid"),
    ('{"step": 1, "steps": 2, "resolution": {"x": 1}}', "resolution is not valid"),
    ('{"step": 1, "step": 2, "steps": 2}', "appears twice"),
    ('{"step": 1, "steps": 2, "x": ' + "[" * 40 + "]" * 40 + "}", "nested"),
    ('{"step": 1, "steps": 2, "meta": {"t": "' + "a" * (5 * 2**20) + '"}}', "limit"),
])
def test_a_malformed_run_json_is_refused_clearly(tmp_path, text, match):
    run = Run(tmp_path / "bad")
    run.path.mkdir()
    run.file("run.json").write_text(text)
    with pytest.raises(RunError, match=match):
        run.record()
    assert runs.read_run(run.path) is None  # a listing skips it, never fails
    with pytest.raises(ValueError):
        runs.resume_spec(run.path, owner_key="k", until=3)


def test_an_imported_run_forgets_a_strangers_path(trained, tmp_path):
    from msgen.runcheck import check_run

    run = copy_run(trained, tmp_path, "imported")
    runs.write_data(run.path, images(), [f"p{i}.png" for i in range(4)])
    run.write(dataclasses.replace(run.record(), data=DataRecord(source="/etc")))
    check_run(run.path)
    assert run.record().data.source is None and run.data_source()[0] == run.data_dir


def test_the_cli_records_its_data_and_the_page_resumes_it(tmp_path, tiny_weights, fixture_images):
    from msgen.__main__ import main

    out = tmp_path / "cli"
    assert main(["train", "--data", str(fixture_images), "--out", str(out), "--model", str(tiny_weights / "tiny16"),
                 "--steps", "2", "--batch", "2", "--fit", "pad"]) == 0
    run = Run(out)
    record = run.record()
    assert record.data.source == str(fixture_images.resolve()) and record.data.fit == "pad"
    assert record.data.images and {"before", "after"} <= set(run.quality())
    assert isinstance(record, RunRecord) and "--fit pad" in record.command
    spec = runs.resume_spec(out, owner_key="k", until=3)
    assert spec.data == fixture_images.resolve() and spec.fit == "pad"
