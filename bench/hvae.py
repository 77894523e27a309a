"""Hierarchical VAE latency on the CPU: sampling up to each level, and the Decompose operations.

    python bench/hvae.py [--threads 2] [--repeat 200] [--cpu-time]

Measures the shipped ``hvae`` models when present, else the default config and the recommended
shipping configs (see README) at 32 and 64 px with random weights (latency does not depend on
training). Prints p50/p95 in ms of: one image up to each level (``msgen.generate``), and for one
uploaded picture the encoder pass (``encode``), its reconstruction, and 8 re-sampled variants.
``--cpu-time`` times with the process's CPU clock instead of the wall clock: with ``--threads 1``
that is what the call would take on an idle core, a fair figure on a machine others are loading.
"""

from __future__ import annotations

import argparse
import time

from _common import percentiles

SHIPPING = {32: dict(channel_base=2048, blocks_per_level=2, z_global=32),
            64: dict(channel_base=2048, blocks_per_level=2, z_global=64)}


def models() -> list[tuple[str, object]]:
    import torch

    import msgen
    from msgen.models import build_generator, make_config

    shipped = [e for e in msgen.list_models() if e.source == "shipped" and e.family == "hvae"]
    if shipped:
        return [(e.name, msgen.load(e.path)) for e in shipped]
    out = []
    for res in (32, 64):
        for label, over in (("default", {}), ("shipping config", SHIPPING[res])):
            torch.manual_seed(0)
            out.append((f"hvae-{res} {label} (random init)", build_generator(make_config("hvae", resolution=res, **over)).eval()))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--cpu-time", action="store_true", help="process CPU time instead of wall time")
    args = p.parse_args()
    clock_fn = time.process_time if args.cpu_time else time.perf_counter

    def timeit(fn, *, repeat: int, warmup: int = 5) -> list[float]:
        for _ in range(warmup):
            fn()
        out = []
        for _ in range(repeat):
            t = clock_fn()
            fn()
            out.append(clock_fn() - t)
        return out

    import torch

    import msgen

    torch.set_num_threads(args.threads)
    clock = "process CPU time" if args.cpu_time else "wall time"
    print(f"CPU, {args.threads} threads, torch {torch.__version__}, {clock}")
    print("| model | operation | p50 ms | p95 ms |")
    print("| --- | --- | --- | --- |")
    for name, g in models():
        for lvl in g.levels:
            a, b = percentiles(timeit(lambda: msgen.generate(g, seed=1, scale=lvl), repeat=args.repeat))
            print(f"| {name} | sample up to {lvl}x{lvl} | {a:.2f} | {b:.2f} |", flush=True)
        x = torch.rand(1, 3, g.config.resolution, g.config.resolution) * 2 - 1
        ops = {
            "encode (all levels)": lambda: g.encode(x),
            "reconstruct": lambda: g.reconstruct(x),
            "resample 8 variants (vary detail)": lambda: g.resample(x, keep_below=g.levels[2], seed=0, count=8),
            "resample 8 variants (vary layout)": lambda: g.resample(x, keep_from=g.levels[2], seed=0, count=8),
        }
        with torch.inference_mode():
            for op, fn in ops.items():
                a, b = percentiles(timeit(fn, repeat=max(10, args.repeat // 4)))
                print(f"| {name} | {op} | {a:.2f} | {b:.2f} |", flush=True)


if __name__ == "__main__":
    main()
