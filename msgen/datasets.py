"""Public image data sets built from files that Debian packages install, for training from scratch.

(About 440 lines: one small builder per public picture set; they share the decoding limits and the mixing.)

Each set is read from its package's files (no downloads: the Space and CI are offline) and
written as square RGB PNGs, one per image, so that `msgen.data.load_image_set` and the Train
tab read them like any upload. `DATASETS` says where each comes from and under which licence.

- ``fashion``: Fashion-MNIST training images (Xiao et al. 2017), 28x28 greyscale padded
  with black, their own background, to 32x32.
- ``emoji``: every colour glyph of Noto Color Emoji, taken straight from the font's CBDT
  table with fontTools (so flags, skin tones and ZWJ sequences are included, which a
  cmap walk would miss), composited on white, padded to square, 64x64.
- ``sprites``: 32x32 sprites from Dungeon Crawl Stone Soup's tile atlases. The atlases are
  packed from sprites cropped to their bounding boxes, not laid on a 32-px grid, so fixed
  grid cells would cut most sprites in half. A sprite is instead a connected (8-neighbour)
  blob of non-transparent pixels whose box fits in 32x32, together with any smaller blobs
  lying wholly inside that box (sparkles, detached tips). Larger blobs are sprites fused
  with a neighbour, or big tiles, and are skipped rather than cut; blobs under 12 px or 64
  opaque pixels are fragments. Since only whole blobs are taken, no sprite is ever cut
  through. Sprites are centred and composited on black, the unlit dungeon they are drawn
  for (their drop shadows vanish into it); exact duplicates are dropped. The floor and wall
  atlases are opaque textures with no alpha to find sprites by, so they are not used.

Two more sets exist to measure few-shot fine-tuning (``bench/fewshot.py``): no shipped model
was trained on them, so a fine-tune on them starts from pictures its base has never seen.

- ``tango``: the Tango Desktop Project's 32x32 icons (Debian tango-icon-theme), composited on
  white, the Train tab's default ground for transparent uploads. Most files are symlinks
  aliasing another icon; each picture is taken once (by content).
- ``emojione``: EmojiOne 4.5 colour emoji, the 64x64 PNGs of the npm package emojione-assets
  (``npm install -g emojione-assets@4.5.0``), on white: another vendor's drawing of the same
  subjects as Noto's.

Blank or uniform images are skipped everywhere. `limit` keeps a seeded random subset, so a
small build still spans the whole set; file names come from the source (index, glyph,
atlas position), so the same image always gets the same name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import os
import random
import re
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from msgen.data import DataError

__all__ = ["DatasetInfo", "DATASETS", "build_dataset", "FASHION_TEST", "fashion_test_images", "emoji_image",
           "install_command"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a built-in data set is and where its source files live."""

    name: str  # key for build_dataset and `python -m msgen data NAME`
    title: str  # human name, used in messages and model cards
    package: str  # package that installs the source files
    source: str  # file or folder that package installs (tests point it elsewhere)
    license: str
    resolution: int  # side of the square PNGs written
    description: str
    install: str = ""  # how to install ``package``, when it is not a Debian package (apt-get)
    parts: tuple[tuple[str, int], ...] = ()  # a mix: (set, keep every n-th picture) at this resolution


