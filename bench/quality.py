"""Quality of the shipped models, and a same-CPU-time baseline against PyPI ``lightweight-gan``.

(About 410 lines: one benchmark report, its data, scoring, baseline runs and tables.)

    python bench/quality.py [--n 300] [--baseline-minutes 3] [--batch 16] [--write-cards]
                            [--datasets sprites emoji fashion] [--no-baseline] [--json out.json]

1. Quality: every shipped model in weights/ against the data set it was trained on (data/<name>,
   built by ``python -m msgen data <name>``): per-level Laplacian SWD (x1e3) and its mean,
   FID-EffLite0 and KID-EffLite0 (msgen.metrics; EfficientNet-Lite0 features, so NOT comparable
   with Inception FIDs), with the real-vs-real floor of each data set: two disjoint halves of a
   seeded shuffle, the first of which is also the real side of every model's score, so a model
   and the floor are measured with the same images and the same sample count. The count is
   ``min(--n, len(data) // 2)`` per data set (Dungeon Crawl has 1211 sprites: 605). hvae models
   also get their reconstruction error: per-pixel MSE (in [-1, 1] units, and PSNR) of
   ``reconstruct`` (posterior means -> decoder) on held-out images (Fashion-MNIST's 10,000 test
   images, which no model saw) or, where no held-out set exists (emoji: every glyph of the font
   was trained on), on training images, labelled as such.
2. Baseline (unless --no-baseline): for each data set, lightweight-gan (bench/lwgan_baseline.py:
   its own G, D, losses and DiffAugment at its CLI's default sizes, in a CPU loop, because its
   Trainer is CUDA-only) and msgen's multi-scale GAN from scratch (``msgen.train.Trainer``, the
   family's default config and default TrainOptions except the batch size, the step cap, and no
   intermediate checkpoints) are trained on the same images at the same resolution for the same
   CPU wall time, one after the other in this process: lightweight-gan for --baseline-minutes
   (its last step may overrun: a step of its default-size model takes minutes on a CPU), then
   msggan for exactly the wall time lightweight-gan used. Both are then scored as above, and
   the shipped models (trained far longer on a GPU) are listed beside them. Each run's process
   CPU time is reported too: on a shared machine it shows how much of the cores a run really got.

--write-cards stores each shipped model's figures in its config.json (``msgen.metrics``) and
re-renders its README.md card from them; both are written atomically and nothing else changes.
It also stores the seed the Generate page opens the model on (``msgen.metrics.opening_seed``
against the same real pictures); --opening-seeds does only that.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repo on sys.path)

ROOT = Path(__file__).resolve().parent.parent
DATASETS = {"sprites": 32, "emoji": 64, "fashion": 32, "broad": 32, "broad64": 64}  # name -> resolution the models use
DATA_ARGS = {"broad64": "broad --resolution 64"}  # ``python -m msgen data`` arguments of a set not named as its source


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- data -----------------------------------------------------------------------------------
@dataclasses.dataclass
class RealSet:
    name: str
    images: "torch.Tensor"  # the whole set (training data)  # noqa: F821
    pool: "torch.Tensor"  # the n real images every model is scored against  # noqa: F821
    pool_features: "torch.Tensor"  # noqa: F821
    floor: dict  # pool vs a disjoint n real images
    n: int


def load_real(name: str, data_root: Path, n: int, seed: int, *, measure_floor: bool = True) -> RealSet:
    import torch

    from msgen.data import LIMITS, load_image_set
    from msgen.metrics import diversity, efflite0_features, fid_kid, swd

    big = dataclasses.replace(LIMITS, max_files=25000, max_zip_entries=30000, max_total_bytes=2**31)
    images = load_image_set(data_root / name, DATASETS[name], limits=big).images
    if len(images) < 8:
        raise SystemExit(f"{data_root / name}: no data set; build it with python -m msgen data {DATA_ARGS.get(name, name)} --out {data_root / name}")
    half = min(n, len(images) // 2)
    # The same seeded shuffle as msgen.metrics.real_vs_real, so the floor equals its figure.
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[: 2 * half]
    a, b = images[idx[:half]], images[idx[half:]]
    if not measure_floor:  # the opening seeds need only the pool
        return RealSet(name, images, a, torch.empty(0), {}, half)
    fa, fb = efflite0_features(a), efflite0_features(b)
    floor = {"swd": swd(a, b, seed=seed)} | fid_kid(fa, fb, seed=seed) | diversity(a, b) | {"n_real": half, "n_fake": half}
    return RealSet(name, images, a, fa, floor, half)


def score(model, real: RealSet, seed: int) -> dict:
    from msgen.metrics import evaluate

    return evaluate(model, real.pool, n=real.n, seed=seed, real_features=real.pool_features)


def fashion_test_images(n: int, seed: int):
    """``n`` of Fashion-MNIST's test images (seeded pick), padded with black to 32x32 exactly as
    msgen.datasets pads the training images, in [-1, 1]."""
    import torch

    from msgen.datasets import fashion_test_images as test_set

    x = torch.from_numpy(test_set())
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return (x[idx].float() / 127.5 - 1).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def heldout(real: RealSet, n: int, seed: int):
    from msgen.datasets import FASHION_TEST

    if real.name == "fashion" and Path(FASHION_TEST).is_file():
        return fashion_test_images(n, seed), "Fashion-MNIST test set (held out)"
    return real.pool[:n], "training images (no held-out set exists)"


def recon_error(g, images) -> dict:
    """The family module's ``reconstruction_error`` (every family that encodes has one): per-level
    MSE against the area-downsampled image, PSNR of the finest level, and what else the family
    reports (hvae: KL nats per level; var: the full-size MSE of each scale's decoding)."""
    import importlib

    r = importlib.import_module(type(g).__module__).reconstruction_error(g, images)
    return r | {"mse": r[f"mse_{max(g.levels)}"]}


def variant_figures(g, name: str, seed: int) -> dict:
    """Decompose's "keep coarse, vary detail" at every split level, on the model's example pictures
    (weights/examples/<data set>_*.png, the Decompose tab's examples): msgen.metrics.variant_fidelity."""
    from msgen.metrics import example_pictures, variant_fidelity

    files = sorted((ROOT / "weights" / "examples").glob(f"{name}_*.png"))
    if len(files) < 2:
        return {}
    pics = example_pictures(files, max(g.levels))
    out = {}
    for level in g.levels[1:]:
        rows = variant_fidelity(g, pics, level, seed=seed)
        out[level] = {"pictures": [f.stem for f in files], "rows": rows,
                      "closer_to_original": sum(r["to_original"] > r["to_other"] for r in rows),
                      "sharp_enough": sum(r["sharpness"] >= 0.5 for r in rows)}
    return out


def variant_table(rows: dict[str, dict]) -> str:
    lines = ["| model | split | picture | cosine to original | best cosine to another example | among variants "
             "| sharpness / reconstruction's |", "|---|---|---|---|---|---|---|"]
    for name, levels in rows.items():
        for level, v in levels.items():
            for pic, r in zip(v["pictures"], v["rows"]):
                lines.append(f"| {name} | {level}x{level} | {pic} | {r['to_original']:.2f} | {r['to_other']:.2f} "
                             f"| {r['among_variants']:.2f} | {r['sharpness']:.2f} |")
    return "\n".join(lines)


# --- tables ---------------------------------------------------------------------------------
def fmt(x, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def recon_table(rows: dict[str, dict]) -> str:
    lines = ["| model | images | n | recon MSE ([-1, 1] units) | PSNR (dB) |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['images']} | {r['n']} | {r['mse']:.4g} | {r['psnr_db']:.2f} |")
    return "\n".join(lines)


def baseline_table(rows: list[dict]) -> str:
    lines = ["| dataset | model | trained on | wall time | process CPU time | steps | SWD mean x1e3 | KID-EffLite0 x1e3 "
             "| FID-EffLite0 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wall = "-" if r.get("wall_s") is None else f"{r['wall_s']:.0f} s"
        cpu = "-" if r.get("cpu_s") is None else f"{r['cpu_s']:.0f} s"
        lines.append(f"| {r['dataset']} | {r['model']} | {r['hardware']} | {wall} | {cpu} | {r.get('steps', '-')} | "
                     f"{fmt(r['swd']['mean'])} | {fmt(r['kid_efflite0'] * 1e3, 3)} | {fmt(r['fid_efflite0'])} |")
    return "\n".join(lines)


def verdict(dataset: str, lw: dict, ms: dict, shipped: dict[str, dict]) -> list[str]:
    def beats(a, b):
        return a["fid_efflite0"] < b["fid_efflite0"] and a["swd"]["mean"] < b["swd"]["mean"]

    out = []
    if beats(ms, lw):
        out.append(f"{dataset}: same CPU time -> msgen msggan wins on both FID-EffLite0 and SWD mean.")
    elif beats(lw, ms):
        out.append(f"{dataset}: same CPU time -> lightweight-gan wins on both FID-EffLite0 and SWD mean.")
    else:
        fid = "msgen msggan" if ms["fid_efflite0"] < lw["fid_efflite0"] else "lightweight-gan"
        s = "msgen msggan" if ms["swd"]["mean"] < lw["swd"]["mean"] else "lightweight-gan"
        out.append(f"{dataset}: same CPU time -> split: {fid} wins on FID-EffLite0, {s} on SWD mean.")
    for name, r in shipped.items():
        ok = beats(r, lw)
        out.append(f"{dataset}: shipped {name} {'beats' if ok else 'does NOT beat'} the lightweight-gan run on "
                   f"both FID-EffLite0 and SWD mean.")
    return out


# --- cards ----------------------------------------------------------------------------------
def card_metrics(result: dict, floor: dict, recon: dict | None, command: str, data_desc: str, sha: str,
                 variants: dict | None = None) -> dict:
    levels = sorted((k for k in result["swd"] if isinstance(k, int)), reverse=True)
    m = {
        "swd_x1e3": {f"{lv}px": round(result["swd"][lv], 3) for lv in levels} | {"mean": round(result["swd"]["mean"], 3)},
        "fid_efflite0": round(result["fid_efflite0"], 3),
        "kid_efflite0_x1e3": round(result["kid_efflite0"] * 1e3, 3),
        "kid_efflite0_std_x1e3": round(result["kid_efflite0_std"] * 1e3, 3),
        "real_vs_real_floor": {"swd_mean_x1e3": round(floor["swd"]["mean"], 3),
                               "fid_efflite0": round(floor["fid_efflite0"], 3),
                               "kid_efflite0_x1e3": round(floor["kid_efflite0"] * 1e3, 3)},
    }
    for key in ("precision", "recall", "density", "coverage", "near_duplicates"):
        if key in result:
            m[key] = round(result[key], 3)
            m["real_vs_real_floor"][key] = round(floor[key], 3)
    if recon:
        m["reconstruction"] = {"mse": round(recon["mse"], 5), "psnr_db": round(recon["psnr_db"], 2),
                               "images": recon["images"], "n": recon["n"]}
    if variants:
        m["decompose_variants"] = {f"{level}px": {"closer_to_original": v["closer_to_original"],
                                                  "sharp_enough": v["sharp_enough"], "of": len(v["rows"])}
                                   for level, v in variants.items()}
    m |= {"n_real": result["n_real"], "n_fake": result["n_fake"], "eval_data": data_desc,
          "feature_space": "EfficientNet-Lite0 (FID-EffLite0 is not comparable with Inception FID)",
          "eval_command": command, "model_sha256": sha}
    return m


def chosen_opening_seed(g, real: RealSet) -> int:
    """The seed the Generate page opens ``g`` on: ``msgen.metrics.opening_seed`` against its data."""
    from msgen.metrics import diversity_features, opening_seed

    return opening_seed(g, diversity_features(real.pool))


def write_card(model_dir: Path, metrics: dict | None = None, **meta) -> None:
    """``metrics`` and any other ``meta`` fields into ``model_dir``'s config.json, and its README.md
    card re-rendered from it (the card shows its config); both atomic, their file modes kept."""
    from msgen.card import model_card
    from msgen.checkpoint import atomic_write_text
    from msgen.models import config_from_dict

    cfg = json.loads((model_dir / "config.json").read_text())
    cfg.setdefault("msgen", {}).update(meta | ({"metrics": metrics} if metrics is not None else {}))
    config = config_from_dict({k: v for k, v in cfg.items() if k != "msgen"})
    for fname, text in (("config.json", json.dumps(cfg, indent=2, sort_keys=False) + "\n"),
                        ("README.md", model_card(config, cfg["msgen"]))):
        path = model_dir / fname
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        atomic_write_text(path, text)
        os.chmod(path, mode)  # atomic_write_text's temp file is 0600; keep the file's own mode


# --- baseline -------------------------------------------------------------------------------
def train_msggan(real: RealSet, seconds: float, batch: int, seed: int, run_dir: Path):
    from msgen.train import Trainer, TrainOptions

    clock: dict[str, float] = {}

    def stop() -> bool:  # first called just before the first step: the clock starts there
        now = time.perf_counter()
        clock.setdefault("t0", now)
        clock.setdefault("c0", time.process_time())
        if now - clock["t0"] >= seconds:
            clock.setdefault("t1", now)
            clock.setdefault("c1", time.process_time())
            return True
        return False

    opts = TrainOptions(steps=10_000_000, batch_size=batch, seed=seed, sample_every=10_000_000,
                        checkpoint_every=10_000_000)
    trainer = Trainer(images=real.images, run_dir=run_dir, family="msggan", resolution=DATASETS[real.name],
                      options=opts, stop=stop)
    trainer.train()
    return trainer.G_ema.eval(), trainer.step, clock["t1"] - clock["t0"], clock["c1"] - clock["c0"]


def save_grid(images, path: Path) -> None:
    import torchvision.utils as vutils

    path.parent.mkdir(parents=True, exist_ok=True)
    vutils.save_image(images[:64], str(path), nrow=8, normalize=True, value_range=(-1, 1), padding=1)


def run_baseline(real: RealSet, args, shipped_rows: dict[str, dict], shipped_meta: dict[str, dict], grids: Path | None):
    import torch

    from lwgan_baseline import LWGANBaseline
    from msgen.metrics import sample_images

    seconds = args.baseline_minutes * 60
    res = DATASETS[real.name]
    rows = []
    log(f"{real.name}: lightweight-gan, {args.baseline_minutes} min on the CPU")
    lw = LWGANBaseline(res, num_images=len(real.images), batch_size=args.batch, seed=args.seed, fmap_max=args.lw_fmap_max)
    gp, dp = lw.num_params()
    lw_steps, lw_wall, lw_cpu = lw.train_for(real.images, seconds, log=log, log_every=1)
    torch.manual_seed(args.seed)  # its Noise layers draw from the global RNG
    lw_model = lw.sampler()
    lw_r = score(lw_model, real, args.seed)
    rows.append(dict(dataset=real.name, model=f"lightweight-gan (CLI defaults, G {gp / 1e6:.1f}M / D {dp / 1e6:.1f}M params)",
                     hardware="this CPU", wall_s=lw_wall, cpu_s=lw_cpu, steps=lw_steps, **lw_r))
    log(f"{real.name}: lightweight-gan {lw_steps} steps in {lw_wall:.0f}s: SWD {lw_r['swd']['mean']:.1f}, FID {lw_r['fid_efflite0']:.1f}")
    log(f"{real.name}: msgen msggan from scratch, {lw_wall:.0f} s on the CPU (what lightweight-gan used)")
    with tempfile.TemporaryDirectory(prefix="msgen-quality-") as tmp:
        # A lightweight-gan step takes minutes on a CPU, so its loop overshoots the budget; msggan
        # gets exactly the wall time lightweight-gan used, not the nominal budget.
        ms_model, ms_steps, ms_wall, ms_cpu = train_msggan(real, lw_wall, args.batch, args.seed, Path(tmp))
    ms_r = score(ms_model, real, args.seed)
    mp = sum(p.numel() for p in ms_model.parameters())
    rows.append(dict(dataset=real.name, model=f"msgen msggan from scratch (default config, G {mp / 1e6:.1f}M params)",
                     hardware="this CPU", wall_s=ms_wall, cpu_s=ms_cpu, steps=ms_steps, **ms_r))
    log(f"{real.name}: msggan {ms_steps} steps in {ms_wall:.0f}s: SWD {ms_r['swd']['mean']:.1f}, FID {ms_r['fid_efflite0']:.1f}")
    if grids is not None:
        torch.manual_seed(args.seed)
        save_grid(sample_images(lw_model, 64, seed=args.seed), grids / f"{real.name}-lightweight-gan.png")
        save_grid(sample_images(ms_model, 64, seed=args.seed), grids / f"{real.name}-msggan-cpu.png")
    for name, r in shipped_rows.items():
        meta = shipped_meta[name]
        hw = f"{meta.get('hardware', '?')} ({meta.get('family')}, trained longer on a GPU)"
        rows.append(dict(dataset=real.name, model=f"shipped {name}", hardware=hw, wall_s=meta.get("wall_time_s"),
                         steps=meta.get("steps"), **r))
    rows.append(dict(dataset=real.name, model="real vs real (floor)", hardware="-", wall_s=None, steps="-", **real.floor))
    return rows, verdict(real.name, lw_r, ms_r, shipped_rows)


# --- main -----------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="fakes and reals per score (capped at half the data set)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=str(ROOT / "data"), help="folder holding sprites/, emoji/, fashion/")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--baseline-minutes", type=float, default=3.0, help="CPU wall time per model per data set")
    p.add_argument("--batch", type=int, default=16, help="batch size of both baseline runs")
    p.add_argument("--lw-fmap-max", type=int, default=512, help="lightweight-gan's fmap_max (its default: 512)")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--write-cards", action="store_true", help="store the figures in weights/*/config.json and README.md")
    p.add_argument("--opening-seeds", action="store_true",
                   help="only choose each shipped model's opening seed (msgen.metrics.opening_seed) into its config.json")
    p.add_argument("--grids", default=None, help="folder for sample grids of the baseline runs")
    p.add_argument("--json", default=None, help="write every figure here")
    args = p.parse_args()

    import torch

    import msgen

    torch.set_num_threads(args.threads)
    command = "python bench/quality.py " + shlex.join(sys.argv[1:])
    t_start = time.perf_counter()
    log(f"{command}  (torch {torch.__version__}, {args.threads} threads)")
    shipped = [e for e in msgen.list_models() if e.source == "shipped"]
    out: dict = {"command": command, "datasets": {}}
    all_baseline, verdicts = [], []
    for name in args.datasets:
        real = load_real(name, Path(args.data), args.n, args.seed, measure_floor=not args.opening_seeds)
        if real.floor:
            log(f"{name}: {len(real.images)} images, scoring with n = {real.n}; floor SWD {real.floor['swd']['mean']:.2f}, "
                f"FID {real.floor['fid_efflite0']:.2f}")
        rows, recon, metas, variants = {}, {}, {}, {}
        for e in (e for e in shipped if e.name.startswith(name.rstrip("0123456789")) and e.resolution == DATASETS[name]):
            try:
                g = msgen.load(e.path)
            except msgen.CheckpointError as exc:  # e.g. weights being replaced by a concurrent export
                log(f"{name}: {e.name} skipped: {exc}")
                out.setdefault("skipped", {})[e.name] = str(exc)
                continue
            metas[e.name] = dict(g.meta)
            if args.opening_seeds:
                seed = chosen_opening_seed(g, real)
                write_card(e.path, opening_seed=seed)
                log(f"{e.name}: opens on seed {seed}")
                continue
            rows[e.name] = score(g, real, args.seed)
            if hasattr(g, "reconstruct"):
                images, desc = heldout(real, real.n, args.seed)
                recon[e.name] = recon_error(g, images) | {"images": desc, "n": len(images)}
            if hasattr(g, "resample"):
                variants[e.name] = variant_figures(g, name, args.seed)
            log(f"{name}: {e.name}: SWD {rows[e.name]['swd']['mean']:.2f}, FID {rows[e.name]['fid_efflite0']:.2f}"
                + (f", recon MSE {recon[e.name]['mse']:.4f}" if e.name in recon else ""))
            if args.write_cards:
                data_desc = f"data/{name} ({len(real.images)} images, python -m msgen data {DATA_ARGS.get(name, name)})"
                sha = hashlib.sha256((Path(e.path) / "model.safetensors").read_bytes()).hexdigest()[:16]
                write_card(e.path, card_metrics(rows[e.name], real.floor, recon.get(e.name), command, data_desc, sha,
                                                variants.get(e.name)), opening_seed=chosen_opening_seed(g, real))
        if args.opening_seeds:
            continue
        table = format_quality(name, real, rows, recon, args.seed)
        if any(variants.values()):
            table += "\n" + variant_table({k: v for k, v in variants.items() if v}) + "\n"
        print(table, flush=True)
        out["datasets"][name] = {"n": real.n, "num_images": len(real.images), "floor": real.floor, "models": rows,
                                 "reconstruction": recon, "decompose_variants": variants, "quality_table": table}
        if not args.no_baseline:
            brows, v = run_baseline(real, args, rows, metas, Path(args.grids) if args.grids else None)
            all_baseline += brows
            verdicts += v
            print(baseline_table(brows) + "\n\n" + "\n".join(v) + "\n", flush=True)
            out["datasets"][name]["baseline"] = brows
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    if args.opening_seeds:
        return
    print("\n# Quality of the shipped models\n")
    for name in args.datasets:
        print(out["datasets"][name]["quality_table"] + "\n")
    if all_baseline:
        print(f"# Baseline: same CPU wall time ({args.baseline_minutes:g} min each, batch {args.batch}, "
              f"{args.threads} threads)\n")
        print(baseline_table(all_baseline) + "\n")
        print("\n".join(verdicts))
    out["total_wall_s"] = time.perf_counter() - t_start
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    log(f"done in {out['total_wall_s'] / 60:.1f} min")


def format_quality(name: str, real: RealSet, rows: dict, recon: dict, seed: int) -> str:
    from msgen.metrics import format_table

    parts = [f"## {name}: {len(real.images)} images, {real.n} real vs {real.n} generated (seed {seed})", "",
             format_table(rows | {"real vs real (floor)": real.floor})]
    if recon:
        parts += ["", recon_table(recon)]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    main()
