"""Few-shot yardstick: the Train tab's default fine-tune on small public picture sets, and how
diverse and faithful its samples are.

    python bench/fewshot.py --out OUT [--sets tango,emojione] [--sizes 50,100,200]
                            [--variants default,r3gan,...] [--steps N] [--threads N] [--retrain]
    python bench/fewshot.py --out OUT --summary     # the variant x set table of OUT/results.json

For every set x size x recipe variant it builds the set (``msgen.datasets``: pictures no shipped
model was trained on), fine-tunes the page's default base (a shipped 32 px GAN) through the
page's own job code (``JobManager``: its data loading, torch thread count, SWD report,
checkpoints) with the page's defaults (``msgen.ui.train.DEFAULT_*``) plus the variant's changes,
then prints per run: wall time, images/s, machine load, precision / recall / density / coverage
(k = 5, Lite0 features at 128 px, Naeem et al. 2020), the near-duplicate share (RMS < 0.05),
per-level SWD and FID/KID-EffLite0, each beside the set's real-vs-real floor (the set split in two
halves; the near-duplicate floor is the set's own share). As many samples are drawn as the set
has pictures, so the set's own near-duplicate share is comparable with the samples'. Sample grids
go to ``OUT/<set>-<n>-<variant>.png`` and the figures to ``OUT/results.json``.

A finished run folder is reused: rerunning with more sets or variants only trains what is new
(``--retrain`` starts over). No variant here puts Lite0 features into the discriminator, so
FID-EffLite0 and coverage stay independent of what training optimises.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repo on sys.path)
import torch

SETS = ("tango", "emojione")
SIZES = (50, 100, 200)

# Recipe variants: changes to the page's default TrainOptions (msgen/train.py says what each does).
VARIANTS: dict[str, dict] = {
    "default": {},
    "r3gan": {"loss": "rpgan", "r1_gamma": 1.0, "r2_gamma": 1.0},
    "cdc": {"cdc_weight": 50.0},
    "cdc-r3gan": {"cdc_weight": 50.0, "loss": "rpgan", "r1_gamma": 1.0, "r2_gamma": 1.0},
    "ms": {"ms_weight": 1.0},
    "ms8": {"ms_weight": 1.0, "ms_size": 8},
    "ms8-light": {"ms_weight": 0.1, "ms_size": 8},
    "lr-half": {"lr": 1e-4},
    # var: longer tokenizer fine-tunes (its reconstructions bound what samples can cover; measured
    # before the fine-tune drew the coarse scales a token at a time, FineTune.config)
    "tok1000": {"steps": 2000, "tokenizer_share": 0.5, "hflip": 0.0},
    "tok1800": {"steps": 3000, "tokenizer_share": 0.6, "hflip": 0.0},
    "tok2000": {"steps": 3500, "tokenizer_share": 4 / 7, "hflip": 0.0},
    # var, spelled out in full against today's default (3000 steps, hflip 0.5), each what it measured:
    "ar3": {"steps": 1500, "hflip": 0.0},  # the previous default (results and grids *-ar3)
    "drop1": {"steps": 1500, "hflip": 0.0, "dropout": 0.1},  # a transformer that memorises less
    "drop3": {"steps": 1500, "hflip": 0.0, "dropout": 0.3},
    "flip": {"steps": 1500},  # mirrored pictures, the previous step count
    "flip-drop1": {"steps": 1500, "dropout": 0.1},
    "flip-pred": {"tokenizer_share": 0.21},  # the extra 1000 steps all the transformer's
    "flip-2500": {"steps": 2500},  # mirrored, 2500 steps: the default before (results and grids *-flip-2500)
    # "flip-3000" (mirrored, 3000 steps) is the default now (its screening runs are the default's)
}


def build_set(name: str, n: int, folder: Path) -> Path:
    from msgen.datasets import build_dataset

    if not folder.is_dir() or len(list(folder.glob("*.png"))) != n:
        shutil.rmtree(folder, ignore_errors=True)
        got = build_dataset(name, folder, limit=n, seed=0)
        if got < n:
            raise SystemExit(f"{name} has only {got} usable pictures, fewer than {n}")
    return folder


def default_base(name: str | None = None):
    """The page's preselected base (or the shipped model ``name``)."""
    from msgen.ui import common
    from msgen.ui import train as tab

    ctx = common.AppContext(runs_dir=Path("/nonexistent-runs"))
    choice = f"model:{name}" if name else tab.default_base(ctx)
    if not choice.startswith("model:"):
        raise SystemExit("no shipped model to fine-tune (weights/ is empty)")
    return ctx.find(choice[6:], None)


