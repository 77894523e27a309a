"""Tensors -> pictures for the Generate tab: the only place msgen turns model outputs into PIL.

Everything here is sized for a live slider: a 64x64 model's image and every level's card
render and encode in a few milliseconds. Pictures stay at their native size and the page
enlarges them with CSS ``image-rendering: pixelated`` (nearest neighbour, free in the
browser); Python enlarges with PIL NEAREST only for the GIF, which leaves the page.

``data_uri`` encodes a picture once, as lossless WebP, into a ``data:`` URI: the live page and
the ``/generate`` API carry every picture of an update inside the one response, so a browser
paints it without fetching a file per picture and ``gradio_client`` downloads nothing. ``save``
writes a picture (the seed grid, the latent-walk GIF) once into Gradio's cache folder, named by
its hash, which Gradio then serves as it is.

The PCA-to-RGB view projects a level's C channels onto the top three eigenvectors of their
covariance (deterministic, signs fixed; through the smaller of the C x C covariance and the
pixel Gram matrix, and a small Krylov solver), the cheap form of what
``msgen.features.pca_rgb`` does with a randomised low-rank solver.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import uuid
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from threadpoolctl import ThreadpoolController

# A perceptual colour ramp for single channels (dark blue -> teal -> yellow, viridis-like):
# grey maps hide sign and small differences that a ramp shows.
_RAMP_STOPS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32)
RAMP = np.stack(
    [np.interp(np.linspace(0, 4, 256), np.arange(5), _RAMP_STOPS[:, c]) for c in range(3)], axis=1
).round().astype(np.uint8)
GAP = 1  # pixels between the tiles of a level card, in mid grey
GAP_VALUE = 128
MIN_TILE = 16  # coarse levels' tiles are enlarged (nearest) to this, so a gap stays a thin line
# Lossless WebP at its fastest effort: exact pixels, 4x quicker than PNG on a 194 px card.
WEBP = dict(format="webp", lossless=True, quality=0, method=0)
DATA_URI_PREFIX = "data:image/webp;base64,"
_BLAS = ThreadpoolController()


def one_blas_thread() -> AbstractContextManager:
    """numpy's BLAS on one thread for a block: these matrices are tiny, and a second BLAS thread
    waiting for a core that a training run holds turned a 0.07 ms product into 12 to 16 ms."""
    return _BLAS.limit(limits=1, user_api="blas")


def data_uri(picture: Image.Image | np.ndarray) -> str:
    """``picture`` as a lossless WebP ``data:`` URI (exact pixels, inline in a response)."""
    img = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    buf = io.BytesIO()
    img.save(buf, **WEBP)
    return DATA_URI_PREFIX + base64.b64encode(buf.getvalue()).decode("ascii")


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
    """Write ``picture`` once under ``folder`` as ``<sha256>.webp`` (atomically) and return its path."""
    img = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    buf = io.BytesIO()
    img.save(buf, **WEBP)
    data = buf.getvalue()
    path = folder / f"{hashlib.sha256(data).hexdigest()[:40]}.webp"
    try:
        os.utime(path)  # already there: mark it recently used, so a sweep keeps it
    except FileNotFoundError:
        tmp = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)  # a concurrent reader sees no file or the whole file, never half
    return str(path)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W (or 3 x H x W) in [-1, 1] -> N x H x W x 3 (or H x W x 3) uint8."""
    x = images.detach().float().cpu().numpy()
    x = (x * 127.5 + 128.0).clip(0, 255).astype(np.uint8)  # +128 = +127.5 and round half up
    return np.ascontiguousarray(np.moveaxis(x, -3, -1))


