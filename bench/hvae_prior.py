"""Where an hvae's prior samples go wrong: the global latent's N(0, I) prior against priors fitted
to the training pictures' posterior means of that latent (ex-post density estimation, Ghosh et
al. 2020), the spatial levels drawn from their own learnt conditional priors in every case.

    python bench/hvae_prior.py [--model emoji64-hvae] [--data data/emoji] [--n 1000]
                               [--components 16] [--temperatures 0.5,1.0] [--grid OUT.png]

A measurement for a feature not built yet (the README's Decompose section): nothing here changes
a model. The set is split in two seeded halves: the priors are fitted to the posterior means of
the first half, and every variant's ``--n`` samples are scored against the second half, which no
fitted prior saw (precision / recall / density / coverage, k = 5, and the near-duplicate share,
in EfficientNet-Lite0 features as ``msgen.metrics.diversity``; FID-EffLite0). Variants:

* ``N(0, I)``: the model's own prior, at the spatial temperature (as the Generate page draws it);
* ``gaussian``: one full-covariance Gaussian fitted to the means;
* ``mixture-K``: a K-component full-covariance Gaussian mixture (scikit-learn, which ``prdc``
  brings) fitted to the same means;
* ``copies``, for reference: the first half's own posterior means (a prior that only knows the
  pictures it was fitted to).

The floor is the first half against the second.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import _common  # noqa: F401  (puts the repo on sys.path)
import torch

ROOT = Path(__file__).resolve().parent.parent


def global_means(g, images: torch.Tensor, batch: int = 100) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([g.encode(x).global_mu.float() for x in images.split(batch)])


def draw(g, z_global: torch.Tensor, temperature: float, seed: int) -> torch.Tensor:
    """Finest images with the global latent ``z_global`` (N x zg) and every spatial group from its
    conditional prior at ``temperature`` (the noise of ``g.sample_latents(N, seed)``)."""
    n = len(z_global)
    groups = g.split_latents(g.sample_latents(n, seed))
    groups[0] = z_global
    temps = [1.0] + [temperature] * (len(groups) - 1)
    finest = g.levels[-1]
    with torch.inference_mode():
        out = [g._top_down(len(z), upto=finest, eps=[e[i:i + 64] for e in groups], temps=temps).images[finest]
               for i, z in zip(range(0, n, 64), z_global.split(64))]
    return torch.cat(out).float().clamp(-1, 1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="emoji64-hvae")
    p.add_argument("--data", default=str(ROOT / "data" / "emoji"), help="the model's training pictures")
    p.add_argument("--n", type=int, default=1000, help="pictures per half and samples per variant")
    p.add_argument("--components", type=int, default=16)
    p.add_argument("--temperatures", default="0.5,1.0", help="of the spatial levels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--grid", default="", help="write the first 16 samples of every variant to this PNG")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import numpy as np
    from sklearn.mixture import GaussianMixture

    import msgen
    from msgen import render
    from msgen.data import LIMITS, load_image_set
    from msgen.metrics import _subsample, diversity, fid_kid

    g = msgen.load(args.model).eval()
    if not getattr(g, "zg", 0):
        raise SystemExit(f"{args.model} has no global latent (an hvae with z_global > 0 is needed)")
    real = load_image_set(args.data, g.config.resolution, limits=dataclasses.replace(LIMITS, max_files=100_000)).images
    idx = _subsample(real, min(2 * args.n, len(real) // 2 * 2), args.seed)
    half = len(idx) // 2
    fit, held = real[idx[:half]].float(), real[idx[half:]].float()
    n = len(held)
    mus = global_means(g, fit)
    gen = torch.Generator().manual_seed(args.seed)
    m64 = mus.double()
    mean, cov = m64.mean(0), torch.cov(m64.T) + 1e-4 * torch.eye(m64.shape[1], dtype=torch.float64)
    ev = torch.linalg.eigvalsh(cov)
    print(f"{args.model}: {len(real)} pictures, fitted to {half}, scored against the other {n}; global latent "
          f"{mus.shape[1]}-d, posterior means' mean norm {mean.norm():.2f}, covariance eigenvalues "
          f"{ev.min():.3f}-{ev.max():.2f} (N(0, I): 1)")
    gaussian = (mean + torch.randn(n, mus.shape[1], generator=gen, dtype=torch.float64)
                @ torch.linalg.cholesky(cov).T).float()
    gm = GaussianMixture(n_components=args.components, covariance_type="full", reg_covar=1e-3,
                         random_state=args.seed).fit(mus.numpy())
    mixture = torch.from_numpy(gm.sample(n)[0]).float()[torch.randperm(n, generator=gen)]
    copies = mus[torch.randint(len(mus), (n,), generator=gen)]
    standard = torch.randn(n, mus.shape[1], generator=gen)
    floor = diversity(fit[:n], held)
    print(f"floor (one half against the other): precision {floor['precision']:.2f} recall {floor['recall']:.2f} "
          f"coverage {floor['coverage']:.2f}")
    print("| global prior | spatial T | precision | recall | density | coverage | near-dup | FID-EffLite0 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    tiles = []
    for t in [float(x) for x in args.temperatures.split(",")]:
        variants = {"N(0, I)": standard * t, "gaussian": gaussian, f"mixture-{args.components}": mixture,
                    "copies": copies}
        for name, z in variants.items():
            fake = draw(g, z, t, args.seed)
            d = diversity(held, fake)
            fid = fid_kid(held, fake)["fid_efflite0"]
            print(f"| {name} | {t} | {d['precision']:.2f} | {d['recall']:.2f} | {d['density']:.2f} | "
                  f"{d['coverage']:.2f} | {d['near_duplicates']:.2f} | {fid:.1f} |", flush=True)
            tiles.append(render.grid(list(render.to_uint8(fake[:16])), cols=16))
    if args.grid:
        from PIL import Image

        Image.fromarray(np.concatenate(tiles, 0)).save(args.grid)
        print(f"wrote {args.grid}: one row per variant, in the table's order")


if __name__ == "__main__":
    main()