DATASETS: dict[str, DatasetInfo] = {
    "fashion": DatasetInfo(
        name="fashion",
        title="Fashion-MNIST",
        package="dataset-fashion-mnist",
        source="/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
        license="MIT",
        resolution=32,
        description="60,000 Zalando clothing photos, 28x28 greyscale on black, padded to 32x32.",
    ),
    "emoji": DatasetInfo(
        name="emoji",
        title="Noto Color Emoji",
        package="fonts-noto-color-emoji",
        source="/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
        license="Apache-2.0 (images); the font itself is OFL-1.1",
        resolution=64,
        description="Every colour glyph of Google's Noto emoji font, on white, 64x64.",
    ),
    "sprites": DatasetInfo(
        name="sprites",
        title="Dungeon Crawl Stone Soup tiles",
        package="crawl-tiles-data",
        source="/usr/share/crawl/dat/tiles",
        license="CC0-1.0 (Debian's copyright file: 'Public Domain|CC0: most of tiles')",
        resolution=32,
        description="Items, monsters, player-doll parts and dungeon features, on black, 32x32.",
    ),
    "tango": DatasetInfo(
        name="tango",
        title="Tango icons",
        package="tango-icon-theme",
        source="/usr/share/icons/Tango/32x32",
        license="Public domain (Debian's copyright file for tango-icon-theme)",
        resolution=32,
        description="The Tango Desktop Project's 215 distinct 32x32 colour icons, on white.",
    ),
    "emojione": DatasetInfo(
        name="emojione",
        title="EmojiOne 4.5 emoji",
        package="emojione-assets",
        source="/usr/lib/node_modules/emojione-assets/png/64",
        license="EmojiOne Free License (attribution; see the package's LICENSE.md)",
        resolution=64,
        description="EmojiOne's colour emoji, the 64x64 PNGs of npm's emojione-assets 4.5.0, on white.",
        install="npm install -g emojione-assets@4.5.0",
    ),
    "oxygen": DatasetInfo(
        name="oxygen",
        title="Oxygen icons",
        package="oxygen-icon-theme",
        source="/usr/share/icons/oxygen/base/32x32",
        license="LGPL-3.0 (Debian's copyright file for oxygen-icon-theme)",
        resolution=32,
        description="KDE's Oxygen icon theme, its distinct 32x32 colour icons, on white.",
    ),
    "nuovext": DatasetInfo(
        name="nuovext",
        title="nuoveXT 2 icons",
        package="lxde-icon-theme",
        source="/usr/share/icons/nuoveXT2/32x32",
        license="LGPL-3.0 (Debian's copyright file for lxde-icon-theme)",
        resolution=32,
        description="LXDE's nuoveXT 2 icon theme, its distinct 32x32 colour icons, on white.",
    ),
    "broad": DatasetInfo(
        name="broad",
        title="Broad mix of small pictures",
        package="fonts-noto-color-emoji crawl-tiles-data dataset-fashion-mnist oxygen-icon-theme lxde-icon-theme",
        source="/usr/share",
        license="per part: Apache-2.0 (Noto emoji), CC0-1.0 (Crawl tiles), MIT (Fashion-MNIST), LGPL-3.0 (icons)",
        resolution=32,
        description="The base for fine-tuning colour pictures: Noto emoji, Dungeon Crawl sprites, Oxygen and "
        "nuoveXT icons and every 20th Fashion-MNIST picture, 32x32. It holds neither Tango nor EmojiOne, "
        "the sets bench/fewshot.py fine-tunes on.",
        parts=(("emoji", 1), ("sprites", 1), ("oxygen", 1), ("nuovext", 1), ("fashion", 20)),
    ),
}

_Item = tuple[str, Callable[[], "Image.Image | None"]]  # (stable file-name key, lazy render)


RESOLUTIONS = (16, 256)  # the sides ``build_dataset(resolution=...)`` takes


def at_resolution(info: DatasetInfo, resolution: int | None) -> DatasetInfo:
    """``info`` rendered at another side. An icon theme then reads its own folder of that size
    when the package has one (``.../64x64`` instead of ``.../32x32``), so pictures are drawn at
    that size rather than enlarged."""
    if resolution is None or resolution == info.resolution:
        return info
    if not isinstance(resolution, int) or not RESOLUTIONS[0] <= resolution <= RESOLUTIONS[1]:
        raise ValueError(f"resolution must be a whole number from {RESOLUTIONS[0]} to {RESOLUTIONS[1]}, "
                         f"got {resolution!r}")
    source = info.source
    sized = source.replace("/32x32", f"/{resolution}x{resolution}")
    if sized != source and Path(sized).is_dir():
        source = sized
    return dataclasses.replace(info, resolution=resolution, source=source)


