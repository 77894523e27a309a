"""Data-parallel training speed: images/s of ``torchrun --nproc_per_node=N`` for N = 1, 2 on the CPU.

    python bench/distributed.py [--res 32] [--batch 16] [--steps 20] [--cores 2]

Each N gets the same cores in all (``--cores``), split between its processes (OMP threads per
process = cores / N), the same global batch and the same 3 warm-up steps; rank 0 times the rest.
On a 2-core CPU this proves the machinery, not a speed-up: two processes share the cores one
process already used, and pay an all-reduce per parameter tensor each backward.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repo on sys.path)

WARMUP = 3


def worker(args: argparse.Namespace) -> None:
    import torch

    from msgen import distributed
    from msgen.models import make_config
    from msgen.train import Trainer, TrainOptions

    world = distributed.init_from_env("cpu")
    marks: dict[int, float] = {}
    data = torch.rand(64, 3, args.res, args.res, generator=torch.Generator().manual_seed(0)) * 2 - 1
    opts = TrainOptions(steps=WARMUP + args.steps, batch_size=args.batch, device="cpu", sample_every=10**6,
                        checkpoint_every=10**6)
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(images=data, run_dir=tmp, config=make_config("msggan", resolution=args.res), options=opts,
                    world=world, callbacks=(lambda p: marks.setdefault(p.step, time.perf_counter()),))
        t.train()
    if world.is_main:
        dt = marks[WARMUP + args.steps] - marks[WARMUP]
        print(json.dumps({"images_per_s": args.steps * args.batch / dt, "ms_per_step": dt / args.steps * 1e3}))
    distributed.shutdown(world)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    print(f"msggan {args.res}px, global batch {args.batch}, {args.steps} timed steps, {args.cores} cores in all, gloo")
    print(f"load before: {os.getloadavg()[0]:.1f}")
    print("| processes | threads each | images/s | ms/step |")
    print("| --- | --- | --- | --- |")
    for n in (1, 2):
        threads = max(1, args.cores // n)
        env = os.environ | {"OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", __file__,
               "--worker", "--res", str(args.res), "--batch", str(args.batch), "--steps", str(args.steps)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {n} | {threads} | {r['images_per_s']:.1f} | {r['ms_per_step']:.0f} |", flush=True)
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
