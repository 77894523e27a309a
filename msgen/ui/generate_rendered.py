"""One generate call made ready for the page: the pictures as data URIs, the statistics, the raw maps.

``render_generation`` is ``msgen.render.level_views`` (what the CLI writes) plus the encoding of
every picture; the Generate tab's handlers keep its ``Rendered`` results in their LRU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import msgen
from .. import render

STATS_HEADERS = ["level", "channels", "size", "mean", "std", "share <= 0"]


@dataclass
class Rendered:
    """One generate call, ready for the page: pictures as data URIs at native size, stats, raw maps."""

    image: str  # the picture at the requested scale, a WebP data URI
    levels: list[dict]  # one card per level, coarse to fine: level, channels, caption, image (data URI)
    stats: list[list]  # one row per level, as STATS_HEADERS
    features: dict[int, torch.Tensor]  # level -> C x H x W float32 on the CPU, for the channel picker
    top_channels: dict[int, list[int]]
    ms: float  # time to compute it, shown on the page

    @property
    def table(self) -> dict:
        """The statistics as the page's table (and the API) carries them: headers and rows."""
        return {"headers": STATS_HEADERS, "data": self.stats}

    @property
    def nbytes(self) -> int:
        pictures = len(self.image) + sum(len(card["image"]) for card in self.levels)
        return pictures + sum(f.numel() * f.element_size() for f in self.features.values())


def caption(view: render.LevelView) -> str:
    """A card's caption; a card with a family's own tiles names them in order."""
    text = f"{view.level}x{view.level}: {view.channels} channels"
    if view.extra:
        text += f" · tiles: picture, PCA, {', '.join(view.extra)}, top {view.shown} channels"
    return text


def render_generation(out: msgen.Generation) -> Rendered:
    """The page's pictures of one generation: ``msgen.render.level_views``, as the CLI writes them."""
    fmaps = {lvl: f[0] for lvl, f in sorted((out.features or {}).items())}
    with render.one_blas_thread():
        views = render.level_views(out.images, out.features or {}, pictures=out.pictures)
        cards = [{"level": v.level, "channels": v.channels, "caption": caption(v), "image": render.data_uri(v.card)}
                 for v in views]
        image = render.data_uri(render.to_uint8(out.images[out.scale][0]))
    stats = []
    for v in views:
        h, w = fmaps[v.level].shape[-2:]
        stats.append([v.level, v.channels, f"{h}x{w}", round(v.stats.mean, 4), round(v.stats.std, 4),
                      round(v.stats.zero_share, 4)])
    tops = {v.level: v.top for v in views}
    return Rendered(image=image, levels=cards, stats=stats, features=fmaps, top_channels=tops, ms=0.0)