def build_dataset(name: str, out_dir, *, limit: int | None = None, seed: int = 0,
                  resolution: int | None = None) -> int:
    """Write data set `name` as PNGs into `out_dir`; returns how many were written.

    `limit` keeps a random subset drawn with `seed` (the whole set when None); `resolution`
    renders it at another side than the set's own (``at_resolution``). Raises
    `ValueError` for an unknown name and `DataError`, naming the Debian package to install,
    when its files are missing.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    info = at_resolution(DATASETS[name], resolution)
    source = Path(info.source)
    if info.parts:
        items = _mix_items(info)
    elif not source.exists():
        raise _missing(info)
    else:
        items = _BUILDERS[name](source, info)
    order = list(range(len(items)))
    if limit is not None:
        random.Random(seed).shuffle(order)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for index in order:
        if limit is not None and written >= limit:
            break
        key, render = items[index]
        image = render()
        if image is None:
            continue
        _save_png(image, out / f"{name}_{key}.png")
        written += 1
    return written


def _missing(info: DatasetInfo, detail: str = "") -> DataError:
    where = f" at {info.source}" + (f" ({detail})" if detail else "")
    return DataError(f"{info.title} not found{where}: install it with `{install_command(info)}`")


def install_command(info: DatasetInfo) -> str:
    """The shell command that installs a set's source package."""
    return info.install or f"apt-get install -y {info.package}"


def _save_png(image: Image.Image, path: Path) -> None:
    """Temp file + os.replace, so a killed build never leaves a half-written PNG behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG", optimize=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _is_blank(rgb: np.ndarray) -> bool:
    """Uniform to within a few levels: nothing a generator could learn from."""
    return int(rgb.max()) - int(rgb.min()) < 8


# --- Fashion-MNIST ---------------------------------------------------------------------------


FASHION_TEST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"  # held out: no model trains on it


def fashion_test_images(source: str | Path = FASHION_TEST) -> np.ndarray:
    """Fashion-MNIST's 10,000 test images, padded exactly as the training set is: N x 32 x 32 uint8."""
    info = DATASETS["fashion"]
    return _pad_fashion(_read_idx_images(Path(source), info), info.resolution)


def _pad_fashion(images: np.ndarray, resolution: int) -> np.ndarray:
    scale = max(1, resolution // 32)  # at 64 px and up the 28 px pictures are enlarged (bilinear) first
    if scale > 1:
        side = images.shape[1] * scale
        images = np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.Resampling.BILINEAR))
                           for im in images])
    before = (resolution - images.shape[1]) // 2
    after = resolution - images.shape[1] - before
    return np.pad(images, ((0, 0), (before, after), (before, after)))  # black: the data's own ground


def _fashion_items(source: Path, info: DatasetInfo) -> list[_Item]:
    padded = _pad_fashion(_read_idx_images(source, info), info.resolution)

    def render(i: int) -> Image.Image | None:
        grey = padded[i]
        return None if _is_blank(grey) else Image.fromarray(grey, "L").convert("RGB")

    return [(f"{i:05d}", lambda i=i: render(i)) for i in range(len(padded))]


