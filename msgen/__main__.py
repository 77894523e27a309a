"""Command line: ``python -m msgen {generate,train,eval,data,models,push}``.

Each command is a thin wrapper over the same functions the app and the Python API use.
Errors a user can cause print one clear line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def _save_png(tensor, path: Path, *, upscale: int = 1) -> None:
    from PIL import Image

    from .checkpoint import atomic_write_bytes
    import io

    arr = ((tensor.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    img = Image.fromarray(arr)
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def cmd_generate(args: argparse.Namespace) -> None:
    import torchvision.utils as vutils

    import msgen
    from . import features as feat

    g = msgen.load(args.model)
    out = msgen.generate(g, seed=args.seed, scale=args.scale, truncation=args.truncation,
                         mix_seed=args.mix_seed, mix_level=args.mix_level, n=args.n, features=bool(args.features))
    final = out.images[out.scale]
    image = final[0] if args.n == 1 else vutils.make_grid(final, nrow=min(args.n, 8), padding=1, pad_value=1.0)
    _save_png(image, Path(args.out), upscale=args.upscale)
    print(f"wrote {args.out} ({out.scale}x{out.scale}, seed {args.seed})")
    if args.features:
        fdir = Path(args.features)
        stats = []
        for level, img in out.images.items():
            _save_png(img[0], fdir / f"image_{level}.png")
        for level, fmap in out.features.items():
            f0 = fmap[0]
            _save_png(feat.pca_rgb(f0) * 2 - 1, fdir / f"features_{level}_pca.png")
            top = feat.top_channels(f0, 8)
            chans = [feat.channel_image(f0, c).expand(3, -1, -1) for c in top]
            grid = vutils.make_grid(chans, nrow=len(chans), padding=1, pad_value=1.0)
            _save_png(grid * 2 - 1, fdir / f"features_{level}_top.png")
            stats.append(vars(feat.level_stats(level, f0)) | {"top_channels": top})
        (fdir / "stats.json").write_text(json.dumps(stats, indent=1))
        print(f"wrote per-level images, feature maps and stats to {fdir}")


def cmd_train(args: argparse.Namespace) -> None:
    """One process, or one rank of ``torchrun --nproc_per_node=N -m msgen train`` (msgen.distributed)."""
    from . import distributed

    world = distributed.init_from_env(args.device)
    try:
        _train(args, world)
    finally:
        distributed.shutdown(world)


def _train(args: argparse.Namespace, world) -> None:
    from .data import load_image_set
    from .train import Trainer, TrainOptions
    from .zoo import resolve_model

    say = print if world.is_main else (lambda *a, **k: None)

    if bool(args.model) == bool(args.family):
        raise ValueError("give exactly one of --model (fine-tune) or --family (from scratch)")
    base = resolve_model(args.model) if args.model else None
    if base is not None:
        from .checkpoint import read_model_dir

        resolution = read_model_dir(base)[0].resolution
    else:
        resolution = args.resolution
    data = load_image_set(args.data, resolution, fit=args.fit, background=_colour(args.background),
                          limits=_limits(args.max_files))
    for rej in data.rejected[:20]:
        say(f"skipped {rej.name}: {rej.reason}", file=sys.stderr)
    if len(data.rejected) > 20:
        say(f"... and {len(data.rejected) - 20} more skipped", file=sys.stderr)
    n = data.images.shape[0]
    if n == 0:
        raise ValueError(f"no usable images in {args.data}")
    if args.limit:
        data.images = data.images[: args.limit]
        n = data.images.shape[0]
    if n < 16:
        say(f"warning: only {n} images; the generator will likely memorise them", file=sys.stderr)
    augment = () if args.augment == "none" else tuple(a for a in args.augment.split(",") if a)
    opts = TrainOptions(steps=args.steps, batch_size=args.batch, lr=args.lr, augment=augment, loss=args.loss,
                        r1_gamma=args.r1, ema_half_life_images=args.ema_half_life, sample_every=args.sample_every,
                        checkpoint_every=args.checkpoint_every, seed=args.seed, device=args.device)
    config = None
    if args.family:
        from .models import make_config

        extra = json.loads(args.config) if args.config else {}
        config = make_config(args.family, resolution=resolution, **extra)
    meta = {"command": "python -m msgen " + shlex.join(sys.argv[1:]), "title": args.title or Path(args.out).name}
    for key in ("dataset", "dataset_short", "license", "data_license", "description"):
        if getattr(args, key, None):
            meta[key] = getattr(args, key)
    trainer = Trainer(images=data.images, run_dir=args.out, config=config, base=base, options=opts, meta=meta,
                      progress_bar=True, world=world)
    model_dir = trainer.train()
    say(f"model written to {model_dir} (step {trainer.step}" + (f", {world.size} processes)" if world.active else ")"))


def cmd_eval(args: argparse.Namespace) -> None:
    import msgen
    from .data import load_image_set
    from .metrics import evaluate, format_table

    g = msgen.load(args.model)
    real = load_image_set(args.data, g.config.resolution, fit=args.fit, limits=_limits(args.max_files)).images
    if real.shape[0] == 0:
        raise ValueError(f"no usable images in {args.data}")
    result = evaluate(g, real, n=args.n, seed=args.seed, truncation=args.truncation)
    print(json.dumps(result, indent=1) if args.json else format_table({args.model: result}))


def cmd_data(args: argparse.Namespace) -> None:
    from .datasets import build_dataset

    count = build_dataset(args.name, args.out, limit=args.limit)
    print(f"wrote {count} images to {args.out}")


def cmd_models(args: argparse.Namespace) -> None:
    from .zoo import list_models

    entries = list_models(runs_dir=args.runs)
    if not entries:
        print("no models found")
    for e in entries:
        print(f"{e.name:24s} {e.family:8s} {e.resolution:4d}px  {e.source:8s} {e.dataset}  {e.path}")


def cmd_push(args: argparse.Namespace) -> None:
    import os

    from .checkpoint import push_to_hub
    from .zoo import resolve_model

    url = push_to_hub(resolve_model(args.model), args.repo, token=args.token or os.environ.get("HF_TOKEN"),
                      private=not args.public)
    print(f"pushed to {url}")


def _limits(max_files: int | None):
    """Upload limits, with a larger file count for trusted local data sets (e.g. 60,000 images)."""
    import dataclasses

    from .data import LIMITS

    if not max_files:
        return LIMITS
    return dataclasses.replace(LIMITS, max_files=max_files, max_zip_entries=max(LIMITS.max_zip_entries, max_files + 100),
                               max_total_bytes=max(LIMITS.max_total_bytes, max_files * 64 * 2**10))


def _colour(text: str) -> tuple[int, int, int]:
    names = {"white": (255, 255, 255), "black": (0, 0, 0)}
    if text in names:
        return names[text]
    try:
        parts = tuple(int(p) for p in text.split(","))
        if len(parts) == 3 and all(0 <= p <= 255 for p in parts):
            return parts  # type: ignore[return-value]
    except ValueError:
        pass
    raise ValueError(f"background must be white, black or R,G,B (0-255), got {text!r}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m msgen", description="multi-scale image generation studio")
    sub = p.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("generate", help="generate an image (and optionally every level's feature maps)")
    g.add_argument("--model", default="sprites32", help="listed name, model folder or Hub repo id")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--scale", type=int, default=None, help="finest level to render (default: the model's resolution)")
    g.add_argument("--truncation", type=float, default=1.0)
    g.add_argument("--mix-seed", type=int, default=None, help="seed B for the fine levels")
    g.add_argument("--mix-level", type=int, default=None, help="first level taken from seed B")
    g.add_argument("--n", type=int, default=1, help="images from consecutive seeds, written as a grid")
    g.add_argument("--upscale", type=int, default=1, help="nearest-neighbour enlargement of the PNG")
    g.add_argument("--features", default=None, metavar="DIR", help="write per-level images, feature maps and stats here")
    g.add_argument("--out", default="out.png")
    g.set_defaults(func=cmd_generate)

    t = sub.add_parser("train", help="train from scratch (--family) or fine-tune (--model) on an image set")
    t.add_argument("--data", required=True, help="folder, zip or image file")
    t.add_argument("--model", default=None, help="model to fine-tune")
    t.add_argument("--family", default=None, help="family to train from scratch")
    t.add_argument("--resolution", type=int, default=32)
    t.add_argument("--config", default=None, help="JSON of config overrides for --family, e.g. '{\"channel_max\": 256}'")
    t.add_argument("--out", required=True, help="run folder (resumes if it holds a checkpoint)")
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--loss", default="ns", choices=("ns", "hinge"))
    t.add_argument("--r1", type=float, default=1.0)
    t.add_argument("--augment", default="color,translation,cutout", help="comma list, or 'none'")
    t.add_argument("--ema-half-life", type=int, default=5000, help="EMA half-life in images")
    t.add_argument("--sample-every", type=int, default=100)
    t.add_argument("--checkpoint-every", type=int, default=200)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--fit", default="crop", choices=("crop", "pad"))
    t.add_argument("--background", default="white", help="for transparent images: white, black or R,G,B")
    t.add_argument("--limit", type=int, default=None, help="use at most this many images")
    t.add_argument("--max-files", type=int, default=None, help="raise the upload file-count limit for a local data set")
    t.add_argument("--title", default=None)
    t.add_argument("--dataset", default=None, help="data set description for the card")
    t.add_argument("--dataset-short", default=None, help="short data set name for model lists")
    t.add_argument("--license", default=None)
    t.add_argument("--data-license", default=None)
    t.add_argument("--description", default=None)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="per-level SWD, KID and FID-EffLite0 of a model against an image set")
    e.add_argument("--model", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--n", type=int, default=1000)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--truncation", type=float, default=1.0)
    e.add_argument("--fit", default="crop", choices=("crop", "pad"))
    e.add_argument("--json", action="store_true")
    e.add_argument("--max-files", type=int, default=None, help="raise the file-count limit for a local data set")
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("data", help="build a public data set from Debian packages")
    d.add_argument("name", help="fashion, emoji or sprites")
    d.add_argument("--out", required=True)
    d.add_argument("--limit", type=int, default=None)
    d.set_defaults(func=cmd_data)

    m = sub.add_parser("models", help="list shipped models and runs")
    m.add_argument("--runs", default=None, help="runs folder (default: ./runs or $MSGEN_RUNS)")
    m.set_defaults(func=cmd_models)

    h = sub.add_parser("push", help="push an exported model to the Hugging Face Hub")
    h.add_argument("--model", required=True)
    h.add_argument("--repo", required=True, help="owner/name")
    h.add_argument("--token", default=None, help="defaults to $HF_TOKEN")
    h.add_argument("--public", action="store_true")
    h.set_defaults(func=cmd_push)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        # ValueError covers CheckpointError and DataError; one line, no traceback.
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
