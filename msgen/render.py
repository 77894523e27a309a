"""Tensors -> pictures, for every caller: the CLI, the Trainer's previews and all three tabs
(the tabs' own tiles too: Train's thumbnails and preview grid, Decompose's level tiles).

(Over 300 lines on purpose: the one place every pixel rule lives, so no caller can drift.)

The one place msgen turns model outputs into uint8 pixels (diffusers' ``VaeImageProcessor``
idea), so ``python -m msgen generate --features`` writes exactly what the Generate page shows.
Gradio-free: tensors in, H x W x 3 uint8 arrays or encoded bytes out.

* One rounding rule: [-1, 1] -> 0..255 is nearest with halves up, clipped (``to_bytes``); a
  map scaled from its own range rounds the same way (``_to_byte``).
* One nearest-neighbour rule for display: whole factors repeat pixels (``upscale``,
  ``enlarge``), other sizes go through PIL NEAREST (``resize``); the page enlarges with CSS.
* Feature maps: PCA to RGB on the top three eigenvectors of the channel covariance
  (deterministic, signs fixed; through the smaller of the C x C covariance and the pixel Gram
  matrix, and a small Krylov solver), single channels and heat maps through one colour ramp,
  the most active channels, the level statistics; sized for a live slider: ``level_views``
  converts and centres each map once and shares it between the PCA view, the channel tiles,
  the top channels and the statistics (whose spread comes from the centred sum of squares), in
  small single-threaded numpy calls (a 64x64 model's five cards in ~3 ms on our CPU).
* Encoding: PNG for files, lossless WebP for the page's inline ``data:`` URIs (encoding
  is a memory copy), lossless WebP for the files it serves (named by their hash), and the
  looping GIF of a latent walk.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import math
import os
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# A perceptual colour ramp for single channels (dark blue -> teal -> yellow, viridis-like):
# grey maps hide sign and small differences that a ramp shows.
_RAMP_STOPS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32)
RAMP = np.stack(
    [np.interp(np.linspace(0, 4, 256), np.arange(5), _RAMP_STOPS[:, c]) for c in range(3)], axis=1
).round().astype(np.uint8)
GAP = 1  # pixels between the tiles of a level card, in mid grey
GAP_VALUE = 128
MIN_TILE = 16  # coarse levels' tiles are enlarged (nearest) to this, so a gap stays a thin line
TOP_K = 8  # most active channels kept per level (the page's channel picker starts at the first)
CARD_CHANNELS = 7  # a level card is 3 x 3 tiles: picture, PCA view, 7 most active channels
# Lossless WebP at its fastest effort: exact pixels, 4x quicker than PNG on a 194 px card.
WEBP = dict(format="webp", lossless=True, quality=0, method=0)
# The page's inline pictures are lossless WebP. BMP was measured too: 40x quicker to encode
# (0.05 against 2 ms for a 194 px card) but ~2.4x larger responses, and no faster in the browser
# (emoji64: 1.88x / 1.79x the trivial app with BMP, 1.87x with WebP, one quiet window). A
# public Space's visitors pay for bytes on every slider move, so WebP stays.
DATA_URI_FORMAT = "webp"
DATA_URI_PREFIX = "data:image/webp;base64,"


@functools.cache
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread() -> AbstractContextManager:
    """numpy's BLAS on one thread for a block: these matrices are tiny, and a second BLAS thread
    waiting for a core that a training run holds turned a 0.07 ms product into 12 to 16 ms."""
    return _blas().limit(limits=1, user_api="blas")


# --- [-1, 1] tensors -> uint8 -------------------------------------------------------------------
def to_bytes(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] floats of any shape -> uint8 0..255 of that shape: nearest, halves up, clipped."""
    x = images.detach().float().cpu().numpy()
    return (x * 127.5 + 128.0).clip(0, 255).astype(np.uint8)  # +128 = +127.5 and round half up


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W (or 3 x H x W) in [-1, 1] -> N x H x W x 3 (or H x W x 3) uint8."""
    return np.ascontiguousarray(np.moveaxis(to_bytes(images), -3, -1))


def _to_byte(x: np.ndarray, lo, hi) -> np.ndarray:
    """``x`` scaled from ``lo``..``hi`` (broadcast) to 0..255 uint8, rounding as ``to_bytes``."""
    scale = 255.0 / np.maximum(hi - lo, 1e-8)
    return ((x - lo) * scale + 0.5).clip(0, 255).astype(np.uint8)


# --- layout and display sizes -------------------------------------------------------------------
def grid(tiles, cols: int, *, gap: int = GAP, fill: int = GAP_VALUE, border: bool = False) -> np.ndarray:
    """Equal-sized H x W x 3 tiles, row-major, ``cols`` wide, ``gap`` pixels of grey ``fill``
    between them (and around them with ``border``, torchvision ``make_grid``'s layout)."""
    n, (h, w) = len(tiles), tiles[0].shape[:2]
    rows, edge = -(-n // cols), gap if border else 0
    out = np.full((rows * (h + gap) - gap + 2 * edge, cols * (w + gap) - gap + 2 * edge, 3), fill, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = edge + r * (h + gap), edge + c * (w + gap)
        out[y: y + h, x: x + w] = t
    return out


def upscale(picture: np.ndarray, factor: int) -> np.ndarray:
    """H x W (x 3) -> nearest-neighbour enlargement by a whole factor (each pixel a square)."""
    return picture if factor <= 1 else picture.repeat(factor, axis=0).repeat(factor, axis=1)


def enlarge(picture, min_size: int = 256):
    """A PIL image or H x W x 3 array enlarged by the smallest whole factor that makes its longer
    side at least ``min_size`` (nearest neighbour, so small images stay crisp)."""
    longer = max(picture.size) if isinstance(picture, Image.Image) else max(picture.shape[:2])
    factor = max(1, -(-min_size // longer))
    if factor == 1 or not isinstance(picture, Image.Image):
        return upscale(picture, factor)
    return picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)


def resize(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    """H x W x 3 -> height x width x 3, nearest neighbour at any ratio (PIL NEAREST)."""
    if picture.shape[:2] == (height, width):
        return picture
    return np.asarray(Image.fromarray(picture).resize((width, height), Image.NEAREST))


# --- feature maps -------------------------------------------------------------------------------
def pca_rgb(fmap: torch.Tensor) -> np.ndarray:
    """C x H x W -> H x W x 3 uint8: the three main directions of channel space as colours
    (grey when there are fewer than three channels or pixels; a dead map stays black)."""
    c, h, w = fmap.shape
    x = _numpy(fmap).reshape(c, h * w)
    return _pca(x - x.mean(1, keepdims=True), h, w)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _pca(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """``pca_rgb`` of a C x (H * W) map whose channels are already centred."""
    c = x.shape[0]
    if min(c, h * w) < 3:
        proj = np.repeat(x[:1], 3, axis=0)
    elif c <= h * w:  # eigenvectors of the C x C covariance, then project the pixels
        proj = _top3(x @ x.T).T @ x
    else:  # coarse levels have fewer pixels than channels: the pixel Gram matrix is smaller
        proj = _top3(x.T @ x).T  # the same three axes; their scale is normalised away below
    # An eigenvector's sign is arbitrary; fixing it makes the colours a function of the map.
    flip = proj[np.arange(3), np.abs(proj).argmax(1)] < 0
    proj[flip] *= -1
    rgb = _to_byte(proj, proj.min(1, keepdims=True), proj.max(1, keepdims=True))
    return np.ascontiguousarray(rgb.T).reshape(h, w, 3)


def _top3(sym: np.ndarray, blocks: int = 6, direct: int = 32) -> np.ndarray:
    """The eigenvectors of the three largest eigenvalues of a PSD matrix, largest first.

    Rayleigh-Ritz on a block Krylov space (``blocks`` x 3 wide, started from the three
    highest-variance axes): matches a full eigh to better than 0.998 in cosine even on the flat
    spectra of an untrained model, and stays in small single-threaded numpy calls; LAPACK's
    full eigh wakes a thread pool, which on a busy 2-core host cost 3 to 4 times as much.
    """
    s = sym.astype(np.float64)
    d = s.shape[0]
    if d <= max(direct, 3 * blocks):  # a full eigh is quicker than the Krylov loop up to ~32
        return np.linalg.eigh(s)[1][:, ::-1][:, :3]
    krylov = [s[:, np.argsort(-np.diag(s), kind="stable")[:3]]]
    for _ in range(blocks - 1):
        krylov.append(s @ np.linalg.qr(krylov[-1])[0])
    q = np.linalg.qr(np.concatenate(krylov, axis=1))[0]
    vecs = np.linalg.eigh(q.T @ s @ q)[1]
    return q @ vecs[:, ::-1][:, :3]


def colorize_channels(fmap: torch.Tensor, channels: list[int]) -> np.ndarray:
    """The listed channels of a C x H x W map, each scaled to its own range: k x H x W x 3 uint8."""
    x = fmap.detach().float().cpu().numpy()[channels]
    k, h, w = x.shape
    rows = x.reshape(k, h * w)
    idx = _to_byte(rows, rows.min(1, keepdims=True), rows.max(1, keepdims=True))
    return np.take(RAMP, idx, axis=0).reshape(k, h, w, 3)  # take: 4x fancy indexing


def channel_view(fmap: torch.Tensor, channel: int, *, normalize: bool) -> np.ndarray:
    """One channel of a C x H x W map through the colour ramp, scaled to its own range or the
    level's: H x W x 3 uint8."""
    f = fmap.detach().float().cpu().numpy()
    x = f[channel]
    lo, hi = (x.min(), x.max()) if normalize else (f.min(), f.max())
    return np.take(RAMP, _to_byte(x, lo, hi), axis=0)


def heat(values: torch.Tensor) -> np.ndarray:
    """H x W non-negative values (e.g. nats per position) through the colour ramp, scaled from
    zero to their maximum: H x W x 3 uint8."""
    v = values.detach().float().cpu().numpy()
    return np.take(RAMP, _to_byte(v, np.float32(0), v.max()), axis=0)


def top_channels(fmap: torch.Tensor, k: int = TOP_K) -> list[int]:
    """Indices of the ``k`` channels with the largest mean absolute activation, strongest first."""
    return _top(_numpy(fmap).reshape(fmap.shape[0], -1), k)


def _top(x: np.ndarray, k: int) -> list[int]:
    energy = np.abs(x).mean(axis=1)
    return np.argsort(-energy, kind="stable")[:k].tolist()


@dataclass
class LevelStats:
    level: int
    channels: int
    size: int
    mean: float
    std: float
    zero_share: float  # share of activations at (numerically) zero or below: dead/negative units


def level_stats(level: int, fmap: torch.Tensor) -> LevelStats:
    """Statistics of one sample's C x H x W feature map, in numpy: a live slider cannot afford
    waking torch's thread pool for four reductions."""
    x = _numpy(fmap).reshape(fmap.shape[0], -1)
    mu = x.mean(1, keepdims=True)
    return _stats(level, int(fmap.shape[-1]), x, x - mu, mu[:, 0])


def _stats(level: int, size: int, x: np.ndarray, centred: np.ndarray, mu: np.ndarray) -> LevelStats:
    """``level_stats`` from the map's channels (C x P), centred, and their means: the spread is
    the within-channel sum of squares plus the between-channel one, so no pass of its own."""
    n = x.size
    mean = float(mu.astype(np.float64).mean())
    ss = float(np.vdot(centred, centred)) + x.shape[1] * float(np.square(mu.astype(np.float64) - mean).sum())
    std = float(np.sqrt(max(ss, 0.0) / (n - 1))) if n > 1 else 0.0
    return LevelStats(level=level, channels=int(x.shape[0]), size=size, mean=mean, std=std,
                      zero_share=np.count_nonzero(x <= 1e-6) / n)


def level_card(image: torch.Tensor, fmap: torch.Tensor, channels: list[int], cols: int = 3,
               extra: dict[str, torch.Tensor] | None = None) -> np.ndarray:
    """One level at a glance, ``cols`` tiles wide: the picture at that scale (3 x h x w in
    [-1, 1]), the feature map in PCA colours, a family's own pictures of the level (``extra``:
    name -> 3 x h x w in [-1, 1], e.g. a token map), then the listed channels, each scaled to its
    own range. Tiles are enlarged by whole factors to one size of at least ``MIN_TILE``.
    One picture per level keeps a live update to six pictures, each encoded once."""
    c, h, w = fmap.shape
    x = _numpy(fmap).reshape(c, h * w)
    return _card(image, x, _pca(x - x.mean(1, keepdims=True), h, w), channels, h, w, cols, extra)


def _tile_size(sides: list[int]) -> int:
    """The card's tile side: a whole multiple of every tile's own side when that stays small
    (so each is enlarged by a whole factor), at least ``MIN_TILE``."""
    common = functools.reduce(math.lcm, sides)
    if common > 4 * max(sides):  # sides without a small common multiple: the largest one decides
        common = max(sides)
    return common * max(1, -(-MIN_TILE // common))


def _card(image: torch.Tensor, x: np.ndarray, pca: np.ndarray, channels: list[int], h: int, w: int,
          cols: int = 3, extra: dict[str, torch.Tensor] | None = None) -> np.ndarray:
    picture = resize(to_uint8(image), h, w)  # a family whose feature map is not at its image's size
    rows = x[channels]
    ramp = np.take(RAMP, _to_byte(rows, rows.min(1, keepdims=True), rows.max(1, keepdims=True)), axis=0)
    own = [to_uint8(t) for t in (extra or {}).values()]
    tiles = [picture, pca, *own, *ramp.reshape(len(channels), h, w, 3)]
    if not own:  # every tile is h x w: one whole factor
        factor = max(1, -(-MIN_TILE // max(h, w)))
        return grid([upscale(t, factor) for t in tiles], cols)
    side = _tile_size([max(t.shape[:2]) for t in tiles])
    return grid([_fit(t, side) for t in tiles], cols)


def _fit(tile: np.ndarray, side: int) -> np.ndarray:
    th, tw = tile.shape[:2]
    if side % th == 0 and side % tw == 0 and side // th == side // tw:
        return upscale(tile, side // th)
    return resize(tile, side, side)


@dataclass
class LevelView:
    """What the page shows of one level: its card, most active channels and statistics."""

    level: int
    channels: int
    top: list[int]  # the TOP_K most active channels, strongest first
    card: np.ndarray  # ``level_card``: H x W x 3 uint8
    stats: LevelStats
    extra: tuple[str, ...] = ()  # the family's own tiles in the card, after the PCA view
    shown: int = CARD_CHANNELS  # channels in the card


def level_views(images: dict[int, torch.Tensor], features: dict[int, torch.Tensor], index: int = 0,
                pictures: dict[int, dict[str, torch.Tensor]] | None = None) -> list[LevelView]:
    """Sample ``index`` of a generation (level -> N x 3 x r x r images and N x C x H x W feature
    maps), every level that has a feature map, coarse to fine. ``pictures``: a family's own
    pictures of each level (``level_pictures``), placed after the PCA view in place of as many
    channels, so every card keeps its 3 x 3 tiles."""
    views = []
    for lvl in sorted(features):
        f = features[lvl][index]
        c, h, w = f.shape
        x = _numpy(f).reshape(c, h * w)  # one conversion, one centring for the card and the statistics
        mu = x.mean(1, keepdims=True)
        centred = x - mu
        top = _top(x, TOP_K)
        extra = {k: v[index] for k, v in ((pictures or {}).get(lvl) or {}).items()}
        shown = max(0, CARD_CHANNELS - len(extra))
        card = _card(images[lvl][index], x, _pca(centred, h, w), top[:shown], h, w, extra=extra)
        views.append(LevelView(level=lvl, channels=c, top=top, card=card, stats=_stats(lvl, w, x, centred, mu[:, 0]),
                               extra=tuple(extra), shown=min(shown, len(top))))
    return views


# --- the tabs' tiles (Train's upload gallery and preview, Decompose's levels) ---------------------
def thumbnail(image: torch.Tensor, size: int = 96) -> np.ndarray:
    """3 x r x r in [-1, 1] -> H x W x 3 uint8 enlarged by the whole factor that brings it nearest
    ``size`` from below (never shrunk): the Train tab's gallery of accepted uploads."""
    pic = to_uint8(image)
    return upscale(pic, max(1, size // pic.shape[1]))


def tile(image: torch.Tensor, min_size: int) -> np.ndarray:
    """3 x r x r in [-1, 1] -> H x W x 3 uint8 enlarged (nearest) to at least ``min_size``."""
    return enlarge(to_uint8(image), min_size)


def latent_tile(mu: torch.Tensor, kl: torch.Tensor, min_size: int) -> np.ndarray:
    """A level's posterior mean (zc x H x W) in PCA colours beside its KL per position (H x W) as a
    heat map scaled to its own maximum, both enlarged like ``tile``, 4 white pixels apart."""
    return grid([enlarge(pca_rgb(mu), min_size), enlarge(heat(kl), min_size)], cols=2, gap=4, fill=255)


def preview_grid(images: dict[int, torch.Tensor], rows: int, min_size: int = 96) -> np.ndarray:
    """A training preview: one row per fixed seed (the first ``rows``), one column per level
    (level -> N x 3 x r x r in [-1, 1]), coarse to fine, each enlarged to one size."""
    size = max(min_size, max(images))
    cols = [[resize(im, size, size) for im in to_uint8(images[lvl][:rows])] for lvl in sorted(images)]
    cells = [col[i] for i in range(len(cols[0])) for col in cols]  # row-major: sample i, level j
    return grid(cells, cols=len(cols), gap=2, fill=255, border=True)


# --- encoding -----------------------------------------------------------------------------------
def _pil(picture: Image.Image | np.ndarray) -> Image.Image:
    return picture if isinstance(picture, Image.Image) else Image.fromarray(picture)


def png_bytes(picture: Image.Image | np.ndarray) -> bytes:
    buf = io.BytesIO()
    _pil(picture).save(buf, format="PNG")
    return buf.getvalue()


def webp_bytes(picture: Image.Image | np.ndarray) -> bytes:
    """Lossless WebP at its fastest effort: the page's pictures, exact pixels."""
    buf = io.BytesIO()
    _pil(picture).save(buf, **WEBP)
    return buf.getvalue()


def data_uri(picture: Image.Image | np.ndarray) -> str:
    """``picture`` as a lossless WebP ``data:`` URI: exact pixels inline in a response."""
    return DATA_URI_PREFIX + base64.b64encode(webp_bytes(picture)).decode("ascii")


def from_data_uri(uri: str) -> Image.Image:
    """The picture in a ``data:image/...;base64,`` URI (what ``data_uri`` makes), decoded."""
    head, sep, body = str(uri).partition(",")
    if not (sep and head.startswith("data:image/") and head.endswith(";base64")):
        raise ValueError("not a base64 data:image URI")
    try:
        img = Image.open(io.BytesIO(base64.b64decode(body, validate=True)))
        img.load()
    except (binascii.Error, OSError) as exc:
        raise ValueError(f"not a readable picture: {exc}") from None
    return img


def save(picture: Image.Image | np.ndarray, folder: Path) -> str:
    """Write ``picture`` once under ``folder`` as ``<sha256>.webp`` (atomically) and return its
    path: a folder a web server serves as it is (the Generate tab's grid in Gradio's cache)."""
    data = webp_bytes(picture)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:40]}.webp"
    try:
        os.utime(path)  # already there: mark it recently used, so a sweep keeps it
    except FileNotFoundError:
        tmp = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)  # a concurrent reader sees no file or the whole file, never half
    return str(path)


def save_gif(frames: list[Image.Image], path: Path, *, frame_ms: int = 80, bounce: bool = True) -> Path:
    """An endlessly looping GIF; ``bounce`` plays it forward then back so the loop has no jump."""
    seq = frames + frames[-2:0:-1] if bounce and len(frames) > 2 else frames
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    seq[0].save(tmp, format="gif", save_all=True, append_images=seq[1:], duration=frame_ms, loop=0, optimize=False)
    os.replace(tmp, path)  # another request for the same walk never sees half a file
    return path
