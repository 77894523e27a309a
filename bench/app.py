"""Generate tab latency: cold start, full generate in-process and through the HTTP API, cache hits.

    python bench/app.py [--repeat 100] [--threads 2] [--models shipped,default]

Measures, on the CPU, the app's default 64 px model (the first shipped 64 px msggan) and a
randomly initialised 64 px msggan with the default config. A "full generate" is everything the
tab's live update returns for one seed: the image, and for every level a card (the picture at
that scale, the PCA view of its feature map, its most active channels) and a statistics row,
every picture encoded into the response. Every miss uses a new seed, so no result cache helps it.

* cold start: ``python app.py`` launched as a process until its first image arrives by API;
* in-process: the generator alone (on two torch threads, and on the one thread the tab runs a
  single image on), ``GenerateHandlers.generate`` (miss, result-cache hit) and ``page`` (the
  page's live update: ``generate`` plus the channel view);
* HTTP API: ``gradio_client`` calls to ``/generate`` interleaved with the app's trivial
  ``/ping`` so both see the same machine load, with the client's default settings
  (``download_files=True``: any file in a response is fetched, one request each) and with
  ``download_files=False``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py sets it, before torch loads

import argparse  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import percentiles  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def models_to_measure(tmp: Path, which: list[str]) -> list[tuple[Path, str, str]]:
    """(weights folder, model name, description): the app's default 64 px msggan when one is
    shipped, and a randomly initialised 64 px msggan with the default config."""
    import msgen

    out = []
    shipped = [e for e in msgen.list_models() if e.source == "shipped" and e.resolution == 64 and e.family == "msggan"]
    if "shipped" in which and shipped:
        e = shipped[0]
        out.append((e.path.parent, e.name, f"shipped {e.name}"))
    if "default" in which:
        import torch

        from msgen.checkpoint import save_model
        from msgen.models import build_generator, make_config

        torch.manual_seed(0)
        g = build_generator(make_config("msggan", resolution=64)).eval()
        meta = {"title": "msggan64", "dataset": "random init (benchmark)", "dataset_short": "random init"}
        save_model(tmp / "msggan64", g, meta=meta)
        out.append((tmp, "msggan64", "msggan default config, random init"))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fmt(name: str, samples: list[float]) -> str:
    p50, p95 = percentiles(samples)
    return f"| {name} | {p50:.1f} | {p95:.1f} | {min(samples) * 1e3:.1f} |"


def in_process(weights: Path, model: str, repeat: int) -> list[str]:
    import msgen
    from msgen.ui.common import AppContext
    from msgen.ui.generate_handlers import GenerateHandlers

    ctx = AppContext(runs_dir=Path(tempfile.mkdtemp()), weights_dir=weights)
    h = GenerateHandlers(ctx, files=tempfile.mkdtemp())
    t = time.perf_counter()
    h.generate(model, 64, 0)
    first = time.perf_counter() - t
    gen = ctx.cache.get(ctx.find(model, None).path)
    for s in range(1, 6):
        h.generate(model, 64, s)  # warm-up: allocator, kernels
    try:
        from msgen.ui.cpu_runner import OneThreadRunner

        one = OneThreadRunner().run
    except ImportError:  # an older checkout: no one-thread runner
        one = None
    bare, bare1, miss, hit, page = [], [], [], [], []
    for i in range(repeat):
        seed = 1000 + i
        t = time.perf_counter()
        msgen.generate(gen, seed=seed, features=True)
        bare.append(time.perf_counter() - t)
        if one is not None:
            t = time.perf_counter()
            one(msgen.generate, gen, seed=seed, features=True)
            bare1.append(time.perf_counter() - t)
        t = time.perf_counter()
        h.generate(model, 64, seed)
        miss.append(time.perf_counter() - t)
        t = time.perf_counter()
        h.generate(model, 64, seed)
        hit.append(time.perf_counter() - t)
        if hasattr(h, "page"):
            t = time.perf_counter()
            h.page(model, 64, seed + 500_000, 1.0, 1, 0, 64, 0, True)
            page.append(time.perf_counter() - t)
    rows = [f"| in-process, first call (model load) | {first * 1e3:.1f} | | |",
            fmt("in-process generator alone (msgen.generate, features captured, 2 threads)", bare)]
    if bare1:
        rows.append(fmt("in-process generator alone, on the tab's one-thread runner", bare1))
    rows += [fmt("in-process full generate, miss (generator + cards + stats, every picture encoded)", miss),
             fmt("in-process full generate, result-cache hit", hit)]
    if page:
        rows.append(fmt("in-process page update, miss (full generate + channel view)", page))
    return rows


def through_api(weights: Path, model: str, repeat: int, threads: int) -> list[str]:
    from gradio_client import Client

    port = free_port()
    env = dict(os.environ, MSGEN_WEIGHTS=str(weights), MSGEN_RUNS=tempfile.mkdtemp(), GRADIO_ANALYTICS_ENABLED="False",
               OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        while True:
            if proc.poll() is not None:
                raise SystemExit("app.py exited before serving")
            try:
                client = Client(url, verbose=False)
                break
            except Exception:  # not listening yet
                time.sleep(0.1)
        client.predict(model, 64, 123456, 1.0, 1, 0, api_name="/generate")
        cold = time.perf_counter() - t0
        lean = Client(url, verbose=False, download_files=False)
        rows = [f"| cold start: `python app.py` to first image via API | {cold * 1e3:.0f} | | |"]
        for label, c in (("download_files=False", lean), ("default client, download_files=True", client)):
            for s in range(5):
                c.predict("x", api_name="/ping")
                c.predict(model, 64, 50 + s, 1.0, 1, 0, api_name="/generate")
            ping, miss, hit = [], [], []
            for i in range(repeat):
                seed = (2_000_000 if c is lean else 3_000_000) + i
                for bucket, args in ((ping, ("x",)), (miss, (model, 64, seed, 1.0, 1, 0)),
                                     (hit, (model, 64, seed, 1.0, 1, 0))):
                    t = time.perf_counter()
                    c.predict(*args, api_name="/ping" if len(args) == 1 else "/generate")
                    bucket.append(time.perf_counter() - t)
            ratio = percentiles(miss)[0] / percentiles(ping)[0]
            rows += [
                fmt(f"API trivial endpoint /ping ({label})", ping),
                fmt(f"API full generate, miss ({label}): {ratio:.2f}x ping", miss),
                fmt(f"API full generate, cache hit ({label})", hit),
            ]
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", default="shipped,default", help="shipped, default or both")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    for weights, model, what in models_to_measure(Path(tempfile.mkdtemp()), args.models.split(",")):
        load = os.getloadavg()[0]
        print(f"\n{model} ({what}; 64x64, 5 levels), CPU, {args.threads} threads, torch {torch.__version__}, "
              f"{len(os.sched_getaffinity(0))} cores usable, load average {load:.2f} at start")
        print("| what | p50 ms | p95 ms | min ms |")
        print("| --- | --- | --- | --- |")
        for row in in_process(weights, model, args.repeat):
            print(row, flush=True)
        for row in through_api(weights, model, args.repeat, args.threads):
            print(row, flush=True)
        print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
