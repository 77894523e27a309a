"""Next-scale autoregressive (var) latency on the CPU: sampling up to each scale, and Decompose's calls.

    python bench/var.py [--threads 1] [--repeat 50] [--cpu-time]

Measures the shipped ``var`` models when present, else the default config with random weights
(latency does not depend on training). Prints p50/p95 in ms of one image up to each level
(``msgen.generate``: one transformer pass per scale over the coarser scales, then one decoder
pass per level shown), and for one picture ``encode`` (tokenizer + one teacher-forced pass),
``reconstruct`` and 8 re-sampled variants. ``--cpu-time`` times with the process's CPU clock,
a fair figure with ``--threads 1`` on a machine others are loading.
"""

from __future__ import annotations

import argparse
import time

from _common import percentiles


def models() -> list[tuple[str, object]]:
    import torch

    import msgen
    from msgen.models import build_generator, make_config

    shipped = [e for e in msgen.list_models() if e.source == "shipped" and e.family == "var"]
    if shipped:
        return [(e.name, msgen.load(e.path)) for e in shipped]
    torch.manual_seed(0)
    return [("var-32 default (random init)", build_generator(make_config("var", resolution=32)).eval())]


def timed(fn, repeat: int, clock) -> list[float]:
    for _ in range(3):
        fn()
    out = []
    for _ in range(repeat):
        t = clock()
        fn()
        out.append(clock() - t)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--cpu-time", action="store_true")
    p.add_argument("--recon", type=int, default=0, metavar="N",
                   help="instead: the tokenizer's per-scale reconstruction error on N Fashion-MNIST test images")
    p.add_argument("--model", default=None, help="a model folder or listed name (default: the shipped var models)")
    args = p.parse_args()
    import torch

    import msgen

    torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"CPU, {args.threads} threads, torch {torch.__version__}, {'CPU' if args.cpu_time else 'wall'} time")
    todo = [(args.model, msgen.load(args.model))] if args.model else models()
    if args.recon:
        from msgen.models.var import reconstruction_error
        from quality import fashion_test_images

        x = fashion_test_images(args.recon, seed=0)
        for name, g in todo:
            err = reconstruction_error(g, x)
            print(f"{name}, {args.recon} Fashion-MNIST test images (MSE in [-1, 1] units)")
            print("| level | MSE decoded at full size vs image | MSE at the level's size vs pooled image |")
            print("| --- | --- | --- |")
            for lvl in g.levels:
                print(f"| {lvl}x{lvl} | {err[f'mse_full_{lvl}']:.4f} | {err[f'mse_{lvl}']:.4f} |")
            print(f"finest PSNR {err['psnr_db']:.2f} dB")
        return
    print("| model | call | p50 ms | p95 ms |")
    print("| --- | --- | --- | --- |")
    for name, g in todo:
        for lvl in g.levels:
            a, b = percentiles(timed(lambda: msgen.generate(g, seed=1, scale=lvl), args.repeat, clock))
            print(f"| {name} | generate up to {lvl}x{lvl} | {a:.2f} | {b:.2f} |", flush=True)
        x = msgen.generate(g, seed=2).images[g.levels[-1]]
        with torch.inference_mode():
            for label, fn in (("encode", lambda: g.encode(x)), ("reconstruct", lambda: g.reconstruct(x)),
                              ("resample 8 (keep coarse)", lambda: g.resample(x, keep_below=g.levels[len(g.levels) // 2],
                                                                             seed=0, count=8))):
                a, b = percentiles(timed(fn, args.repeat, clock))
                print(f"| {name} | {label} | {a:.2f} | {b:.2f} |", flush=True)


if __name__ == "__main__":
    main()