def _read_idx_images(path: Path, info: DatasetInfo) -> np.ndarray:
    """A gzipped IDX file of unsigned bytes (LeCun's MNIST format) as an N x H x W array."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise _missing(info, f"unreadable: {e}") from None
    if len(data) < 16 or data[:3] != b"\0\0\x08" or data[3] != 3:  # 0x08 = ubyte, 3 dims
        raise _missing(info, "not an IDX image file")
    dims = struct.unpack(">3I", data[4:16])
    pixels = np.frombuffer(data, np.uint8, offset=16)
    if pixels.size != np.prod(dims):
        raise _missing(info, "truncated IDX file")
    return pixels.reshape(dims)


# --- Noto Color Emoji ------------------------------------------------------------------------


def emoji_image(codepoint: int, side: int) -> Image.Image:
    """One Noto colour glyph, rendered as the emoji set renders it (on white, padded square), side x side."""
    info = DATASETS["emoji"]
    font, strike = _open_emoji_font(Path(info.source), info)
    glyph = font.getBestCmap().get(codepoint)
    image = _render_glyph(strike, glyph, side) if glyph in strike else None
    if image is None:
        raise DataError(f"{info.title} has no colour glyph for U+{codepoint:04X}")
    return image


def _open_emoji_font(source: Path, info: DatasetInfo):
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        raise DataError("the emoji set needs fontTools: pip install fonttools") from None
    try:
        font = TTFont(source, lazy=True)
        return font, font["CBDT"].strikeData[0]  # Noto ships one strike, 109 ppem, 136x128 PNGs
    except Exception as e:  # fontTools raises many types on a damaged font
        raise _missing(info, f"not a colour bitmap font: {e}") from None


def _render_glyph(strike, glyph: str, side: int) -> Image.Image | None:
    png = getattr(strike[glyph], "imageData", None)  # formats 17-19 hold PNG data
    if not png:
        return None
    rgba = Image.open(io.BytesIO(png)).convert("RGBA")
    square = max(rgba.size)
    canvas = Image.new("RGBA", (square, square), (255, 255, 255, 255))
    canvas.alpha_composite(rgba, ((square - rgba.width) // 2, (square - rgba.height) // 2))
    rgb = canvas.convert("RGB")
    if _is_blank(np.asarray(rgb)):
        return None
    return rgb.resize((side, side), Image.Resampling.LANCZOS)


def _emoji_items(source: Path, info: DatasetInfo) -> list[_Item]:
    font, strike = _open_emoji_font(source, info)
    try:
        order = [g for g in font.getGlyphOrder() if g in strike]
    except Exception as e:
        raise _missing(info, f"not a colour bitmap font: {e}") from None
    return [(_safe(glyph), lambda glyph=glyph: _render_glyph(strike, glyph, info.resolution)) for glyph in order]


def _safe(glyph: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", glyph)


# --- Dungeon Crawl sprites -------------------------------------------------------------------

_SHEETS = ("main", "player", "feat", "gui", "icons")  # the atlases of alpha-cut sprites
_CELL = 32
_MIN_SIDE, _MIN_OPAQUE = 12, 64  # below these a blob is a fragment, not a sprite


def _sprite_items(source: Path, info: DatasetInfo) -> list[_Item]:
    sheets = [source / f"{s}.png" for s in _SHEETS if (source / f"{s}.png").is_file()]
    if not sheets:
        raise _missing(info, f"no tile atlases ({', '.join(s + '.png' for s in _SHEETS)})")
    seen, items = set(), []
    for sheet in sheets:
        with Image.open(sheet) as im:
            rgba = np.asarray(im.convert("RGBA"))
        for y, x, cell in _cut_sprites(rgba):
            digest = hashlib.sha256(cell.tobytes()).digest()
            if digest not in seen:
                seen.add(digest)
                image = Image.fromarray(cell, "RGB")
                if info.resolution != _CELL:  # pixel art: whole multiples stay crisp (nearest), others are resampled
                    whole = info.resolution % _CELL == 0
                    image = image.resize((info.resolution,) * 2,
                                         Image.Resampling.NEAREST if whole else Image.Resampling.LANCZOS)
                items.append((f"{sheet.stem}_{y:04d}_{x:04d}", lambda image=image: image))
    return items


def _cut_sprites(rgba: np.ndarray):
    """Yield (y, x, 32x32x3 uint8) for each whole sprite in an atlas; see the module docstring."""
    try:
        from scipy import ndimage
    except ImportError:
        raise DataError("the sprites set needs SciPy: pip install scipy") from None
    labels, _ = ndimage.label(rgba[..., 3] > 0, structure=np.ones((3, 3)))
    boxes = ndimage.find_objects(labels)
    fits = {i: b for i, b in enumerate(boxes, 1) if _size(b)[0] <= _CELL and _size(b)[1] <= _CELL}
    members, absorbed = {}, set()
    for i, box in fits.items():
        members[i] = [j for j in np.unique(labels[box]) if j and _inside(boxes[j - 1], box)]
        absorbed.update(j for j in members[i] if j != i)
    for i, box in fits.items():
        h, w = _size(box)
        if i in absorbed or max(h, w) < _MIN_SIDE:
            continue
        mask = np.isin(labels[box], members[i])
        if mask.sum() < _MIN_OPAQUE:
            continue
        pixels = rgba[box].astype(np.uint32)
        alpha = pixels[..., 3:] * mask[..., None]
        rgb = ((pixels[..., :3] * alpha + 127) // 255).astype(np.uint8)  # over black
        cell = np.zeros((_CELL, _CELL, 3), np.uint8)
        top, left = (_CELL - h) // 2, (_CELL - w) // 2
        cell[top : top + h, left : left + w] = rgb
        if not _is_blank(cell):
            yield box[0].start, box[1].start, cell


def _size(box) -> tuple[int, int]:
    return box[0].stop - box[0].start, box[1].stop - box[1].start


def _inside(inner, outer) -> bool:
    return all(o.start <= i.start and i.stop <= o.stop for i, o in zip(inner, outer))


# --- PNG folders: Tango icons, EmojiOne ------------------------------------------------------


def _png_folder_items(source: Path, info: DatasetInfo) -> list[_Item]:
    """Every distinct PNG under ``source`` (symlinks followed, duplicates by content dropped),
    composited on white and resized to the set's resolution; named by its path in the folder."""
    seen, items = set(), []
    for path in sorted(source.rglob("*.png")):
        try:
            data = path.read_bytes()
        except OSError:
            continue  # a dangling symlink
        digest = hashlib.sha256(data).digest()
        if digest in seen:
            continue
        seen.add(digest)
        key = _safe(str(path.relative_to(source).with_suffix("")).replace(os.sep, "_"))
        items.append((key, lambda data=data: _on_white(data, info.resolution)))
    if not items:
        raise _missing(info, "no PNG files")
    return items


