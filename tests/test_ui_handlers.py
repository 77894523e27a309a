"""The tabs' handler modules without Blocks, the tabs' tiles from msgen.render, and the shared
components of AppContext: cross-tab wiring whatever order the tabs are built in."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
import torch

from msgen import render
from msgen.ui import common
from msgen.ui import decompose_handlers as DH
from msgen.ui import train_form as TF
from msgen.ui import train_handlers as TH
from msgen.ui.jobs import JobManager
from tests.conftest import FIXTURES

IMAGES = sorted(str(p) for p in (FIXTURES / "images").iterdir())


@pytest.fixture
def ctx(tmp_path, tiny_weights):
    return common.AppContext(runs_dir=tmp_path / "runs", weights_dir=tiny_weights)


def test_the_context_makes_what_the_tabs_share(tmp_path):
    local = common.AppContext(runs_dir=tmp_path)
    shared = common.AppContext(runs_dir=tmp_path, shared=True)
    assert isinstance(local.jobs, JobManager) and local.jobs.max_jobs is None
    assert shared.jobs.max_jobs == TH.SHARED_LIMITS.max_jobs and local.staged is not shared.staged
    assert local.owner is None and local.model_dropdown is None and not hasattr(local, "components")
    with gr.Blocks():
        state = local.owner_state()
    assert isinstance(state, gr.BrowserState) and local.owner_state() is state


def test_train_handlers_without_a_job(ctx):
    ticks = TH.poll(ctx, ctx.jobs, "no-such-job", {"x": 1}, None, generate=True)
    assert len(ticks) == 7 + 3 and ticks[6] == {"x": 1} and ticks[5].active is False
    assert len(TH.poll(ctx, ctx.jobs, None, None, None, generate=False)) == 7 + 2
    job, seen, timer, note, *lists = TH.restore(ctx, ctx.jobs, None, generate=False)
    assert job is None and seen is None and timer.active is False and note == "" and len(lists) == 2
    runs_u, bases_u, gen_u = TH.list_updates(ctx, ctx.jobs, None)
    assert runs_u["choices"] == [] and "model:tiny16" in [v for _, v in bases_u["choices"]]
    assert "tiny16" in [v for _, v in gen_u["choices"]]
    assert TH.stop(ctx, ctx.jobs, None, None).startswith("Nothing is training")


def test_the_upload_is_decoded_once_into_thumbnails(ctx):
    gallery, rows, summary, data = TH.prepare(ctx, IMAGES, "model:tiny16", 16, "crop", None)
    assert data.images.shape[-1] == 16 and len(gallery) == min(len(data.names), TH.GALLERY_MAX)
    thumb = np.asarray(gallery[0][0])
    assert thumb.shape == (96, 96, 3) and thumb.dtype == np.uint8  # 16 px enlarged 6x
    TH.prepare(ctx, IMAGES, "model:tiny16", 16, "crop", None)
    assert ctx.staged.decodes == 1


def test_the_form_resolves_bases_and_bounds(ctx):
    assert TF.resolve_base(ctx, "scratch:hvae", 32, None).resolution == 32
    with pytest.raises(ValueError, match="resolution must be one of"):
        TF.resolve_base(ctx, "scratch:hvae", 48, None)
    with pytest.raises(ValueError, match="batch size must be a whole number from 1 to 256"):
        TF.options_from_form(ctx, 10, 257, 1e-3, [], 5, 0)
    with pytest.raises(ValueError, match="learning rate"):
        TF.options_from_form(ctx, 10, 4, 1.0, [], 5, 0)


def test_decompose_handlers_lists_and_levels(ctx, tmp_path):
    models, notice, main = DH.models_update(ctx, None, "gone")
    assert models["value"] == "tinyvae16" and notice["visible"] is False and main["visible"] is True
    empty = common.AppContext(runs_dir=tmp_path / "r", weights_dir=tmp_path / "none")
    assert DH.models_update(empty, None, None)[1]["visible"] is True
    update = DH.level_update(ctx, "tinyvae16", 99, None, (4, 8))
    assert update["value"] == DH.default_level((4, 8, 16)) and [v for _, v in update["choices"]] == [8, 16]
    assert DH.level_update(ctx, "not-a-model", 8, None, (4, 8)) is not None  # a skip, never an exception
    with pytest.raises(gr.Error, match="temperature must be a number"):
        DH.resample(ctx, "tinyvae16", IMAGES[0], temperature=5.0)
    default = DH.resample(ctx, "tinyvae16", IMAGES[0], "crop", "detail", 8, 3, None, 2)
    explicit = DH.resample(ctx, "tinyvae16", IMAGES[0], "crop", "detail", 8, 3, DH.default_temperature("hvae"), 2)
    assert [np.asarray(a).tolist() for a, _ in default] == [np.asarray(b).tolist() for b, _ in explicit]


def test_the_tabs_tiles_come_from_render():
    image = torch.rand(3, 8, 8) * 2 - 1
    assert render.tile(image, 128).shape == (128, 128, 3)
    assert np.array_equal(render.thumbnail(image, 96), render.upscale(render.to_uint8(image), 12))
    pair = render.latent_tile(torch.randn(4, 4, 4), torch.rand(4, 4), 32)
    assert pair.shape == (32, 32 * 2 + 4, 3) and (pair[:, 32:36] == 255).all()
    grid = render.preview_grid({4: torch.zeros(3, 3, 4, 4), 8: torch.zeros(3, 3, 8, 8)}, rows=2)
    assert grid.shape == (2 * 96 + 3 * 2, 2 * 96 + 3 * 2, 3)


def test_train_refreshes_the_generate_list_whatever_the_build_order(ctx):
    from msgen.ui import generate, train

    with gr.Blocks() as demo:
        ctx.owner = gr.BrowserState(None)
        ctx.model_dropdown = generate.model_list(ctx)
        with gr.Tabs():
            with gr.Tab("Train"):
                train.build(ctx)  # before the tab that places the list
            with gr.Tab("Generate"):
                generate.build(ctx)
    config = demo.get_config_file()
    ids = {c["id"] for c in config["components"]}
    assert ctx.model_dropdown._id in ids
    poll = next(d for d in config["dependencies"] if d.get("api_name") == "train_poll")
    assert ctx.model_dropdown._id in poll["outputs"]