def page_options(variant: str, steps: int | None, family: str):
    """The page's default fine-tune of a ``family`` base (its ``Family.finetune`` steps, batch and
    learning rate, the family's default options) plus the variant's changes."""
    from msgen.defaults import FINETUNE
    from msgen.models import get_family
    from msgen.train import TrainOptions

    fam = get_family(family)
    start = fam.finetune
    opts = dict(steps=steps or start.steps, batch_size=start.batch_size, lr=start.lr,
                sample_every=FINETUNE.sample_every, checkpoint_every=FINETUNE.checkpoint_every)
    change = VARIANTS[variant]
    loop = {k: v for k, v in change.items() if k in opts}  # e.g. lr; the rest are the family's own options
    own = {k: v for k, v in change.items() if k not in loop}
    return TrainOptions(**(opts | loop), family=fam.options_cls(**own))


def fine_tune(data: Path, run_dir: Path, base: Path, options, threads: int | None = None) -> dict:
    """The page's run: its worker thread and (unless ``threads``) thread count, data loading, quality report."""
    from msgen.ui.jobs import JobManager, JobSpec

    manager = JobManager(threads=threads)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    job = manager.submit(JobSpec(run_dir=run_dir, name=run_dir.name, owner_key="bench", data=data, options=options,
                                 base=base))
    manager.wait(job, timeout=24 * 3600)
    wall = time.perf_counter() - t
    if job.state != "finished":
        raise RuntimeError(f"fine-tune {job.state}: {job.message}")
    return {"wall_s": wall, "images_per_s": job.step * options.batch_size / wall, "threads": manager.threads,
            "load_before": load, "load_after": os.getloadavg()[0], "steps": job.step}


def measure(model_dir: Path, real: torch.Tensor, seed: int = 0) -> dict:
    import msgen
    from msgen.metrics import diversity, fid_kid, sample_images, swd

    G = msgen.load(model_dir)
    fake = sample_images(G, len(real), seed=seed)
    out = diversity(real, fake) | {"swd": _str_keys(swd(real, fake, seed=seed))} | fid_kid(real, fake, seed=seed)
    return out | copy_figures(real, fake, G), fake


def copy_figures(real: torch.Tensor, fake: torch.Tensor, G=None) -> dict:
    """How far the samples are from copies: the median RMS (on [-1, 1]) to the nearest training
    picture, and the share within RMS 0.10 of one; for a model that reconstructs (var, hvae), the
    median RMS of its reconstructions of the training pictures too (a sample that close to a
    training picture is that picture through the model's own tokenizer)."""
    from msgen.metrics import nearest_training_rms

    d = nearest_training_rms(real, fake)
    out = {"nearest_rms_median": float(d.median()), "within_0.10": float((d < 0.10).float().mean())}
    if G is not None and hasattr(G, "reconstruct"):
        with torch.inference_mode():
            rec = torch.cat([G.reconstruct(x).finest.float().clamp(-1, 1) for x in real.split(64)])
        out["recon_rms_median"] = float((rec - real).pow(2).flatten(1).mean(1).sqrt().median())
    return out


