"""In-process generation latency per level (p50/p95) and batch throughput, on the CPU.

    python bench/generate.py [--threads 2] [--repeat 200]

Prints one table row per model and level: latency of one image up to that level, with and
without capturing every level's feature maps, and images/s at batch 64. Then, for the families
the pages serve in bfloat16 where the CPU multiplies it natively (``Family.cpu_bfloat16``), one
image with features on one thread in float32 against bfloat16 in the same run (``--only-bfloat16``
prints just that), and how far bfloat16 moves the finest picture's 8-bit values (16 seeds).
"""

from __future__ import annotations

import argparse

from _common import models_to_measure, percentiles, timeit


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--only-bfloat16", action="store_true", help="only the float32 / bfloat16 table")
    args = p.parse_args()
    import torch

    import msgen

    if args.only_bfloat16:
        low_precision(args.repeat)
        return
    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} threads, torch {torch.__version__}")
    print("| model | level | p50 ms | p95 ms | p50 ms with features | p95 ms with features |")
    print("| --- | --- | --- | --- | --- | --- |")
    throughput = []
    for name, g in models_to_measure():
        for lvl in g.levels:
            plain = timeit(lambda: msgen.generate(g, seed=1, scale=lvl), repeat=args.repeat)
            feats = timeit(lambda: msgen.generate(g, seed=1, scale=lvl, features=True), repeat=args.repeat)
            a, b = percentiles(plain)
            c, d = percentiles(feats)
            print(f"| {name} | {lvl} | {a:.2f} | {b:.2f} | {c:.2f} | {d:.2f} |", flush=True)
        batch = timeit(lambda: msgen.generate(g, seed=1, n=64), repeat=10, warmup=2)
        throughput.append((name, 64 / percentiles(batch)[0] * 1e3))
    print()
    print("| model | images/s at batch 64 (all levels) |")
    print("| --- | --- |")
    for name, ips in throughput:
        print(f"| {name} | {ips:.0f} |")
    low_precision(args.repeat)


def low_precision(repeat: int) -> None:
    import copy

    import torch

    import msgen
    from msgen import render
    from msgen.device import cpu_bfloat16
    from msgen.models import get_family

    torch.set_num_threads(1)  # as the Generate tab runs one picture (msgen.ui.cpu_runner)
    print()
    print(f"native bfloat16 matrices on this CPU (msgen.device.cpu_bfloat16): {'yes' if cpu_bfloat16() else 'no'}; "
          "one torch thread, as the Generate tab runs one picture")
    print("| model | p50 ms float32 | p50 ms bfloat16 | speed-up | 8-bit values changed by more than 2 / 8 / 32 | "
          "largest change |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, g in models_to_measure():
        if not get_family(g.config.family).cpu_bfloat16:
            continue
        b = copy.deepcopy(g).to(torch.bfloat16)
        a32 = percentiles(timeit(lambda: msgen.generate(g, seed=1, features=True), repeat=repeat))[0]
        a16 = percentiles(timeit(lambda: msgen.generate(b, seed=1, features=True), repeat=repeat))[0]
        full, low = msgen.generate(g, seed=0, n=16), msgen.generate(b, seed=0, n=16)
        k = max(full.images)
        step = (render.to_bytes(full.images[k]).astype(int) - render.to_bytes(low.images[k]).astype(int)).__abs__()
        shares = " / ".join(f"{(step > t).mean():.2%}" for t in (2, 8, 32))
        print(f"| {name} | {a32:.2f} | {a16:.2f} | {a32 / a16:.2f}x | {shares} | {step.max()} |", flush=True)


if __name__ == "__main__":
    main()
