"""In-process generation latency per level (p50/p95) and batch throughput, on the CPU.

    python bench/generate.py [--threads 2] [--repeat 200] [--only-cpu-serving]

Prints one table row per model and level: latency of one image up to that level, with and
without capturing every level's feature maps, and images/s at batch 64 (the models as loaded:
float32, default layout). Then how the pages serve each family on a CPU (``Family.serving``:
parts in channels_last, parts in bfloat16 where the CPU multiplies it natively), one image with
features on one thread, as the Generate tab runs it: float32 as loaded, with the family's
channels_last parts only, and as served, in the same run, and how far the served form moves the
finest picture's 8-bit values (16 seeds) and whether it draws the same tokens (var).
``--only-cpu-serving`` prints just that table.
"""

from __future__ import annotations

import argparse

from _common import models_to_measure, percentiles, timeit


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--only-cpu-serving", action="store_true", help="only the table of the pages' CPU serving")
    args = p.parse_args()
    import torch

    import msgen

    if args.only_cpu_serving:
        cpu_serving(args.repeat)
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
    cpu_serving(args.repeat)


def cpu_serving(repeat: int) -> None:
    import copy

    import torch

    import msgen
    from msgen import render
    from msgen.device import cpu_bfloat16
    from msgen.models import get_family, serve_on_cpu

    torch.set_num_threads(1)  # as the Generate tab runs one picture (msgen.ui.cpu_runner)
    native = cpu_bfloat16()
    print()
    print(f"native bfloat16 matrices on this CPU (msgen.device.cpu_bfloat16): {'yes' if native else 'no'}; "
          "one torch thread, as the Generate tab runs one picture; p50 ms of one image with features")
    print("| model | parts served channels_last / bfloat16 | float32 as loaded | channels_last parts only | as served | "
          "speed-up | 8-bit values changed by more than 2 / 8 / 32 | largest change | same tokens |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, g in models_to_measure():
        serving = get_family(g.config.family).serving
        if not (serving.channels_last or serving.low_precision):
            continue
        layout = serve_on_cpu(copy.deepcopy(g), serving, bfloat16=False)  # its channels_last parts only
        served = serve_on_cpu(copy.deepcopy(g), serving, bfloat16=native)
        times = [percentiles(timeit(lambda m=m: msgen.generate(m, seed=1, features=True), repeat=repeat))[0]
                 for m in (g, layout, served)]
        full, low = msgen.generate(g, seed=0, n=16, features=True), msgen.generate(served, seed=0, n=16, features=True)
        k = max(full.images)
        step = (render.to_bytes(full.images[k]).astype(int) - render.to_bytes(low.images[k]).astype(int)).__abs__()
        shares = " / ".join(f"{(step > t).mean():.2%}" for t in (2, 8, 32))
        tokens = (full.pictures or {}).get(k, {}).get("token map")
        same = "n/a" if tokens is None else ("yes" if all(
            torch.equal(full.pictures[lvl]["token map"], low.pictures[lvl]["token map"]) for lvl in full.pictures) else "NO")
        parts = f"{', '.join(repr(n) for n in serving.channels_last) or '-'} / " + \
                (", ".join(repr(n) for n in serving.low_precision) if native and serving.low_precision else "-")
        print(f"| {name} | {parts} | {times[0]:.2f} | {times[1]:.2f} | {times[2]:.2f} | {times[0] / times[2]:.2f}x | "
              f"{shares} | {step.max()} | {same} |", flush=True)


if __name__ == "__main__":
    main()
