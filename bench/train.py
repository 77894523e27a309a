"""Training speed: images/s of the default Trainer step at 32 and 64 px, per family, on the CPU.

    python bench/train.py [--threads 2] [--steps 20] [--batch 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import _common  # noqa: F401  (puts the repo on sys.path)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    import torch

    from msgen.models import families, make_config
    from msgen.train import Trainer, TrainOptions

    torch.set_num_threads(args.threads)
    print(f"{args.device}, {args.threads} threads, batch {args.batch}, {args.steps} timed steps after 3 warm-up")
    print("| family | px | images/s | ms/step |")
    print("| --- | --- | --- | --- |")
    for fam in families():
        for res in (32, 64):
            data = torch.rand(64, 3, res, res) * 2 - 1
            with tempfile.TemporaryDirectory() as tmp:
                opts = TrainOptions(steps=10**6, batch_size=args.batch, device=args.device, sample_every=10**6,
                                    checkpoint_every=10**6)
                t = Trainer(images=data, run_dir=tmp, config=make_config(fam, resolution=res), options=opts)
                gen = t.step_gen
                real = data[: args.batch].to(t.device)
                for i in range(3):
                    t.recipe.step(real, i, gen)
                if t.device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                for i in range(args.steps):
                    t.recipe.step(real, i, gen)
                    t._ema_update()
                if t.device.type == "cuda":
                    torch.cuda.synchronize()
                dt = (time.perf_counter() - start) / args.steps
                print(f"| {fam} | {res} | {args.batch / dt:.0f} | {dt * 1e3:.0f} |", flush=True)


if __name__ == "__main__":
    main()
