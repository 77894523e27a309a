"""Helpers shared by the benchmarks: timing percentiles and the models to measure."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# Idle OpenMP workers sleep instead of spinning: on a shared 2-core machine spinning costs 10x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds."""
    xs = sorted(samples_s)
    p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
    return statistics.median(xs) * 1e3, p95 * 1e3


def timeit(fn, *, repeat: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def models_to_measure() -> list[tuple[str, object]]:
    """Shipped models when present, else the default configs of every family at 32 and 64 px."""
    import torch

    import msgen
    from msgen.models import build_generator, families, make_config

    shipped = [e for e in msgen.list_models() if e.source == "shipped"]
    if shipped:
        return [(e.name, msgen.load(e.path)) for e in shipped]
    out = []
    for fam in families():
        for res in (32, 64):
            torch.manual_seed(0)
            out.append((f"{fam}-{res} (random init)", build_generator(make_config(fam, resolution=res)).eval()))
    return out