def floor_copy_figures(real: torch.Tensor, seed: int = 0) -> dict:
    """The references for ``copy_figures`` and the near-duplicate share: one half of the set against
    the other (how far a new real picture lies from the rest), and a copy machine's near-duplicate
    share (as many draws from the set, with replacement; and from the set with its mirror images,
    what a model that copies its mirrored training pictures would score)."""
    from msgen.metrics import _subsample, copies_near_duplicate_share

    idx = _subsample(real, len(real) // 2 * 2, seed)
    a, b = real[idx[: len(idx) // 2]], real[idx[len(idx) // 2 :]]
    return copy_figures(a, b) | {"near_duplicates_copies": copies_near_duplicate_share(real, seed=seed),
                                 "near_duplicates_copies_mirrored": copies_near_duplicate_share(real, seed=seed,
                                                                                                mirrored=True)}


def floor(real: torch.Tensor, seed: int = 0) -> dict:
    from msgen.metrics import _subsample, diversity_floor, fid_kid, swd

    idx = _subsample(real, len(real) // 2 * 2, seed)
    a, b = real[idx[: len(idx) // 2]], real[idx[len(idx) // 2 :]]
    return (diversity_floor(real, seed=seed) | {"swd": _str_keys(swd(a, b, seed=seed))} | fid_kid(a, b, seed=seed)
            | floor_copy_figures(real, seed))


def write_results(path: Path, results: dict) -> None:
    """results.json, written whole or not at all (a killed bench keeps the previous file)."""
    from msgen.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(results, indent=1, default=str))


def _str_keys(d: dict) -> dict:
    return {str(k): v for k, v in d.items()}  # as JSON stores them


def save_grid(images: torch.Tensor, path: Path, count: int = 64) -> None:
    from torchvision.utils import save_image

    save_image((images[:count] + 1) / 2, path, nrow=8, padding=1, pad_value=1.0)


def row(label: str, r: dict) -> str:
    swd_levels = " / ".join(f"{r['swd'][k]:.0f}" for k in sorted((k for k in r["swd"] if k != "mean"), key=int, reverse=True))
    timing = (f"{r['wall_s']:.0f} s, {r['images_per_s']:.1f} img/s, {r['threads']} thr, "
              f"load {r['load_before']:.1f}-{r['load_after']:.1f}"
              if "wall_s" in r else "-")
    dup = f"{r['near_duplicates']:.2f}"
    if "near_duplicates_copies" in r:
        dup += f" (copies {r['near_duplicates_copies']:.2f}"
        dup += f", mirrored {r['near_duplicates_copies_mirrored']:.2f})" if "near_duplicates_copies_mirrored" in r else ")"
    near = (f"{r['nearest_rms_median']:.2f}, {r['within_0.10']:.2f}" if "nearest_rms_median" in r else "-")
    if "recon_rms_median" in r:
        near += f" (reconstructions {r['recon_rms_median']:.2f})"
    return (f"| {label} | {timing} | {r['precision']:.2f} | {r['recall']:.2f} | {r['density']:.2f} | "
            f"{r['coverage']:.2f} | {dup} | {near} | {swd_levels} ({r['swd']['mean']:.0f}) | "
            f"{r['fid_efflite0']:.0f} | {r['kid_efflite0'] * 1e3:.1f} |")


HEADER = ("| run | wall time, images/s, torch threads, load (1-min avg before-after) | precision | recall | density | coverage | "
          "near-dup share | nearest training picture: median RMS, share within 0.10 | SWD x1e3 per level (mean) | "
          "FID-EffLite0 | KID-EffLite0 x1e3 |\n|" + "---|" * 11)


def summary(results: dict) -> str:
    """Variant x set table of the figures that show collapse, from a results.json."""
    runs = sorted({k.split("/", 1)[1] for k in results if not k.endswith("/floor")}, key=lambda v: (v != "default", v))
    sets = sorted({k.split("/")[0] for k in results})
    lines = ["| variant | set | coverage (floor) | near-dup share (set's own) | SWD mean x1e3 (floor) | "
             "FID-EffLite0 (floor) | wall time, threads, load |", "|" + "---|" * 7]
    for v in runs:
        for name in sets:
            r, f = results.get(f"{name}/{v}"), results[f"{name}/floor"]
            if not r or "coverage" not in r:
                continue
            t = r["timing"]
            lines.append(f"| {v} | {name} | {r['coverage']:.2f} ({f['coverage']:.2f}) | {r['near_duplicates']:.2f} "
                         f"({f['near_duplicates']:.2f}) | {r['swd']['mean']:.0f} ({f['swd']['mean']:.0f}) | "
                         f"{r['fid_efflite0']:.0f} ({f['fid_efflite0']:.0f}) | {t['wall_s']:.0f} s, "
                         f"{t.get('threads', 1)}, {t['load_before']:.1f}-{t['load_after']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--sizes", default=",".join(map(str, SIZES)))
    p.add_argument("--variants", default="default", help=f"comma-separated, among {', '.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=None, help="override the page's default steps (a quick screen)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the page's, training_threads())")
    p.add_argument("--retrain", action="store_true", help="train again even where a finished run exists")
    p.add_argument("--base", default=None, help="a shipped model to start from (default: the page's preselected base)")
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--summary", action="store_true", help="print the variant x set table of OUT/results.json and stop")
    args = p.parse_args(argv)
    if args.summary:
        print(summary(json.loads((args.out / "results.json").read_text())))
        return
    from msgen.data import load_image_set

    base = default_base(args.base)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    print(f"base {base.name} ({base.resolution} px); {os.cpu_count()} CPUs; uptime load {os.getloadavg()}")
    print("FID/KID-EffLite0 and coverage share no features with any discriminator here.\n")
    print(HEADER)
    for name in args.sets.split(","):
        for n in map(int, args.sizes.split(",")):
            folder = build_set(name, n, args.out / "data" / f"{name}-{n}")
            real = load_image_set(folder, base.resolution).images
            key = f"{name}-{n}" + (f"-{base.resolution}px" if base.resolution != 32 else "")  # a floor per size
            if f"{key}/floor" not in results:
                results[f"{key}/floor"] = floor(real)
                save_grid(real, args.out / f"{key}-real.png")
            if "near_duplicates_copies_mirrored" not in results[f"{key}/floor"]:  # measured before these figures
                results[f"{key}/floor"] |= floor_copy_figures(real)
            print(row(f"{key} real vs real", results[f"{key}/floor"]), flush=True)
            for variant in args.variants.split(","):
                tag = variant if args.base is None else f"{args.base}-{variant}"
                run_dir = args.out / "runs" / f"{key}-{tag}"
                rkey = f"{key}/{tag}" + (f"/{args.steps}" if args.steps else "")
                if args.retrain or rkey not in results or not (run_dir / "model").is_dir():
                    shutil.rmtree(run_dir, ignore_errors=True)
                    timing = fine_tune(folder, run_dir, base.path, page_options(variant, args.steps, base.family),
                                       args.threads)
                    results[rkey] = {"timing": timing}
                    write_results(results_path, results)
                if args.train_only:
                    continue
                if "coverage" not in results[rkey]:
                    figures, fake = measure(run_dir / "model", real)
                    save_grid(fake, args.out / f"{rkey.replace('/', '-')}.png")
                    results[rkey] |= figures
                    write_results(results_path, results)
                elif "recon_rms_median" not in results[rkey] and (run_dir / "model").is_dir():
                    import msgen
                    from msgen.metrics import sample_images

                    G = msgen.load(run_dir / "model")
                    results[rkey] |= copy_figures(real, sample_images(G, len(real), seed=0), G)
                print(row(f"{rkey}", results[rkey] | results[rkey]["timing"]), flush=True)
    write_results(results_path, results)


if __name__ == "__main__":
    main()
