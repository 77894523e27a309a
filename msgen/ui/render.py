"""Tensors -> pictures for the Generate tab: the only place msgen turns model outputs into PIL.

Everything here is sized for a live slider: a 64x64 model's image, five-level strip and every
level's feature maps render in about a millisecond. Pictures stay at their native size and the
page enlarges them with CSS ``image-rendering: pixelated`` (nearest neighbour, free in the
browser); Python enlarges with PIL NEAREST only where a file leaves the page (GIF, seed grid).

The PCA-to-RGB view projects a level's C channels onto the top three eigenvectors of their
covariance (exact and deterministic, signs fixed; through the smaller of the C x C covariance
and the pixel Gram matrix), the cheap form of what ``msgen.features.pca_rgb`` does with a
randomised low-rank solver.
"""

from __future__ import annotations

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
GAP = 1  # pixels between tiles of a channel grid, in the page's background grey
GAP_VALUE = 128


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W (or 3 x H x W) in [-1, 1] -> N x H x W x 3 (or H x W x 3) uint8."""
    x = images.detach().float()
    x = ((x + 1) * 127.5).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def to_pil(image: torch.Tensor) -> Image.Image:
    """One 3 x H x W image in [-1, 1] -> PIL RGB at its native size."""
    return Image.fromarray(to_uint8(image))


def enlarge(img: Image.Image, min_size: int = 256) -> Image.Image:
    """Nearest-neighbour enlargement by a whole factor so small images stay crisp."""
    factor = max(1, -(-min_size // max(img.size)))
    return img if factor == 1 else img.resize((img.width * factor, img.height * factor), Image.NEAREST)


def pca_rgb(fmap: torch.Tensor) -> np.ndarray:
    """C x H x W -> H x W x 3 uint8: the three main directions of channel space as colours."""
    c, h, w = fmap.shape
    x = fmap.reshape(c, h * w).float()
    x = x - x.mean(1, keepdim=True)
    if min(c, h * w) < 3:
        proj = x[:1].expand(3, -1)
    elif c <= h * w:  # eigenvectors of the C x C covariance, then project the pixels
        vecs = torch.linalg.eigh(x @ x.T)[1][:, -3:]
        proj = vecs.T @ x
    else:  # coarse levels have fewer pixels than channels: the pixel Gram matrix is smaller
        proj = torch.linalg.eigh(x.T @ x)[1][:, -3:].T  # same axes; scale is normalised away
    proj = proj.flip(0)  # strongest component -> red
    # An eigenvector's sign is arbitrary; fixing it makes the colours a function of the map.
    signs = proj.gather(1, proj.abs().argmax(1, keepdim=True)).sign()
    proj = proj * torch.where(signs == 0, 1.0, signs)
    lo, hi = proj.amin(1, keepdim=True), proj.amax(1, keepdim=True)
    proj = (proj - lo) / (hi - lo).clamp_min(1e-12)
    return (proj * 255 + 0.5).to(torch.uint8).T.reshape(h, w, 3).numpy()


def normalize_channels(fmap: torch.Tensor) -> torch.Tensor:
    """Each channel of a C x H x W map scaled to its own [0, 1] range."""
    flat = fmap.float().flatten(1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp_min(1e-8)).reshape(fmap.shape)


def colorize(x: torch.Tensor) -> np.ndarray:
    """H x W (or ... x H x W) in [0, 1] -> ... x H x W x 3 uint8 through the colour ramp."""
    idx = (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    return RAMP[idx]


def top_channels(fmap: torch.Tensor, k: int) -> list[int]:
    """Indices of the ``k`` channels with the largest mean absolute activation, strongest first."""
    energy = fmap.float().abs().mean(dim=(1, 2))
    return energy.topk(min(k, energy.numel())).indices.tolist()


def level_card(image: torch.Tensor, fmap: torch.Tensor, channels: list[int], cols: int = 3) -> np.ndarray:
    """One level at a glance, tiles of the level's size ``cols`` wide: the picture at that scale
    (3 x h x w in [-1, 1]), the feature map in PCA colours, then the listed channels, each
    scaled to its own range. One picture per level keeps a response to a few files: every file
    costs a Gradio server a millisecond or two, more than rendering it."""
    h, w = fmap.shape[-2:]
    picture = to_uint8(image)
    if picture.shape[:2] != (h, w):  # a family whose feature map is not at its image's size
        picture = np.asarray(Image.fromarray(picture).resize((w, h), Image.NEAREST))
    tiles = [picture, pca_rgb(fmap)] + list(colorize(normalize_channels(fmap[channels])))
    rows = -(-len(tiles) // cols)
    out = np.full((rows * h + (rows - 1) * GAP, cols * w + (cols - 1) * GAP, 3), GAP_VALUE, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + GAP): r * (h + GAP) + h, c * (w + GAP): c * (w + GAP) + w] = t
    return out


def channel_view(fmap: torch.Tensor, channel: int, *, normalize: bool) -> Image.Image:
    """One channel of a C x H x W map through the colour ramp: its own range, or the level's."""
    x = fmap[channel].float()
    lo, hi = (x.min(), x.max()) if normalize else (fmap.min(), fmap.max())
    return Image.fromarray(colorize((x - lo) / (hi - lo).clamp_min(1e-8)))


def save_gif(frames: list[Image.Image], path: Path, *, frame_ms: int = 80, bounce: bool = True) -> Path:
    """An endlessly looping GIF; ``bounce`` plays it forward then back so the loop has no jump."""
    seq = frames + frames[-2:0:-1] if bounce and len(frames) > 2 else frames
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.gif")
    seq[0].save(tmp, save_all=True, append_images=seq[1:], duration=frame_ms, loop=0, optimize=False)
    tmp.replace(path)  # another request for the same walk never sees half a file
    return path
