"""Generate tab in a real browser: seed change to fully painted, and updates per second while dragging.

    python bench/browser.py [--repeat 30] [--models emoji64,sprites32] [--root DIR] [--drag-s 4]
                            [--runs N] [--before DIR]

Debian's chromium (headless, through playwright) opens two apps served side by side on
loopback: msgen (``app.py`` from ``--root``, this checkout by default) and a trivial Gradio app
whose number box returns one 64x64 PNG, the least a Gradio page can repaint. For every shipped
model at its full resolution, a seed is typed and Enter pressed; the time from that key press
(``performance.now()`` in the page) to the first animation frame in which the main image, every
level card, the channel view and the statistics all show the new seed is one sample. Samples of
the two apps alternate, so both see the same machine load; the table gives p50 / p95 and msgen's
p50 over the trivial app's.

Dragging: the mouse holds the seed slider and sweeps it for ``--drag-s`` seconds at 60 moves a
second; each time the main image changes to a new, loaded picture counts as one visible update
(the trivial app gets the same slider driving its image, as a reference).

The host's speed drifts between runs (one model's p50 moved by up to 20 ms from run to run here),
so an A/B runs several whole runs in turn: ``--runs N --before DIR`` measures the checkout ``DIR``
and ``--root`` alternately, N times each, and ends with each side's mean of the runs' p50s, the
ratio of the means and the range of the runs' ratios.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import percentiles

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"

# In the page: wait until every element named in ``sel`` shows something other than ``before``
# (img src, or text), all its pictures are loaded, and ``text`` is in the summary; resolve with
# the time of the next animation frame (the one that paints it) minus the Enter key press.
# Text is read with ``textContent``: ``innerText`` forces a layout on every check, and the checks
# run on every mutation, so the measurement itself would cost the page milliseconds per update.
WAIT_PAINTED = """
async ({sel, before, text, count, timeout}) => {
  const state = () => {
    const out = {};
    for (const [name, css] of Object.entries(sel)) {
      const nodes = [...document.querySelectorAll(css)];
      out[name] = nodes.map(n => n.tagName === 'IMG' ? n.getAttribute('src') : n.textContent).join('|');
      out[name + ':n'] = nodes.length;
      out[name + ':ok'] = nodes.every(n => n.tagName !== 'IMG' || (n.complete && n.naturalWidth > 0));
    }
    return out;
  };
  const ready = () => {
    const s = state();
    if (text && !document.querySelector(sel.info).textContent.includes(text)) return false;
    for (const name of Object.keys(sel)) {
      if (name === 'info') continue;
      if (s[name] === before[name] || !s[name + ':ok'] || s[name + ':n'] === 0) return false;
      if (count[name] && s[name + ':n'] !== count[name]) return false;
    }
    return true;
  };
  return await new Promise(resolve => {
    const start = performance.now();
    let done = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      obs.disconnect();
      document.removeEventListener('load', check, true);
      requestAnimationFrame(() => resolve(ok ? performance.now() - window.__t0 : null));
    };
    const check = () => { if (!done && ready()) finish(true); };
    const obs = new MutationObserver(check);
    obs.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
    document.addEventListener('load', check, true);
    // Changes are seen by the observer and the load listener; the timer only ends a wait that
    // never completes (a per-frame poll would spend the CPU the server shares with the browser).
    check();
    setTimeout(() => finish(false), timeout);
  });
}
"""

SNAPSHOT = """
(sel) => {
  const out = {};
  for (const [name, css] of Object.entries(sel))
    out[name] = [...document.querySelectorAll(css)].map(n => n.tagName === 'IMG' ? n.getAttribute('src') : n.textContent).join('|');
  return out;
}
"""

MARK_ENTER = """
() => { window.__t0 = null;
  document.addEventListener('keydown', e => { if (e.key === 'Enter') window.__t0 = performance.now(); },
                            {capture: true, once: true}); }
"""

# Counts the main image's changes to a new, loaded picture (one visible update each).
COUNT_UPDATES = """
(css) => { window.__updates = []; let last = null;
  const look = () => { const img = document.querySelector(css);
    if (img && img.complete && img.naturalWidth > 0 && img.getAttribute('src') !== last) {
      last = img.getAttribute('src'); window.__updates.push(performance.now()); } };
  look(); window.__updates = [];
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true});
  document.addEventListener('load', look, true); }