def enlarge(img: Image.Image, min_size: int = 256) -> Image.Image:
    """Nearest-neighbour enlargement by a whole factor so small images stay crisp."""
    factor = max(1, -(-min_size // max(img.size)))
    return img if factor == 1 else img.resize((img.width * factor, img.height * factor), Image.NEAREST)


def pca_rgb(fmap: torch.Tensor) -> np.ndarray:
    """C x H x W -> H x W x 3 uint8: the three main directions of channel space as colours."""
    c, h, w = fmap.shape
    x = fmap.detach().float().cpu().numpy().reshape(c, h * w)
    x = x - x.mean(1, keepdims=True)
    if min(c, h * w) < 3:
        proj = np.repeat(x[:1], 3, axis=0)
    elif c <= h * w:  # eigenvectors of the C x C covariance, then project the pixels
        proj = _top3(x @ x.T).T @ x
    else:  # coarse levels have fewer pixels than channels: the pixel Gram matrix is smaller
        proj = _top3(x.T @ x).T  # the same three axes; their scale is normalised away below
    # An eigenvector's sign is arbitrary; fixing it makes the colours a function of the map.
    flip = proj[np.arange(3), np.abs(proj).argmax(1)] < 0
    proj[flip] *= -1
    return np.ascontiguousarray(_to_byte(proj).T).reshape(h, w, 3)


def _top3(sym: np.ndarray, blocks: int = 6) -> np.ndarray:
    """The eigenvectors of the three largest eigenvalues of a PSD matrix, largest first.

    Rayleigh-Ritz on a block Krylov space (``blocks`` x 3 wide, started from the three
    highest-variance axes): matches a full eigh to better than 0.998 in cosine even on the flat
    spectra of an untrained model, and stays in small single-threaded numpy calls; LAPACK's
    full eigh wakes a thread pool, which on a busy 2-core host cost 3 to 4 times as much.
    """
    s = sym.astype(np.float64)
    d = s.shape[0]
    if d <= 3 * blocks:
        return np.linalg.eigh(s)[1][:, ::-1][:, :3]
    krylov = [s[:, np.argsort(-np.diag(s), kind="stable")[:3]]]
    for _ in range(blocks - 1):
        krylov.append(s @ np.linalg.qr(krylov[-1])[0])
    q = np.linalg.qr(np.concatenate(krylov, axis=1))[0]
    vecs = np.linalg.eigh(q.T @ s @ q)[1]
    return q @ vecs[:, ::-1][:, :3]


def _to_byte(rows: np.ndarray) -> np.ndarray:
    """Each row of a 2-D array scaled from its own min..max to 0..255 uint8."""
    lo, hi = rows.min(1, keepdims=True), rows.max(1, keepdims=True)
    scale = 255.0 / np.maximum(hi - lo, 1e-8)
    return ((rows - lo) * scale + 0.5).astype(np.uint8)


def colorize_channels(fmap: torch.Tensor, channels: list[int]) -> np.ndarray:
    """The listed channels of a C x H x W map, each scaled to its own range: k x H x W x 3 uint8."""
    x = fmap.detach().float().cpu().numpy()[channels]
    k, h, w = x.shape
    return np.take(RAMP, _to_byte(x.reshape(k, h * w)), axis=0).reshape(k, h, w, 3)  # take: 4x fancy indexing


def level_stats(fmap: torch.Tensor) -> tuple[float, float, float]:
    """(mean, std, share <= 0) of a C x H x W map, as ``msgen.features.level_stats`` defines them,
    in numpy: a live slider cannot afford waking torch's thread pool for four reductions."""
    x = fmap.detach().float().cpu().numpy()
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0, float((x <= 1e-6).mean())


def top_channels(fmap: torch.Tensor, k: int) -> list[int]:
    """Indices of the ``k`` channels with the largest mean absolute activation, strongest first."""
    energy = np.abs(fmap.detach().float().cpu().numpy()).mean(axis=(1, 2))
    return np.argsort(-energy, kind="stable")[:k].tolist()


def level_card(image: torch.Tensor, fmap: torch.Tensor, channels: list[int], cols: int = 3) -> np.ndarray:
    """One level at a glance, ``cols`` tiles wide: the picture at that scale (3 x h x w in
    [-1, 1]), the feature map in PCA colours, then the listed channels, each scaled to its own
    range. Tiles are the level's size, enlarged by a whole factor to at least ``MIN_TILE``.
    One picture per level keeps a live update to six pictures, each encoded once."""
    h, w = fmap.shape[-2:]
    picture = to_uint8(image)
    if picture.shape[:2] != (h, w):  # a family whose feature map is not at its image's size
        picture = np.asarray(Image.fromarray(picture).resize((w, h), Image.NEAREST))
    tiles = np.stack([picture, pca_rgb(fmap), *colorize_channels(fmap, channels)])
    factor = max(1, -(-MIN_TILE // max(h, w)))
    if factor > 1:
        tiles = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
        h, w = h * factor, w * factor
    rows = -(-len(tiles) // cols)
    out = np.full((rows * h + (rows - 1) * GAP, cols * w + (cols - 1) * GAP, 3), GAP_VALUE, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + GAP): r * (h + GAP) + h, c * (w + GAP): c * (w + GAP) + w] = t
    return out


def channel_view(fmap: torch.Tensor, channel: int, *, normalize: bool) -> Image.Image:
    """One channel of a C x H x W map through the colour ramp: its own range, or the level's."""
    f = fmap.detach().float().cpu().numpy()
    x = f[channel]
    lo, hi = (x.min(), x.max()) if normalize else (f.min(), f.max())
    idx = ((x - lo) * (255.0 / max(float(hi - lo), 1e-8)) + 0.5).clip(0, 255).astype(np.uint8)
    return Image.fromarray(np.take(RAMP, idx, axis=0))


def save_gif(frames: list[Image.Image], path: Path, *, frame_ms: int = 80, bounce: bool = True) -> Path:
    """An endlessly looping GIF; ``bounce`` plays it forward then back so the loop has no jump."""
    seq = frames + frames[-2:0:-1] if bounce and len(frames) > 2 else frames
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    seq[0].save(tmp, format="gif", save_all=True, append_images=seq[1:], duration=frame_ms, loop=0, optimize=False)
    os.replace(tmp, path)  # another request for the same walk never sees half a file
    return path
