"""Tests for msgen.datasets: each builder writes real, non-blank PNGs of the right size.

The real builds need the Debian packages; outside CI a missing package skips with the
reason, inside CI (CI=true) it fails, because CI installs them. Synthetic sources check
the parsers and the sprite cutter without any package.
"""

import dataclasses
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from msgen.data import DataError, load_image_set
from msgen.datasets import DATASETS, build_dataset, install_command
from tests.conftest import need_dataset



def pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_builder_writes_non_blank_images_of_the_right_size(name, tmp_path):
    need_dataset(name)
    info = DATASETS[name]
    assert build_dataset(name, tmp_path, limit=6, seed=1) == 6
    files = pngs(tmp_path)
    assert len(files) == 6 and all(f.name.startswith(f"{name}_") for f in files)
    assert not [p for p in tmp_path.iterdir() if p.suffix != ".png"]  # no temp files left behind
    for f in files:
        with Image.open(f) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (info.resolution,) * 2
            a = np.asarray(im)
        assert int(a.max()) - int(a.min()) > 30, f"{f.name} is blank"
    loaded = load_image_set(tmp_path, info.resolution)  # what the Train tab will do with it
    assert len(loaded.names) == 6 and loaded.rejected == []


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_limit_draws_a_seeded_subset(name, tmp_path):
    need_dataset(name)
    build_dataset(name, tmp_path / "a", limit=4, seed=3)
    build_dataset(name, tmp_path / "b", limit=4, seed=3)
    build_dataset(name, tmp_path / "c", limit=4, seed=4)
    a, b, c = ([p.name for p in pngs(tmp_path / d)] for d in "abc")
    assert a == b and a != c
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in a)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_missing_package_names_the_package(name, tmp_path, monkeypatch):
    info = part = DATASETS[name]
    if info.parts:  # a mix names the package of the part that is missing
        part = DATASETS[info.parts[-1][0]]
        info = part
    monkeypatch.setitem(DATASETS, part.name, dataclasses.replace(part, source=str(tmp_path / "gone")))
    with pytest.raises(DataError, match=rf"{info.title} not found.*`{install_command(info)}`"):
        build_dataset(name, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="broad, emoji, emojione, fashion, nuovext, oxygen, sprites, tango"):
        build_dataset("mnist", tmp_path)


def _idx(images: np.ndarray) -> bytes:
    return struct.pack(">BBBB3I", 0, 0, 8, 3, *images.shape) + images.astype(np.uint8).tobytes()


def test_fashion_parser_pads_with_black_and_skips_blank(tmp_path, monkeypatch):
    images = np.zeros((3, 28, 28), np.uint8)
    images[0, 5:20, 8:12] = 200
    images[2, :, :14] = 90  # images[1] is blank
    source = tmp_path / "train.gz"
    source.write_bytes(gzip.compress(_idx(images)))
    monkeypatch.setitem(DATASETS, "fashion", dataclasses.replace(DATASETS["fashion"], source=str(source)))
    assert build_dataset("fashion", tmp_path / "out") == 2
    first = np.asarray(Image.open(tmp_path / "out" / "fashion_00000.png"))
    assert first.shape == (32, 32, 3)
    assert (first[:2] == 0).all() and (first[7:22, 10:14] == 200).all()
    assert not (tmp_path / "out" / "fashion_00001.png").exists()


def test_fashion_damaged_file_is_a_clear_error(tmp_path, monkeypatch):
    source = tmp_path / "train.gz"
    source.write_bytes(gzip.compress(_idx(np.ones((2, 28, 28)))[:-100]))
    monkeypatch.setitem(DATASETS, "fashion", dataclasses.replace(DATASETS["fashion"], source=str(source)))
    with pytest.raises(DataError, match="truncated IDX file.*apt-get install"):
        build_dataset("fashion", tmp_path / "out")


def test_sprite_cutter_takes_whole_sprites_only(tmp_path, monkeypatch):
    atlas = np.zeros((64, 128, 4), np.uint8)
    atlas[4:24, 4:20] = (200, 50, 50, 255)  # a 20x16 red ring ...
    atlas[8:20, 8:16] = 0
    atlas[13:15, 11:13] = (250, 250, 0, 255)  # ... with a detached sparkle inside its box
    atlas[2:30, 40:60] = (50, 200, 50, 255)  # two sprites fused into one 40-px-wide blob
    atlas[2:30, 60:80] = (50, 50, 200, 255)
    atlas[34:60, 90:120] = (90, 90, 90, 128)  # half-transparent grey
    atlas[40:60, 4:8] = (255, 255, 255, 255)  # thin, but 20 px tall and 80 px: a sprite
    atlas[50:53, 50:53] = (255, 0, 255, 255)  # 3x3: a fragment
    atlas[40:45, 30:42] = (0, 255, 255, 255)  # 12 px wide but only 60 px: a fragment
    sheets = tmp_path / "tiles"
    sheets.mkdir()
    Image.fromarray(atlas, "RGBA").save(sheets / "main.png")
    Image.fromarray(atlas, "RGBA").save(sheets / "player.png")  # exact duplicates are dropped
    monkeypatch.setitem(DATASETS, "sprites", dataclasses.replace(DATASETS["sprites"], source=str(sheets)))
    out = tmp_path / "out"
    assert build_dataset("sprites", out) == 3
    names = [p.name for p in pngs(out)]
    assert names == ["sprites_main_0004_0004.png", "sprites_main_0034_0090.png", "sprites_main_0040_0004.png"]
    ring = np.asarray(Image.open(out / names[0]))  # centred: box at rows 6..25, cols 8..23
    assert ring[6, 8].tolist() == [200, 50, 50] and ring[15, 15].tolist() == [250, 250, 0]
    assert (ring[:6] == 0).all() and (ring[10, 12] == 0).all()  # black ground
    grey = np.asarray(Image.open(out / names[1]))
    assert grey.max() == 45  # 90 at half alpha over black