"""

MSGEN = dict(info="#msgen-info", image="#msgen-image img", levels="#msgen-levels img",
             channel="#msgen-channel img", stats="#msgen-stats")
TRIVIAL = dict(image="#trivial-image img")


def trivial_app(port: int) -> None:
    """The reference: a number box (Enter) and a slider, each returning one 64x64 PNG."""
    import gradio as gr
    import numpy as np

    def picture(seed):
        return np.random.default_rng(int(seed or 0)).integers(0, 256, (64, 64, 3), dtype=np.uint8)

    with gr.Blocks() as demo:
        box = gr.Number(0, precision=0, elem_id="trivial-box")
        slider = gr.Slider(0, 2**32 - 1, value=0, step=1, elem_id="trivial-seed")
        image = gr.Image(format="png", elem_id="trivial-image")
        box.submit(picture, box, image, trigger_mode="always_last")
        slider.change(picture, slider, image, trigger_mode="always_last")
    demo.queue(default_concurrency_limit=4).launch(server_name="127.0.0.1", server_port=port, quiet=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(cmd: list[str], port: int, cwd: Path, env: dict) -> tuple[subprocess.Popen, float]:
    import urllib.request

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{' '.join(cmd)} exited before serving")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2).read()
            return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)


def one_change(page, box_css: str, sel: dict, seed: int, text: str | None, count: dict) -> float | None:
    before = page.evaluate(SNAPSHOT, sel)
    page.evaluate(MARK_ENTER)
    box = page.locator(box_css)
    box.fill(str(seed))
    box.press("Enter")
    ms = page.evaluate(WAIT_PAINTED, dict(sel=sel, before=before, text=text, count=count, timeout=5000))
    return None if ms is None else ms / 1e3


def drag(page, slider_css: str, image_css: str, seconds: float) -> float:
    """Visible updates per second while the mouse sweeps the slider across its width."""
    page.evaluate(COUNT_UPDATES, image_css)
    box = page.locator(slider_css).bounding_box()
    y = box["y"] + box["height"] / 2
    x0, x1 = box["x"] + 5, box["x"] + box["width"] - 5
    page.mouse.move(x0, y)
    page.mouse.down()
    steps = int(seconds * 60)
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        page.mouse.move(x0 + (x1 - x0) * i / steps, y)
        time.sleep(max(0.0, t0 + i / 60 - time.perf_counter()))
    page.mouse.up()
    elapsed = time.perf_counter() - t0
    updates = page.evaluate("() => window.__updates.length")
    return updates / elapsed


def pick_model(page, name: str) -> None:
    import re

    page.locator("#msgen-model input").click()
    page.get_by_role("option", name=re.compile(rf"^{re.escape(name)} \(")).click()
    page.wait_for_function("(n) => document.querySelector('#msgen-info').innerText.includes(n + ':')", arg=name,
                           timeout=30_000)
    page.wait_for_timeout(1500)  # the channel panel and any chained update settle


def measure(root: str, models: list, args) -> tuple[dict, tuple[float, float], str]:
    """One run: msgen served from ``root`` beside the trivial app, every model in ``models``.
    -> model name -> (msgen p50, p95, trivial p50, p95) in ms, the drag (msgen, trivial) updates/s
    and the run's header line."""
    env = dict(os.environ, MSGEN_RUNS=tempfile.mkdtemp(), GRADIO_ANALYTICS_ENABLED="False",
               OMP_NUM_THREADS=str(args.threads), PYTHONPATH=root)
    env.pop("MSGEN_WEIGHTS", None)
    mport, tport = free_port(), free_port()
    msgen_proc, cold = serve([sys.executable, "app.py", "--port", str(mport)], mport, Path(root), env)
    trivial_proc, _ = serve([sys.executable, __file__, "--serve-trivial", str(tport)], tport, ROOT, env)
    from playwright.sync_api import sync_playwright

    header = (f"msgen from {root}; chromium headless; load average {os.getloadavg()[0]:.2f} at start; "
              f"msgen server up in {cold:.1f} s")
    print(header, flush=True)
    out = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            ref = browser.new_page(viewport={"width": 1000, "height": 800})
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            ref.goto(f"http://127.0.0.1:{tport}/")
            ref.locator("#trivial-box input").wait_for()
            page.goto(f"http://127.0.0.1:{mport}/")
            page.locator("#msgen-image img").wait_for(timeout=60_000)
            seed = 10_000
            for e in models:
                pick_model(page, e.name)
                ours, theirs, lost = [], [], 0
                for i in range(args.repeat + 3):  # the first 3 warm both up
                    seed += 1
                    ref.bring_to_front()
                    t = one_change(ref, "#trivial-box input", TRIVIAL, seed, None, {})
                    page.bring_to_front()
                    m = one_change(page, "#msgen-seed-box input", MSGEN, seed, f"from seed {seed}",
                                   {"levels": len(e.levels)})
                    if i >= 3:
                        theirs += [t] if t is not None else []
                        ours += [m] if m is not None else []
                        lost += (t is None) + (m is None)
                a, b = percentiles(ours)
                c, d = percentiles(theirs)
                out[e.name] = (a, b, c, d)
                print(f"| {e.name} | {e.resolution} | {a:.0f} / {b:.0f} | {c:.0f} / {d:.0f} | {a / c:.2f}x |"
                      + (f" {lost} timed out |" if lost else ""), flush=True)
            page.bring_to_front()
            ours_drag = drag(page, "#msgen-seed input[type=range]", MSGEN["image"], args.drag_s)
            ref.bring_to_front()
            ref_drag = drag(ref, "#trivial-seed input[type=range]", TRIVIAL["image"], args.drag_s)
            browser.close()
    finally:
        for proc in (msgen_proc, trivial_proc):
            proc.terminate()
            proc.wait(timeout=30)
    return out, (ours_drag, ref_drag), header


