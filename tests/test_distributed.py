"""Data-parallel training: two gloo processes launched by torchrun train the same run as one
process with the same global batch, only rank 0 writes, and a run resumes with the same or a
different process count."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from msgen import distributed
from msgen.data import load_image_set
from msgen.models import make_config
from msgen.train import Trainer, TrainOptions
from msgen.ui.runs import write_data
from tests.test_models import TINY

ROOT = Path(__file__).resolve().parent.parent
# Batch 8 on 2 processes: 4 a rank, a whole minibatch-stddev group, so the match is exact up to
# float summation order. Step 0 runs the lazy R1 pass (r1_every 4) and mixing is on.
OPTS = dict(batch_size=8, sample_every=2, checkpoint_every=2, device="cpu", seed=3)


def cli_args(data: Path, out: Path, steps: int) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--family", "msggan", "--resolution", "16",
            "--config", json.dumps(TINY), "--steps", str(steps), "--batch", "8", "--sample-every", "2",
            "--checkpoint-every", "2", "--seed", "3", "--device", "cpu"]


def torchrun(logs: Path, args: list[str], nproc: int = 2) -> None:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(ROOT / "tests" / "dist_worker.py"), str(logs), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


def single(data: Path, out: Path, steps: int) -> Trainer:
    images = load_image_set(data, 16).images
    t = Trainer(images=images, run_dir=out, config=make_config("msggan", resolution=16, **TINY),
                options=TrainOptions(steps=steps, **OPTS))
    t.train()
    return t


def assert_same_state(a_dir: Path, b_dir: Path, atol: float = 1e-4) -> None:
    # Summation order differs between one process and an all-reduce of two, and Adam divides by
    # the gradients' own scale, so float32 weights drift apart by ~2e-5 over 6 steps; a broken
    # resume (optimiser state or a random stream lost) moves weights by the step size, 2e-4 a
    # step, and the random streams below are compared exactly.
    a, b = load_file(str(a_dir / "state" / "state.safetensors")), load_file(str(b_dir / "state" / "state.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            assert torch.allclose(a[k], b[k], rtol=0, atol=atol), (k, (a[k] - b[k]).abs().max().item())
        else:
            assert torch.equal(a[k], b[k]), k  # RNG streams and step counters: exactly the same
    sa, sb = (json.loads((d / "state" / "state.json").read_text()) for d in (a_dir, b_dir))
    assert sa["step"] == sb["step"]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Images as a run's data snapshot, and a 3-step run on 2 processes."""
    root = tmp_path_factory.mktemp("dist")
    g = torch.Generator().manual_seed(0)
    images = torch.rand(12, 3, 16, 16, generator=g) * 2 - 1
    data = write_data(root / "src", images, [f"img{i}.png" for i in range(12)])
    torchrun(root / "logs", cli_args(data, root / "two", 3))
    return root, data


def test_two_processes_match_one_with_the_same_global_batch(two_ranks):
    root, data = two_ranks
    single(data, root / "one", 3)
    assert_same_state(root / "one", root / "two")
    info = json.loads((root / "two" / "run.json").read_text())
    assert info["processes"] == 2 and info["status"] == "finished" and info["step"] == 3


def test_only_rank_zero_writes_and_each_file_once(two_ranks):
    root, _ = two_ranks
    rank0 = (root / "logs" / "writes-0.txt").read_text().split()
    rank1 = (root / "logs" / "writes-1.txt").read_text().split()
    assert rank1 == []
    files = sorted(str(p.relative_to(root / "two")) for p in (root / "two").rglob("*") if p.is_file())
    assert files == ["model/README.md", "model/config.json", "model/model.safetensors", "model/samples.png",
                     "quality.json", "run.json", "state/state.json", "state/state.safetensors"]  # no per-rank litter
    # Checkpoints at step 2 and at the end (3): each state file written twice, by rank 0 alone.
    state = [p for p in rank0 if p.endswith("state.safetensors")]
    assert len(state) == 2


def test_resume_with_the_same_and_a_different_process_count(two_ranks):
    root, data = two_ranks
    straight = root / "straight"
    single(data, straight, 6)
    same, other = root / "same", root / "other"
    shutil.copytree(root / "two", same)
    shutil.copytree(root / "two", other)
    torchrun(root / "logs-resume", cli_args(data, same, 6))  # 2 processes -> 2 processes
    assert_same_state(straight, same)
    resumed = single(data, other, 6)  # 2 processes -> 1 process
    assert resumed.step == 6
    assert_same_state(straight, other)


def test_shards_and_rows():
    world = distributed.World(rank=1, size=2)
    shard = world.shard(5)
    assert (shard.start, shard.step, shard.size) == (1, 2, 2)
    gen = torch.Generator().manual_seed(0)
    full = torch.rand(5, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(distributed.rows(lambda k: torch.rand(k, 3, generator=gen), 2, shard), full[1::2])
    assert torch.equal(world.local(torch.arange(5)), torch.tensor([1, 3]))
    with pytest.raises(ValueError, match="smaller than the 2 processes"):
        world.shard(1)
    with pytest.raises(ValueError, match="does not match"):
        distributed.rows(lambda k: torch.zeros(k), 3, shard)
    assert distributed.SINGLE.shard(8) is None and not distributed.SINGLE.active
    assert distributed.init_from_env() is distributed.SINGLE  # a plain process: no process group