def _on_white(png: bytes, side: int) -> Image.Image | None:
    try:
        rgba = Image.open(io.BytesIO(png)).convert("RGBA")
    except (OSError, ValueError):
        return None  # a damaged file in the package: skip it, as blank pictures are skipped
    square = max(rgba.size)
    canvas = Image.new("RGBA", (square, square), (255, 255, 255, 255))
    canvas.alpha_composite(rgba, ((square - rgba.width) // 2, (square - rgba.height) // 2))
    rgb = canvas.convert("RGB")
    if _is_blank(np.asarray(rgb)):
        return None
    return rgb if rgb.size == (side, side) else rgb.resize((side, side), Image.Resampling.LANCZOS)


def _mix_items(info: DatasetInfo) -> list[_Item]:
    """The parts of a mix, each rendered at the mix's resolution, keys prefixed by the part's name."""
    items: list[_Item] = []
    for part, every in info.parts:
        part_info = at_resolution(DATASETS[part], info.resolution)
        source = Path(part_info.source)
        if not source.exists():
            raise _missing(part_info, f"(needed by the {info.title})")
        items += [(f"{part}_{key}", render) for key, render in _BUILDERS[part](source, part_info)[::every]]
    return items


_BUILDERS: dict[str, Callable[[Path, DatasetInfo], list[_Item]]] = {
    "fashion": _fashion_items,
    "emoji": _emoji_items,
    "sprites": _sprite_items,
    "tango": _png_folder_items,
    "emojione": _png_folder_items,
    "oxygen": _png_folder_items,
    "nuovext": _png_folder_items,
}