def print_run(models: list, rows: dict, dragged: tuple[float, float]) -> None:
    print()
    print("| model | px | msgen p50 / p95 ms | trivial app p50 / p95 ms | msgen / trivial p50 |")
    print("| --- | --- | --- | --- | --- |")
    for e in models:
        a, b, c, d = rows[e.name]
        print(f"| {e.name} | {e.resolution} | {a:.0f} / {b:.0f} | {c:.0f} / {d:.0f} | {a / c:.2f}x |")
    print(f"\nwhile dragging the seed slider ({models[-1].name}): msgen {dragged[0]:.1f} visible updates/s, "
          f"trivial app {dragged[1]:.1f}/s; load average {os.getloadavg()[0]:.2f} at the end")


def print_summary(models: list, sides: dict[str, list]) -> None:
    """Over several runs: per side, the mean of the runs' p50s (msgen / trivial), the ratio of the
    means and the range of the runs' ratios; the drag's range."""
    names = list(sides)
    print()
    print(f"over {', '.join(f'{len(v)} runs of {k}' for k, v in sides.items())} (mean of the runs' p50s, ms):")
    print("| model | " + " | ".join(f"{k}: msgen / trivial (ratio of means; runs' ratios)" for k in names) + " |")
    print("| --- | " + " | ".join("---" for _ in names) + " |")
    for e in models:
        cells = []
        for k in names:
            ms = [rows[e.name][0] for rows, _ in sides[k]]
            tr = [rows[e.name][2] for rows, _ in sides[k]]
            ratios = [m / t for m, t in zip(ms, tr)]
            mean_m, mean_t = sum(ms) / len(ms), sum(tr) / len(tr)
            cells.append(f"{mean_m:.0f} / {mean_t:.0f} ({mean_m / mean_t:.2f}x; {min(ratios):.2f}-{max(ratios):.2f})")
        print(f"| {e.name} | " + " | ".join(cells) + " |")
    for k in names:
        drags = [d for _, d in sides[k]]
        print(f"{k}: dragging {min(d[0] for d in drags):.1f}-{max(d[0] for d in drags):.1f} visible updates/s "
              f"(trivial app {min(d[1] for d in drags):.1f}-{max(d[1] for d in drags):.1f})")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--models", default="", help="comma-separated; default every shipped model")
    p.add_argument("--root", default=str(ROOT), help="the msgen checkout whose app.py is served")
    p.add_argument("--before", default="", help="another checkout, measured in turn with --root (an A/B)")
    p.add_argument("--runs", type=int, default=1, help="whole runs (of each checkout), alternating")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--drag-s", type=float, default=4.0)
    p.add_argument("--serve-trivial", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_trivial:
        return trivial_app(args.serve_trivial)
    if args.runs < 1 or args.repeat < 1:
        raise SystemExit("--runs and --repeat must be at least 1")
    sys.path.insert(0, args.root)
    import msgen

    shipped = [e for e in msgen.list_models() if e.source == "shipped"]
    wanted = [m for m in args.models.split(",") if m] or [e.name for e in shipped]
    models = [e for e in shipped if e.name in wanted]
    roots = {"before": args.before, "after": args.root} if args.before else {"msgen": args.root}
    sides: dict[str, list] = {k: [] for k in roots}
    for _ in range(args.runs):
        for side, root in roots.items():
            rows, dragged, _header = measure(root, models, args)
            sides[side].append((rows, dragged))
            print_run(models, rows, dragged)
    if args.runs > 1 or args.before:
        print_summary(models, sides)


if __name__ == "__main__":
    main()
