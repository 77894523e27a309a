"""msgen web app: Gradio Blocks with the Generate, Decompose and Train tabs.

Thin and declarative (hysts' Spaces ``app.py`` / ``model.py`` split): build the tabs from
``msgen.ui.*`` and launch. Each tab is a layout-and-wiring module (``build``) over a module of
plain handlers (``generate_handlers``, ``decompose_handlers``, ``train_handlers``).
``python app.py`` serves on 127.0.0.1:7860; ``--host``/``--port`` (or GRADIO_SERVER_NAME /
GRADIO_SERVER_PORT) change that, ``--shared`` turns on per-visitor privacy (automatic on Spaces).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Before torch loads: idle OpenMP threads sleep instead of spinning. On a 2-vCPU host where two
# thread pools meet (a training run beside live generation, or other tenants), spinning threads
# stall one another and a 64 px generate goes from ~7 ms to ~150 ms (bench/app.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402

from msgen.ui import common  # noqa: E402

TITLE = "msgen: watch a multi-scale generator build a picture"
INTRO = (
    "Pick a model and a seed: the generator paints a 4x4 picture first and refines it level by level. "
    "Every scale's image and every level's feature maps are shown beside the result. "
    "Train your own generator on a handful of images in the **Train** tab."
)


def default_runs_dir(persistent: Path = Path("/data")) -> Path:
    """``$MSGEN_RUNS``, else the Space's persistent storage (``/data``, when it exists and is
    writable: runs then survive restarts), else the CLI's default (``./runs`` in a source checkout)."""
    if os.environ.get("MSGEN_RUNS"):
        return Path(os.environ["MSGEN_RUNS"])
    if persistent.is_dir() and os.access(persistent, os.W_OK):
        return persistent / "msgen-runs"
    from msgen.zoo import default_runs_dir as cli_default

    return cli_default()


def build_app(
    *, runs_dir: str | Path | None = None, shared: bool | None = None, weights_dir: str | Path | None = None
) -> gr.Blocks:
    from msgen.ui import decompose, generate, train

    ctx = common.AppContext(
        runs_dir=Path(runs_dir) if runs_dir else default_runs_dir(),
        shared=common.on_spaces() if shared is None else shared,
    )
    if weights_dir is not None:
        ctx.weights_dir = Path(weights_dir)
    from msgen.ui import server
    from msgen.ui.blocks import MsgenBlocks

    with MsgenBlocks(title="msgen", delete_cache=server.CACHE_EXPIRY) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        # What the tabs share, made before any of them (common.AppContext): the visitor's token and
        # the Generate tab's model list (placed by that tab, refreshed by Train), so no tab depends on
        # the order the tabs are built in.
        ctx.owner = gr.BrowserState(None, storage_key="msgen_owner")
        ctx.model_dropdown = generate.model_list(ctx)
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                generate.build(ctx)
            with gr.Tab("Decompose", id="decompose"):
                decompose.build(ctx)
            with gr.Tab("Train", id="train"):
                train.build(ctx)
    demo.ctx = ctx
    return demo


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="msgen web app")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--runs", default=None, help="runs folder (default $MSGEN_RUNS, else /data/msgen-runs if /data is "
                   "writable, else ./runs)")
    p.add_argument("--shared", action="store_true", help="per-visitor privacy, as on a Hugging Face Space")
    args = p.parse_args(argv)
    from msgen.ui import server

    demo = build_app(runs_dir=args.runs, shared=True if args.shared else None)
    demo.queue(default_concurrency_limit=4).launch(server_name=args.host, server_port=args.port,
                                                   **server.launch_options(demo.ctx.shared))


if __name__ == "__main__":
    main()
