"""In-process generation latency per level (p50/p95) and batch throughput, on the CPU.

    python bench/generate.py [--threads 2] [--repeat 200]

Prints one table row per model and level: latency of one image up to that level, with and
without capturing every level's feature maps, and images/s at batch 64.
"""

from __future__ import annotations

import argparse

from _common import models_to_measure, percentiles, timeit


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=200)
    args = p.parse_args()
    import torch

    import msgen

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


if __name__ == "__main__":
    main()