def test_sprite_atlases_missing_from_an_existing_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS, "sprites", dataclasses.replace(DATASETS["sprites"], source=str(tmp_path)))
    with pytest.raises(DataError, match="no tile atlases.*apt-get install -y crawl-tiles-data"):
        build_dataset("sprites", tmp_path / "out")


def test_png_folder_sets_take_each_picture_once_on_white(tmp_path, monkeypatch):
    icons = tmp_path / "icons"
    (icons / "apps").mkdir(parents=True)
    rgba = np.zeros((16, 32, 4), np.uint8)  # a 32x16 picture, half of it transparent
    rgba[:, :16] = (200, 30, 30, 255)
    Image.fromarray(rgba, "RGBA").save(icons / "apps" / "red.png")
    (icons / "apps" / "alias.png").symlink_to(icons / "apps" / "red.png")  # same picture, another name
    (icons / "apps" / "gone.png").symlink_to(icons / "nowhere.png")  # dangling: skipped
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(icons / "blank.png")  # all white once composited
    (icons / "broken.png").write_bytes(b"not a png")
    monkeypatch.setitem(DATASETS, "tango", dataclasses.replace(DATASETS["tango"], source=str(icons)))
    out = tmp_path / "out"
    assert build_dataset("tango", out) == 1
    [only] = pngs(out)
    a = np.asarray(Image.open(only))
    assert a.shape == (32, 32, 3)
    assert (a[:8] == 255).all() and (a[24:] == 255).all()  # padded square on white
    assert a[16, 4].tolist() == [200, 30, 30] and (a[16, 20] == 255).all()


def test_npm_set_names_its_npm_command(tmp_path, monkeypatch):
    info = dataclasses.replace(DATASETS["emojione"], source=str(tmp_path / "gone"))
    monkeypatch.setitem(DATASETS, "emojione", info)
    with pytest.raises(DataError, match="npm install -g emojione-assets@4.5.0"):
        build_dataset("emojione", tmp_path / "out")


def test_fashion_at_64_px_is_enlarged_then_padded(tmp_path, monkeypatch):
    images = np.zeros((1, 28, 28), np.uint8)
    images[0, 5:20, 8:12] = 200
    source = tmp_path / "train.gz"
    source.write_bytes(gzip.compress(_idx(images)))
    monkeypatch.setitem(DATASETS, "fashion", dataclasses.replace(DATASETS["fashion"], source=str(source)))
    assert build_dataset("fashion", tmp_path / "out", resolution=64) == 1
    a = np.asarray(Image.open(tmp_path / "out" / "fashion_00000.png"))
    assert a.shape == (64, 64, 3)
    assert (a[:4] == 0).all() and (a[4 + 12:4 + 38, 4 + 18:4 + 22] == 200).all()  # 28 -> 56 px, then 4 px of black


def test_resolution_reads_an_icon_themes_folder_of_that_size(tmp_path, monkeypatch):
    for side, colour in ((32, (200, 0, 0)), (64, (0, 0, 200))):
        folder = tmp_path / "theme" / f"{side}x{side}" / "apps"
        folder.mkdir(parents=True)
        Image.new("RGBA", (side, side), colour + (255,)).save(folder / "app.png")
    monkeypatch.setitem(DATASETS, "tango", dataclasses.replace(DATASETS["tango"], source=str(tmp_path / "theme" / "32x32")))
    assert build_dataset("tango", tmp_path / "a") == 1 and build_dataset("tango", tmp_path / "b", resolution=64) == 1
    (a,), (b,) = pngs(tmp_path / "a"), pngs(tmp_path / "b")
    assert Image.open(a).size == (32, 32) and np.asarray(Image.open(a))[5, 5].tolist() == [200, 0, 0]
    assert Image.open(b).size == (64, 64) and np.asarray(Image.open(b))[5, 5].tolist() == [0, 0, 200]  # the 64 px file


@pytest.mark.parametrize("bad", [0, 15, 257, 10**9])
def test_resolution_out_of_range_is_refused(bad, tmp_path):
    with pytest.raises(ValueError, match="resolution must be a whole number from 16 to 256"):
        build_dataset("tango", tmp_path / "out", resolution=bad)
    assert not (tmp_path / "out").exists()


def test_broad_mix_at_64_px(tmp_path):
    need_dataset("broad")
    assert build_dataset("broad", tmp_path, limit=6, seed=2, resolution=64) == 6
    for f in pngs(tmp_path):
        with Image.open(f) as im:
            assert im.size == (64, 64) and im.mode == "RGB"
