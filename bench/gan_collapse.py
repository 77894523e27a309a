"""Why a multi-scale GAN trained from scratch repeats itself: the mapping network's initialisation.

    python bench/gan_collapse.py --data DIR [--steps 500] [--n 1000] [--batch 32] [--threads 1]
                                 [--variants torch-init,he-init] [--out OUT]

Trains the default msggan config from scratch on the pictures in DIR (Fashion-MNIST: ``python -m
msgen data fashion --out DIR``) once per variant, same seed, same steps, and prints for each the
collapse figures of 1000 samples (``--n``) against as many of the pictures: the near-duplicate
share (``msgen.metrics``: a sample within RMS 0.05 of another), precision / recall / density /
coverage (k = 5, EfficientNet-Lite0 features), and how one-dimensional w = mapping(z) is (the share
of w's variance on its top eigenvector, and on its top five) and how much it varies per dimension
between seeds at step 0 and at the end. Variants:

* ``torch-init``: the mapping network's layers as torch's ``nn.Linear`` initialises them (the
  project's init before this was measured);
* ``he-init``: as ``msgen.models.layers.MappingNetwork`` starts them now (He init for the leaky
  ReLU, zero biases), so w keeps the unit scale of the normalised z;
* ``mapping-lr``: torch's init with StyleGAN's 0.01 learning-rate multiplier on the mapping network
  (``GANOptions.mapping_lr``).

Measured on our 2-core CPU (500 steps, batch 32, 2 threads, Fashion-MNIST): the README's Quality
section. The runs go to ``--out`` (a temporary folder by default).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repo on sys.path)
import torch

VARIANTS = ("torch-init", "he-init", "mapping-lr")


def w_figures(g, n: int = 1000) -> dict[str, float]:
    z = torch.cat([g.sample_latents(1, s) for s in range(n)])
    with torch.inference_mode():
        w = g.mapping(z).double()
    ev = torch.linalg.eigvalsh(torch.cov((w - w.mean(0)).T)).flip(0)
    return {"w_std": float(w.std(0).mean()), "w_top1": float(ev[0] / ev.sum()), "w_top5": float(ev[:5].sum() / ev.sum())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a folder of pictures (e.g. msgen data fashion)")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--n", type=int, default=1000, help="samples scored, and as many pictures")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--r1", type=float, default=0.5, help="R1 weight (the shipped GANs' 0.5)")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--background", default="black", help="for transparent pictures: white, black or R,G,B")
    p.add_argument("--variants", default="torch-init,he-init")
    p.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    args = p.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variant {bad[0]!r}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)

    from msgen.__main__ import _colour
    from msgen.data import LIMITS, load_image_set
    from msgen.metrics import _subsample, diversity
    from msgen.models import make_config
    from msgen.models.msggan import GANOptions
    from msgen.train import Trainer, TrainOptions

    limits = dataclasses.replace(LIMITS, max_files=100_000)
    images = load_image_set(args.data, args.resolution, background=_colour(args.background),
                            limits=limits).images
    real = images[_subsample(images, min(args.n, len(images)), args.seed + 1)].float()
    out = Path(args.out or tempfile.mkdtemp(prefix="gan-collapse-"))
    print(f"{len(images)} pictures, {args.steps} steps, batch {args.batch}, {args.threads} thread(s), "
          f"{len(real)} samples scored against {len(real)} pictures; runs in {out}")
    print("| variant | w per-dim std at step 0 / end | w top-1 / top-5 share | near-dup | precision | recall | "
          "density | coverage | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in variants:
        family = GANOptions(r1_gamma=args.r1, mapping_lr=0.01 if name == "mapping-lr" else 1.0)
        opts = TrainOptions(steps=args.steps, batch_size=args.batch, sample_every=10**6, checkpoint_every=10**6,
                            seed=args.seed, device="cpu", family=family)
        t = Trainer(images=images, run_dir=out / name, config=make_config("msggan", resolution=args.resolution),
                    options=opts)
        if name in ("torch-init", "mapping-lr"):
            for layer in t.G.mapping.net:
                layer.reset_parameters()  # torch's own nn.Linear init
            t.G_ema.load_state_dict(t.G.state_dict())
        start = w_figures(t.G.eval())
        t.G.train()
        began = time.perf_counter()
        t.train()
        wall = time.perf_counter() - began
        g = t.G_ema.eval()
        z = torch.cat([g.sample_latents(1, s) for s in range(len(real))])
        with torch.inference_mode():
            fake = torch.cat([g(part).images[args.resolution] for part in z.split(100)]).float().clamp(-1, 1)
        d, w = diversity(real, fake), w_figures(g)
        print(f"| {name} | {start['w_std']:.2f} / {w['w_std']:.2f} | {w['w_top1']:.2f} / {w['w_top5']:.2f} | "
              f"{d['near_duplicates']:.3f} | {d['precision']:.2f} | {d['recall']:.2f} | {d['density']:.2f} | "
              f"{d['coverage']:.3f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
