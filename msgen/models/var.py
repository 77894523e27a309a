"""Next-scale autoregressive family ("var"): a multi-scale residual VQ tokenizer and a transformer
that predicts each scale's whole token map from the coarser ones. (~700 lines: one family, its
tokenizer, predictor, Decompose API and two-stage recipe belong together, as hvae.py's do.)

Follows Tian et al., "Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale
Prediction" (NeurIPS 2024; FoundationVision/VAR ``models/quant.py`` and ``models/var.py``) at the
size of nreHieW/minVAR, small enough for a 2-core CPU:

* **Tokenizer.** A conv encoder maps the r x r image to a ``code_dim`` x G x G latent
  (G = r / ``downsample``). One shared codebook quantises it as K token maps of sides
  ``scales`` (e.g. 1, 2, 3, 4, 6, 8; the last is G): scale k area-pools the residual the coarser
  scales left to s_k x s_k, takes the nearest code per position, upsamples the codes back to G
  (bicubic) and passes them through the scale's refinement conv phi_k
  (``(1 - a) h + a conv(h)``); the result is added to the running sum f_hat and subtracted from
  the residual. The decoder turns f_hat into the picture.
* **Predictor.** A pre-LN transformer over all scales' positions at once (1 + 4 + ... + G^2
  tokens) with block-causal attention: a position of scale k sees every position of scales <= k.
  Scale 0's input is a learned start token (the unconditional "class" token); scale k's inputs are
  the running sum after scale k - 1, area-pooled to s_k x s_k. Learned position and per-scale
  ("level") embeddings are added.

The shared interface, in this family's terms:

* ``levels`` are read from the config: level k = s_k * downsample pixels. Level k's picture is
  the decoder's image of f_hat after scales 0..k, area-pooled to that size, so a level shows what
  the scales up to it know, at a granularity proportional to its token map.
* ``sample_latents(n, seed)`` is N x L uniform noise, one number per token position, drawn on the
  CPU. A token is drawn by inverse-CDF sampling over the codes sorted by probability (u near 0
  takes the most likely code), so the noise fixes every draw: a seed is one picture on any device.
* ``truncation`` is the sampling temperature T (0: each position's most likely code).
* ``mix=(latents_b, level)`` draws the scales below ``level`` from A's noise and the rest from B's,
  so A's coarse token maps are kept and the finer ones are sampled afresh in their context.
* ``granularity_modules()`` are per-scale ``ScaleMap`` modules: the predictor's final states of
  that scale's positions as a width x s x s map (what that scale's tokens are drawn from).
* ``extras``: ``tokens`` (level -> N x s x s code indices) and ``residuals`` (level -> the
  N x code_dim x G x G term phi_k added to f_hat).

``encode(x)`` tokenises a picture and returns its latents in the same currency: each position's
u is the middle of its token's interval of the sorted CDF at T = 1, so ``forward(encode(x).latents)``
reproduces x's token maps; ``kl`` holds each token's -log p (nats) under the predictor, what that
scale spends on the picture. ``reconstruct`` and ``resample`` follow hvae's semantics, so the
Decompose tab takes either family.

Training (``VARRecipe``) runs two stages through the one Trainer: the tokenizer (reconstruction
MSE + VQ/commitment losses at every scale, plus the picture of one random coarser scale against
the area-pooled image, so every level is a faithful picture) for the first ``tokenizer_share`` of
the run, then the predictor (cross-entropy on teacher-forced token maps) with the tokenizer frozen.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import (Family, FineTune, MultiScaleOutput, UIHints, bounded, check_fields, check_generate_args, check_options,
               check_seed, seed_at)
from . import Serving, option, register
from ..distributed import rows
from .layers import ResBlock

MAX_TOKENS = 4096  # positions over all scales: the attention mask is L x L


@dataclass(frozen=True)
class VARConfig:
    # Bounds (lo, hi) sit beside each field: a config.json from a stranger is checked against them
    # before anything is built.
    family: str = "var"
    resolution: int = bounded(32, 8, 256)  # finest level; a power of two
    downsample: int = bounded(4, 1, 32)  # encoder stride (power of two): the latent grid is resolution / downsample
    scales: str = "1,2,3,4,6,8"  # token-map sides, coarsest first, strictly increasing; the last is the latent grid
    vocab_size: int = bounded(128, 2, 16384)  # one codebook shared by every scale; small vocabularies learn fast
    code_dim: int = bounded(32, 1, 512)  # channels of a code (VAR's Cvae)
    channel_max: int = bounded(64, 4, 2048)  # tokenizer width at the latent grid (its widest), halved per finer octave
    phi_ratio: float = bounded(0.5, 0.0, 1.0)  # share of phi_k's conv in the refined residual (VAR's quant_resi)
    width: int = bounded(128, 8, 4096)  # transformer width
    depth: int = bounded(4, 1, 64)  # transformer blocks
    heads: int = bounded(4, 1, 64)  # attention heads; must divide width
    mlp_ratio: int = bounded(4, 1, 16)  # MLP hidden width / width
    # Scales of this side or smaller are drawn a token at a time (raster order), each token given
    # the ones before it in its scale; the others all at once given the coarser scales (VAR). Drawn
    # at once, a coarse scale's tokens are independent: on a few-shot set the 2x2 tokens of two
    # different pictures combine into a picture that is neither (README, "What limits it").
    ar_side: int = bounded(0, 0, 8)  # at most 8: a stranger's config cannot make a picture hundreds of passes

    def __post_init__(self) -> None:
        check_fields(self)
        r, ds = self.resolution, self.downsample
        if r & (r - 1) or ds & (ds - 1) or 2 * ds > r:
            raise ValueError(f"resolution and downsample must be powers of two with downsample <= resolution / 2, "
                             f"got {r} and {ds}")
        if len(self.scales) > 64 or not re.fullmatch(r"\d{1,3}(,\d{1,3}){0,15}", self.scales):
            raise ValueError("scales must be up to 16 comma-separated whole numbers, e.g. '1,2,3,4,6,8'")
        sides = self.sides
        grid = r // ds
        if sides[0] < 1 or any(a >= b for a, b in zip(sides, sides[1:])) or sides[-1] != grid:
            raise ValueError(f"scales must be strictly increasing from 1 or more and end at the latent grid {grid} "
                             f"(resolution / downsample), got {self.scales}")
        if sum(s * s for s in sides) > MAX_TOKENS:
            raise ValueError(f"scales {self.scales} make more than {MAX_TOKENS} token positions")
        if self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")

    @property
    def sides(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.scales.split(","))

    @property
    def grid(self) -> int:
        return self.resolution // self.downsample

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(s * self.downsample for s in self.sides)


# --- tokenizer ------------------------------------------------------------------------------------
def _widths(config: VARConfig) -> list[int]:
    """Channels from the finest octave (the image) to the latent grid: cheap where pixels are many."""
    octaves = int(math.log2(config.downsample))
    return [max(16, config.channel_max >> (octaves - i)) for i in range(octaves + 1)]


class Encoder(nn.Module):
    def __init__(self, config: VARConfig):
        super().__init__()
        w = _widths(config)
        layers: list[nn.Module] = [nn.Conv2d(3, w[0], 3, padding=1)]
        for a, b in zip(w, w[1:]):
            layers += [ResBlock(a), nn.Conv2d(a, b, 4, stride=2, padding=1)]
        layers += [ResBlock(w[-1]), ResBlock(w[-1]), nn.SiLU(), nn.Conv2d(w[-1], config.code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, config: VARConfig):
        super().__init__()
        w = _widths(config)[::-1]
        layers: list[nn.Module] = [nn.Conv2d(config.code_dim, w[0], 3, padding=1), ResBlock(w[0]), ResBlock(w[0])]
        for a, b in zip(w, w[1:]):
            layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(a, b, 3, padding=1), ResBlock(b)]
        layers += [nn.SiLU(), nn.Conv2d(w[-1], 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        # in its own weights' dtype: the pages may serve the decoder alone in bfloat16 (Serving)
        return torch.tanh(self.net(f.to(self.net[0].weight.dtype)))


class Phi(nn.Conv2d):
    """VAR's per-scale refinement of an upsampled code map: (1 - a) h + a conv3x3(h)."""

    def __init__(self, dim: int, ratio: float):
        super().__init__(dim, dim, 3, padding=1)
        self.ratio = ratio

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1 - self.ratio) + super().forward(h) * self.ratio


@dataclass
class Quantised:
    """The multi-scale residual quantisation of a batch of latents."""

    tokens: list[torch.Tensor]  # per scale: N x s x s code indices
    residuals: list[torch.Tensor]  # per scale: N x C x G x G, what phi_k added to f_hat
    f_hats: list[torch.Tensor]  # per scale: the running sum after it (the last is the quantised latent)
    loss: torch.Tensor | None = None  # VQ + commitment, averaged over scales (training only)


class MultiScaleQuantizer(nn.Module):
    """One codebook shared by every scale; a phi per scale; a usage EMA for dead-code restarts."""

    def __init__(self, config: VARConfig):
        super().__init__()
        self.sides, self.grid = config.sides, config.grid
        self.codebook = nn.Embedding(config.vocab_size, config.code_dim)
        self.phi = nn.ModuleList(Phi(config.code_dim, config.phi_ratio) for _ in self.sides)
        # Share of the lookups each code took (EMA): codes under a small share are restarted in training.
        self.register_buffer("usage", torch.full((config.vocab_size,), 1.0 / config.vocab_size))

    def nearest(self, rest: torch.Tensor) -> torch.Tensor:
        """N x C x s x s -> N x s x s indices of the nearest codes (Euclidean, as VAR)."""
        n, c, h, w = rest.shape
        flat = rest.permute(0, 2, 3, 1).reshape(-1, c).float()
        book = self.codebook.weight.float()
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.T + book.pow(2).sum(1)
        return dist.argmin(1).view(n, h, w)

    def embed(self, k: int, tokens: torch.Tensor) -> torch.Tensor:
        """Scale k's token map -> the refined residual it adds to f_hat (N x C x G x G)."""
        h = self.codebook(tokens).permute(0, 3, 1, 2)
        if self.sides[k] != self.grid:
            h = F.interpolate(h, size=(self.grid, self.grid), mode="bicubic", align_corners=False)
        return self.phi[k](h.contiguous())

    def forward(self, f: torch.Tensor, beta: float | None = None) -> Quantised:
        """Quantise ``f`` scale by scale; with ``beta`` also the VQ loss (codebook + beta * commitment)."""
        rest = f.detach()
        f_hat = torch.zeros_like(rest)
        tokens, residuals, f_hats = [], [], []
        loss = f.new_zeros(()) if beta is not None else None
        hits = torch.zeros_like(self.usage)
        for k, s in enumerate(self.sides):
            idx = self.nearest(F.adaptive_avg_pool2d(rest, s) if s != self.grid else rest)
            h = self.embed(k, idx)
            f_hat = f_hat + h
            rest = rest - h.detach()
            tokens.append(idx)
            residuals.append(h)
            f_hats.append(f_hat)
            if beta is not None:
                loss = loss + F.mse_loss(f_hat, f.detach()) + beta * F.mse_loss(f_hat.detach(), f)
                hits += torch.bincount(idx.flatten(), minlength=hits.numel()).to(hits)
        if beta is not None:
            loss = loss / len(self.sides)
            self.usage.mul_(0.99).add_(hits / hits.sum().clamp_min(1), alpha=0.01)
        return Quantised(tokens=tokens, residuals=residuals, f_hats=f_hats, loss=loss)

    @torch.no_grad()
    def restart_dead(self, gen: torch.Generator, share: float = 0.03) -> int:
        """Codes used less than ``share`` of a uniform share take a busy code's place plus noise (that
        code's cluster is split), drawn from ``gen``: no data, so every process does the same."""
        vocab = self.usage.numel()
        dead = (self.usage < share / vocab).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        weights = self.usage.detach().cpu().double() + 1e-12
        src = torch.multinomial(weights, dead.numel(), replacement=True, generator=gen).to(dead.device)
        book = self.codebook.weight
        scale = 0.05 * book.detach().std().clamp_min(1e-4)
        noise = torch.randn(dead.numel(), book.shape[1], generator=gen).to(book) * scale
        book[dead] = book[src] + noise
        self.usage[src] /= 2
        self.usage[dead] = self.usage[src]
        return int(dead.numel())


class Tokenizer(nn.Module):
    def __init__(self, config: VARConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quant = MultiScaleQuantizer(config)
        self.decoder = Decoder(config)

    def tokenize(self, x: torch.Tensor) -> Quantised:
        return self.quant(self.encoder(x))

    def pictures(self, f_hats: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        """Running sums (coarse to fine) -> level -> the decoded image, area-pooled to the level's size."""
        cfg = self.config
        n = f_hats[0].shape[0]
        decoded = self.decoder(torch.cat(f_hats)).to(f_hats[0].dtype).split(n)
        levels = cfg.levels[: len(f_hats)]
        return {lvl: img if lvl == cfg.resolution else F.adaptive_avg_pool2d(img, lvl) for lvl, img in zip(levels, decoded)}


# --- predictor ------------------------------------------------------------------------------------
class Block(nn.Module):
    """Pre-LN transformer block (attention with a given mask, then a GELU MLP)."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, depth: int):
        super().__init__()
        self.heads = heads
        # Residual dropout while training (VAROptions.dropout; not a weight), its masks drawn from
        # ``dropout_gen``, which the recipe seeds from the run's checkpointed step generator.
        self.dropout = 0.0
        self.dropout_gen: torch.Generator | None = None
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, mlp_ratio * width), nn.Linear(mlp_ratio * width, width)
        for lin in (self.qkv, self.proj, self.fc1, self.fc2):
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)
        for lin in (self.proj, self.fc2):  # GPT-2: residual branches scaled down with depth
            lin.weight.data.mul_((2 * depth) ** -0.5)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: list | None = None) -> torch.Tensor:
        """``cache`` (sampling): this block's keys and values of the earlier positions, ``[]`` at
        first; the new positions attend to them too, and their own are appended."""
        n, length, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[:] = [k, v]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self._drop(self.proj(a.transpose(1, 2).reshape(n, length, d)))
        return x + self._drop(self.fc2(F.gelu(self.fc1(self.ln2(x)))))

    def _drop(self, h: torch.Tensor) -> torch.Tensor:
        p = self.dropout
        if not self.training or p <= 0:
            return h
        keep = torch.rand(h.shape, generator=self.dropout_gen, device=h.device) >= p
        return h * keep.to(h.dtype) / (1 - p)


class ScaleMap(nn.Module):
    """One scale's final states (N x s*s x width) as its feature map (N x width x s x s); features.py hooks it."""

    def __init__(self, side: int):
        super().__init__()
        self.side = side

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.transpose(1, 2).reshape(h.shape[0], h.shape[2], self.side, self.side)


class Predictor(nn.Module):
    def __init__(self, config: VARConfig):
        super().__init__()
        sides, d = config.sides, config.width
        self.sides = sides
        self.bounds = []
        start = 0
        for s in sides:
            self.bounds.append((start, start + s * s))
            start += s * s
        self.length = start
        self.start = nn.Parameter(torch.randn(1, 1, d) * 0.02)  # the unconditional "class" token
        self.pos = nn.Parameter(torch.randn(1, self.length, d) * 0.02)
        self.scale_embed = nn.Embedding(len(sides), d)
        nn.init.normal_(self.scale_embed.weight, std=0.02)
        self.word_embed = nn.Linear(config.code_dim, d)
        self.blocks = nn.ModuleList(Block(d, config.heads, config.mlp_ratio, config.depth) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d)
        self.maps = nn.ModuleList(ScaleMap(s) for s in sides)
        self.head = nn.Linear(d, config.vocab_size)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        scale_of = torch.cat([torch.full((s * s,), k, dtype=torch.long) for k, s in enumerate(sides)])
        self.register_buffer("scale_of", scale_of, persistent=False)
        # Token-at-a-time scales: a position also reads the code of the token before it in its scale
        # (zero-initialised: a model given this later starts close to what it was, the only change
        # being the mask), and sees only the positions of its scale up to itself.
        self.ar = [1 < s <= config.ar_side for s in sides]  # per scale (a 1x1 scale is one token anyway)
        if any(self.ar):
            self.prev_embed = nn.Linear(config.code_dim, d, bias=False)
            nn.init.zeros_(self.prev_embed.weight)
        self.register_buffer("ar_pos", torch.tensor(self.ar, dtype=torch.bool)[scale_of], persistent=False)

    def mask(self, start: int, end: int) -> torch.Tensor | None:
        """Which of positions 0..``end`` each of ``start``..``end`` attends to: every coarser scale,
        its own scale (token-at-a-time scales: up to itself); None when that is all of them."""
        if end - start == 1:
            return None
        rows, cols = self.scale_of[start:end, None], self.scale_of[None, :end]
        order = torch.arange(end, device=rows.device)
        causal = (order[start:end, None] >= order[None, :end]) | ~self.ar_pos[start:end, None]
        return (rows > cols) | ((rows == cols) & causal)

    def _embed(self, x: torch.Tensor, start: int, end: int, prev: torch.Tensor | None) -> torch.Tensor:
        scale_of = self.scale_of[start:end]
        x = x + self.pos[:, start:end] + self.scale_embed(scale_of)
        if prev is not None and any(self.ar):
            x = x + self.prev_embed(prev[:, start:end].to(x.dtype))
        return x

    def states(self, n: int, inputs: torch.Tensor | None, prev: torch.Tensor | None = None) -> torch.Tensor:
        """Start token + the next-scale inputs (N x P-1 x code_dim) -> final states N x P x width.
        ``prev`` (token-at-a-time scales): N x P x code_dim, each position's previous token's code
        in its scale (``previous_codes``)."""
        x = self.start.expand(n, -1, -1)
        if inputs is not None:
            x = torch.cat([x, self.word_embed(inputs.to(x.dtype))], dim=1)
        length = x.shape[1]
        x = self._embed(x, 0, length, prev)
        mask = self.mask(0, length)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)

    def extend(self, n: int, inputs: torch.Tensor | None, cache: list[list], start: int, end: int,
               prev: torch.Tensor | None = None) -> torch.Tensor:
        """Sampling with a key/value cache (VAR's): the final states of positions ``start`` to
        ``end`` (whole scales, or one position of a token-at-a-time scale), given ``cache`` (one list
        per block) holding positions before ``start``, which it extends; ``inputs`` and ``prev`` as
        for ``states`` (at least ``end - 1`` and ``end`` long). Position by position the same as
        ``states`` (up to float rounding), with each position computed once."""
        if start == 0:
            x = self.start.expand(n, -1, -1)
            if end > 1:
                x = torch.cat([x, self.word_embed(inputs[:, : end - 1].to(x.dtype))], dim=1)
        else:
            x = self.word_embed(inputs[:, start - 1 : end - 1].to(self.start.dtype))
        x = self._embed(x, start, end, prev)
        # One scale drawn at once sees every earlier position: no mask.
        one_scale = self.scale_of[start] == self.scale_of[end - 1] and not self.ar_pos[start]
        mask = None if one_scale else self.mask(start, end)
        for block, kv in zip(self.blocks, cache):
            x = block(x, mask, kv)
        return self.norm(x)


def previous_codes(quant: "MultiScaleQuantizer", tokens: list[torch.Tensor], ar: list[bool],
                   length: int) -> torch.Tensor | None:
    """Teacher forcing of the token-at-a-time scales: N x length x code_dim, at each of their
    positions the code of the token before it in raster order (zero at a scale's first, and at
    every position of the other scales); None without such scales."""
    if not any(ar):
        return None
    n = tokens[0].shape[0]
    book = quant.codebook.weight.detach()  # the predictor's input: no gradient into the frozen tokenizer
    parts = []
    for k, t in enumerate(tokens):
        codes = torch.zeros(n, t[0].numel(), book.shape[1], device=book.device, dtype=book.dtype)
        if ar[k]:
            codes[:, 1:] = book[t.flatten(1)[:, :-1]]
        parts.append(codes)
    return torch.cat(parts, dim=1)[:, :length]


def next_inputs(quant: MultiScaleQuantizer, f_hats: list[torch.Tensor]) -> torch.Tensor | None:
    """Teacher-forcing inputs: the running sum after scale k - 1, area-pooled to s_k, for k >= 1."""
    parts = [F.adaptive_avg_pool2d(f_hats[k - 1], s).flatten(2).transpose(1, 2) for k, s in enumerate(quant.sides) if k]
    return torch.cat(parts, dim=1) if parts else None


def probability_order(probs: torch.Tensor) -> torch.Tensor:
    """The codes of each row of ``probs`` (non-negative float32, ... x K) from the most probable to
    the least, equal probabilities by index: the permutation of a stable descending sort.

    On the CPU through numpy's sort of one unique int64 key per code (a probability's float32 bits
    order as an integer; the index breaks ties), about 4x quicker than torch's stable sort here (64
    rows of 512 codes: 0.3 against 1.3 ms) and the same permutation, since unique keys leave any
    sort no choice. Elsewhere torch's stable sort."""
    if probs.device.type != "cpu" or probs.dtype != torch.float32:
        return probs.sort(dim=-1, descending=True, stable=True).indices
    k = probs.shape[-1]
    bits = probs.detach().contiguous().numpy().view(np.int32).astype(np.int64)
    key = np.arange(k, dtype=np.int64) - bits * k  # ascending key: higher probability first, then lower index
    return torch.from_numpy(np.argsort(key, axis=-1, kind="quicksort"))


def inverse_cdf(logits: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
    """Draw a code per position: the first code, in order of probability, whose CDF passes ``u``."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    order = probability_order(probs)
    rank = torch.searchsorted(probs.gather(-1, order).cumsum(-1), u.float().unsqueeze(-1).contiguous(), right=True)
    return order.gather(-1, rank.clamp_max(probs.shape[-1] - 1)).squeeze(-1)


def midpoint_noise(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``u`` that ``inverse_cdf`` at T = 1 maps to ``tokens`` (the middle of its interval), and -log p."""
    probs = torch.softmax(logits.float(), dim=-1)
    order = probability_order(probs)
    # each code's rank: the inverse permutation of ``order`` (a scatter, not a second sort)
    ranks = torch.empty_like(order).scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))
    rank = ranks.gather(-1, tokens.unsqueeze(-1))
    cdf = probs.gather(-1, order).cumsum(-1).gather(-1, rank)
    p = probs.gather(-1, tokens.unsqueeze(-1))
    return (cdf - p / 2).squeeze(-1).clamp(0, 1 - 1e-7), -torch.log(p.clamp_min(1e-30)).squeeze(-1)


# --- the generator: tokenizer + predictor behind the shared interface ------------------------------
@dataclass
class VAREncoding:
    """What ``VARGenerator.encode`` returns for N images (the fields Decompose reads, as hvae's)."""

    latents: torch.Tensor  # N x L noise: forward(latents) at truncation 1 reproduces the token maps
    images: dict[int, torch.Tensor]  # level -> N x 3 x l x l reconstruction from the scales up to it
    mu: dict[int, torch.Tensor]  # level -> N x code_dim x s x s: the codes of that scale's token map
    kl: dict[int, torch.Tensor]  # level -> N x s x s: -log p of each token under the predictor (nats)
    tokens: dict[int, torch.Tensor]  # level -> N x s x s code indices
    global_mu: torch.Tensor | None = None  # no global latent in this family

    def kl_nats(self) -> dict[int, torch.Tensor]:
        """Level -> N: nats the predictor needs to name that scale's tokens of each image."""
        return {lvl: m.flatten(1).sum(1) for lvl, m in self.kl.items()}


class VARGenerator(nn.Module):
    """Tokenizer + next-scale predictor, exported as the model's "generator"."""

    def __init__(self, config: VARConfig):
        super().__init__()
        self.config = config
        self.levels = config.levels
        self.tokenizer = Tokenizer(config)
        self.predictor = Predictor(config)
        self.latent_dim = self.predictor.length

    # --- the shared interface -------------------------------------------------------------
    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        gen = torch.Generator(device="cpu").manual_seed(check_seed(seed))
        return torch.rand((n, self.latent_dim), generator=gen)

    def granularity_modules(self) -> dict[int, nn.Module]:
        return dict(zip(self.levels, self.predictor.maps))

    @torch.no_grad()
    def level_pictures(self, out: MultiScaleOutput) -> dict[int, dict[str, torch.Tensor]]:
        """Each scale's ``token map`` (every token's code in the codebook's three main directions
        as colours, one palette for the whole model) and the ``residual`` phi_k it added to f_hat
        (the same directions, scaled to its own largest value): N x 3 x h x w in [-1, 1]."""
        tokens, residuals = out.extras.get("tokens") or {}, out.extras.get("residuals") or {}
        if not tokens:
            return {}
        axes, palette = self._palette()
        pictures = {}
        for lvl, idx in tokens.items():
            pic = {"token map": palette[idx.long().cpu()].permute(0, 3, 1, 2).contiguous()}
            if lvl in residuals:
                r = torch.einsum("ndhw,cd->nchw", residuals[lvl].detach().float().cpu(), axes)
                pic["residual"] = (r / r.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)).clamp(-1, 1)
            pictures[lvl] = pic
        return pictures

    def _palette(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The codebook's three main directions (3 x code_dim, fixed signs) and every code's colour
        in them (K x 3 in [-1, 1]); kept until the codebook changes (computed once per model)."""
        weight = self.tokenizer.quant.codebook.weight
        # An inference tensor (a model loaded under torch.inference_mode) has no version counter, and
        # nothing can change it in place either.
        key = (weight.data_ptr(), None if weight.is_inference() else weight._version, weight.device, weight.dtype)
        if getattr(self, "_palette_cache", (None,))[0] == key:
            return self._palette_cache[1]
        book = weight.detach().float().cpu()
        centred = book - book.mean(0)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        axes = vh[:3]
        axes = axes * torch.where(axes.gather(1, axes.abs().argmax(1, keepdim=True)) < 0, -1.0, 1.0)  # fixed signs
        if axes.shape[0] < 3:  # a codebook of fewer than three dimensions: the missing colours stay mid-grey
            axes = torch.cat([axes, torch.zeros(3 - axes.shape[0], axes.shape[1])])
        coords = centred @ axes.T  # K x 3
        lo, hi = coords.min(0).values, coords.max(0).values
        palette = (2 * (coords - lo) / (hi - lo).clamp_min(1e-8) - 1).clamp(-1, 1)
        self._palette_cache = (key, (axes, palette))
        return axes, palette

    def forward(
        self,
        latents: torch.Tensor,
        *,
        upto: int | None = None,
        truncation: float = 1.0,
        mix: tuple[torch.Tensor, int] | None = None,
    ) -> MultiScaleOutput:
        upto = check_generate_args(self, upto, truncation, mix)
        u = self._noise(latents)
        if mix is not None:
            u = torch.where(self._position_levels(u.device) >= mix[1], self._noise(mix[0]), u)
        return self._sample(u, [float(truncation)] * len(self.levels), upto)

    # --- sampling -------------------------------------------------------------------------
    def _noise(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"latents must be N x {self.latent_dim} for this model, got {tuple(latents.shape)}")
        device = next(self.parameters()).device
        # Clamped: an interpolated latent (the Generate tab's walk) may leave [0, 1).
        return latents.to(device).float().clamp(0.0, 1.0 - 1e-7)

    def _position_levels(self, device: torch.device) -> torch.Tensor:
        return torch.tensor(self.levels, device=device)[self.predictor.scale_of.to(device)]

    def _sample(self, u: torch.Tensor, temps: list[float], upto: int,
                forced: list[torch.Tensor | None] | None = None) -> MultiScaleOutput:
        """Scale by scale up to ``upto``: predict the token map (or take ``forced[k]``), add its residual."""
        quant, pred = self.tokenizer.quant, self.predictor
        p = next(self.parameters())
        n, sides, grid = u.shape[0], self.config.sides, self.config.grid
        last = self.levels.index(upto)
        f_hat = torch.zeros(n, self.config.code_dim, grid, grid, device=p.device, dtype=p.dtype)
        inputs: list[torch.Tensor] = []
        tokens, residuals, f_hats = {}, {}, []
        cache: list[list] = [[] for _ in pred.blocks]
        done = 0  # positions whose keys and values are in the cache
        book = quant.codebook.weight.detach()
        # the token-at-a-time scales' inputs: each position's previous token's code (previous_codes)
        prev = (torch.zeros(n, pred.length, book.shape[1], device=p.device, dtype=p.dtype)
                if any(pred.ar) else None)
        for k, (s, lvl) in enumerate(zip(sides[: last + 1], self.levels)):
            idx = forced[k] if forced is not None else None
            a, b = pred.bounds[k]
            if idx is None:
                ins = torch.cat(inputs, dim=1) if inputs else None
                if pred.ar[k]:  # one position at a time, each given the ones before
                    rows, picked = [], []
                    for pos in range(a, b):
                        rows.append(pred.extend(n, ins, cache, done, pos + 1, prev)[:, -1:])
                        done = pos + 1
                        logit = pred.head(rows[-1])
                        picked.append(inverse_cdf(logit, u[:, pos : pos + 1], temps[k]))
                        if pos + 1 < b:
                            prev[:, pos + 1] = book[picked[-1][:, 0]].to(prev.dtype)
                    fmap = pred.maps[k](torch.cat(rows, dim=1))  # the feature hook sees the whole scale
                    idx = torch.cat(picked, dim=1).view(n, s, s)
                else:
                    states = pred.extend(n, ins, cache, done, b, prev)
                    done = b
                    fmap = pred.maps[k](states[:, a - b:])  # this scale's positions, the last of the chunk
                    logits = pred.head(fmap.flatten(2).transpose(1, 2))
                    idx = inverse_cdf(logits, u[:, a:b], temps[k]).view(n, s, s)
            elif pred.ar[k]:  # a forced scale, caught up later: its own codes as inputs
                prev[:, a + 1 : b] = book[idx.to(p.device).flatten(1)[:, :-1]].to(prev.dtype)
            residual = quant.embed(k, idx.to(p.device))
            f_hat = f_hat + residual
            tokens[lvl], residuals[lvl] = idx, residual
            f_hats.append(f_hat)
            if k < last:
                inputs.append(F.adaptive_avg_pool2d(f_hat, sides[k + 1]).flatten(2).transpose(1, 2))
        images = self.tokenizer.pictures(f_hats)
        return MultiScaleOutput(images=images, extras={"tokens": tokens, "residuals": residuals})

    def logits(self, quantised: Quantised) -> torch.Tensor:
        """Teacher forcing: N x L x vocab logits of every position given the true coarser scales."""
        quant, pred = self.tokenizer.quant, self.predictor
        prev = previous_codes(quant, quantised.tokens, pred.ar, pred.length)
        states = pred.states(quantised.f_hats[0].shape[0], next_inputs(quant, quantised.f_hats), prev)
        return pred.head(states)

    # --- Decompose (hvae's names and semantics) ---------------------------------------------
    def _images_in(self, x: torch.Tensor) -> torch.Tensor:
        r = self.config.resolution
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] != r or x.shape[-2] != r:
            raise ValueError(f"images must be N x 3 x {r} x {r} for this {r}px model, got {tuple(x.shape)}")
        p = next(self.parameters())
        return x.to(p.device, p.dtype)

    def encode(self, x: torch.Tensor) -> VAREncoding:
        """Tokenise ``x`` (N x 3 x r x r in [-1, 1]): token maps, reconstructions, noise and nats per scale."""
        q = self.tokenizer.tokenize(self._images_in(x))
        target = torch.cat([t.flatten(1) for t in q.tokens], dim=1)
        u, nll = midpoint_noise(self.logits(q), target)
        n = target.shape[0]
        tokens, mu, kl = {}, {}, {}
        for lvl, t, (a, b) in zip(self.levels, q.tokens, self.predictor.bounds):
            tokens[lvl] = t
            mu[lvl] = self.tokenizer.quant.codebook(t).permute(0, 3, 1, 2)
            kl[lvl] = nll[:, a:b].reshape(n, *t.shape[1:])
        return VAREncoding(latents=u, images=self.tokenizer.pictures(q.f_hats), mu=mu, kl=kl, tokens=tokens)

    def reconstruct(self, x: torch.Tensor, upto: int | None = None) -> MultiScaleOutput:
        """``x`` through the tokenizer: the picture of the scales up to each level, up to ``upto``."""
        upto = self.levels[-1] if upto is None else upto
        if upto not in self.levels:
            raise ValueError(f"scale {upto} is not one of this model's levels {list(self.levels)}")
        q = self.tokenizer.tokenize(self._images_in(x))
        keep = self.levels.index(upto) + 1
        return MultiScaleOutput(images=self.tokenizer.pictures(q.f_hats[:keep]),
                                extras={"tokens": dict(zip(self.levels[:keep], q.tokens))})

    def resample(
        self,
        x: torch.Tensor,
        *,
        keep_below: int | None = None,
        keep_from: int | None = None,
        seed: int = 0,
        temperature: float = 1.0,
        count: int = 1,
    ) -> MultiScaleOutput:
        """Variants of each image in ``x``: ``count`` per image, from seeds ``seed``, ``seed + 1``, ...

        ``keep_below=L``: the scales below level L keep ``x``'s token maps, the rest are sampled at
        ``temperature`` in their context (new detail). ``keep_from=L``: the scales >= L keep ``x``'s
        noise (its detail, re-read at T = 1 in the new context), the coarser ones are drawn afresh
        (new layout). Output images are ordered image-major (x[0]'s variants first)."""
        if (keep_below is None) == (keep_from is None):
            raise ValueError("give exactly one of keep_below (vary detail) or keep_from (vary layout)")
        split = keep_below if keep_below is not None else keep_from
        if split not in self.levels:
            raise ValueError(f"level {split} is not one of this model's levels {list(self.levels)}")
        check_generate_args(self, None, temperature, None)
        if not 1 <= count <= 256:
            raise ValueError(f"count must be between 1 and 256, got {count}")
        n = x.shape[0]
        noise = torch.cat([self.sample_latents(1, seed_at(seed, j)) for j in range(count)]).repeat(n, 1)
        noise = self._noise(noise)
        if keep_below is not None:
            q = self.tokenizer.tokenize(self._images_in(x))
            forced = [t.repeat_interleave(count, 0) if lvl < keep_below else None for lvl, t in zip(self.levels, q.tokens)]
            return self._sample(noise, [float(temperature)] * len(self.levels), self.levels[-1], forced)
        own = self.encode(x).latents.repeat_interleave(count, 0)
        u = torch.where(self._position_levels(noise.device) >= keep_from, own, noise)
        temps = [1.0 if lvl >= keep_from else float(temperature) for lvl in self.levels]
        return self._sample(u, temps, self.levels[-1])


@torch.inference_mode()
def reconstruction_error(model: VARGenerator, images: torch.Tensor, *, batch_size: int = 256) -> dict[str, float]:
    """The tokenizer's error per scale, in [-1, 1] units: ``mse_full_<level>`` is the image decoded
    from the scales up to that level against the full image, ``mse_<level>`` the same at the level's
    size against the area-pooled image (what Decompose shows); plus the finest PSNR in dB."""
    p = next(model.parameters())
    full = {lvl: 0.0 for lvl in model.levels}
    pooled = {lvl: 0.0 for lvl in model.levels}
    for chunk in images.split(batch_size):
        x = chunk.to(p.device, p.dtype)
        q = model.tokenizer.tokenize(x)
        decoded = model.tokenizer.decoder(torch.cat(q.f_hats)).split(x.shape[0])
        for lvl, img in zip(model.levels, decoded):
            full[lvl] += float((img.float() - x.float()).pow(2).mean((1, 2, 3)).sum())
            small = F.adaptive_avg_pool2d(img.float(), lvl)
            pooled[lvl] += float((small - F.adaptive_avg_pool2d(x.float(), lvl)).pow(2).mean((1, 2, 3)).sum())
    n = images.shape[0]
    out = {f"mse_full_{lvl}": full[lvl] / n for lvl in model.levels}
    out.update({f"mse_{lvl}": pooled[lvl] / n for lvl in model.levels})
    out["psnr_db"] = 10 * math.log10(4.0 / max(out[f"mse_full_{model.levels[-1]}"], 1e-12))
    return out


# --- training: the family's options and its two-stage recipe --------------------------------------
@dataclass(frozen=True)
class VAROptions:
    """The VAR family's own training options (``TrainOptions.family``); the loop's (steps, batch,
    lr, seeds) are in msgen.train."""

    tokenizer_share: float = option(0.35, "share of the run's steps spent on the tokenizer; the predictor "
                                    "trains the rest with the tokenizer frozen", lo=0.0, hi=1.0,
                                    label="Tokenizer share of the steps (the predictor trains the rest)")
    beta: float = option(0.25, "commitment weight of the VQ loss (VQ-VAE, VAR)", lo=0.0, hi=10.0)
    aux_weight: float = option(0.5, "weight of one random coarser scale's picture against the area-pooled image",
                               lo=0.0, hi=100.0)
    restart_every: int = option(25, "tokenizer updates between dead-code restarts (0: never)", lo=0, hi=10**6)
    label_smoothing: float = option(0.0, "label smoothing of the predictor's cross-entropy", lo=0.0, hi=0.5)
    lr_warmup_steps: int = option(100, "per stage, the learning rate ramps up over this many updates", lo=0, hi=10**7)
    grad_clip: float = option(2.0, "gradient-norm clip of either stage (0: off)", lo=0.0, hi=1e6)
    dropout: float = option(0.0, "residual dropout in the transformer's blocks while it trains (GPT-2's); "
                            "a small set is memorised less", lo=0.0, hi=0.9)
    # Mirrored pictures double a small set: a few-shot fine-tune repeats itself less (bench/fewshot.py,
    # with 2500 steps: near-duplicates of EmojiOne-100 0.61 -> 0.42 at coverage 0.82, Tango-200 coverage
    # 0.29 -> 0.41). Set it to 0 for pictures that must not be mirrored (text, arrows).
    hflip: float = option(0.5, "probability that a training picture is mirrored left to right (both stages; "
                          "0 for pictures that must not be mirrored, such as text)", lo=0.0, hi=1.0,
                          label="Mirror pictures left to right (probability; 0 for text)",
                          absent=0.0)  # a run stored before this option existed mirrored nothing

    def __post_init__(self) -> None:
        check_options(self)


def _updates(opt: torch.optim.Optimizer) -> int:
    """Updates an Adam optimiser has made (its per-parameter step count; 0 before the first)."""
    for state in opt.state.values():
        step = state.get("step")
        if step is not None:
            return int(step)
    return 0


class VARRecipe:
    """Both stages, chosen by the step: the tokenizer for the first ``tokenizer_share`` of the run's
    steps, then the predictor with the tokenizer frozen. Once the predictor has been updated (its
    optimiser holds state) it stays the stage, so a run resumed or extended to more steps never
    returns to the tokenizer under a predictor trained on its codes; the step and both optimisers are
    in the Trainer's checkpoint, so a resumed run takes exactly the path an unbroken one would.

    Of the loop's ``TrainOptions`` it reads ``lr``, ``steps`` and the seeds, and its own
    ``VAROptions`` from ``options.family``. Codebook init and restarts use the run's step
    generator, never the data; multi-process runs are untested for this family."""

    def __init__(self, generator: VARGenerator, discriminator: Any = None, options: Any = None):
        # ``options``: msgen.train.TrainOptions; the loop's lr and steps, and this family's VAROptions in .family.
        self.G, self.opt = generator, options
        self.vopt = options.for_family("var").family if options is not None else VAROptions()
        self.lr = options.lr if options is not None else 2e-4
        steps = getattr(options, "steps", 1000)
        self.split = round(self.vopt.tokenizer_share * steps)
        self.modules = {"generator": generator}
        self.optimizers = {
            "tokenizer": torch.optim.Adam(generator.tokenizer.parameters(), lr=self.lr, betas=(0.9, 0.99)),
            "transformer": torch.optim.Adam(generator.predictor.parameters(), lr=self.lr, betas=(0.9, 0.95)),
        }
        self.shard = None

    def ema_start(self, step: int) -> int:
        """The Trainer's EMA restarts where the predictor's stage began (its tokenizer, frozen from
        then on, is exported exactly as the predictor learned its codes); 0 before. Read from the
        predictor's own update count (called after ``step``'s update), so a run resumed or
        extended to more steps keeps the stage's real start, whatever the split becomes."""
        done = _updates(self.optimizers["transformer"])
        return step - done + 1 if done else 0

    def stage(self, step: int) -> str:
        return "transformer" if step >= self.split or self.optimizers["transformer"].state else "tokenizer"

    def step(self, real: torch.Tensor, step: int, gen: torch.Generator) -> dict[str, float]:
        stage = self.stage(step)
        if self.vopt.hflip > 0:  # drawn only when on: a run without it keeps its random stream
            u = rows(lambda k: torch.rand(k, generator=gen), real.shape[0], self.shard)  # as augment's draws
            real = torch.where((u < self.vopt.hflip).to(real.device)[:, None, None, None], real.flip(3), real)
        opt = self.optimizers[stage]
        done = _updates(opt)
        lr = self.lr * min(1.0, (done + 1) / max(1, self.vopt.lr_warmup_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        if stage == "tokenizer":
            loss, stats = self._tokenizer_loss(real, done, gen)
            params = self.G.tokenizer.parameters()
        else:
            loss, stats = self._predictor_loss(real, gen)
            params = self.G.predictor.parameters()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.vopt.grad_clip if self.vopt.grad_clip > 0 else float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(list(params), clip))
        if math.isfinite(norm):
            opt.step()
        opt.zero_grad(set_to_none=True)
        return stats | {"grad_norm": norm, "lr": lr, "stage": float(stage == "transformer")}

    def _tokenizer_loss(self, real: torch.Tensor, done: int, gen: torch.Generator):
        G, v = self.G, self.vopt
        tok = G.tokenizer
        tok.train()
        restarted = 0
        if v.restart_every and done and done % v.restart_every == 0:
            restarted = tok.quant.restart_dead(gen)
        f = tok.encoder(real)
        if done == 0:  # the codebook starts as the first batch's latents (+ noise): no code begins dead
            with torch.no_grad():
                pool = f.detach().permute(0, 2, 3, 1).reshape(-1, f.shape[1])
                pick = torch.randint(0, pool.shape[0], (tok.quant.codebook.num_embeddings,), generator=gen)
                book = pool[pick.to(pool.device)] * 0.5  # the coarse scales see averages, smaller than one latent
                tok.quant.codebook.weight.copy_(book + 0.01 * torch.randn(book.shape, generator=gen).to(book))
        q = tok.quant(f, beta=v.beta)
        straight = f + (q.f_hats[-1] - f).detach()  # straight-through estimator to the encoder (VAR)
        rec = tok.decoder(straight)
        mse = F.mse_loss(rec, real)
        loss = mse + q.loss
        stats = {"mse": mse.item(), "vq": q.loss.item()}
        if v.aux_weight > 0 and len(G.levels) > 1:
            k = int(torch.randint(0, len(G.levels) - 1, (), generator=gen))
            lvl = G.levels[k]
            coarse = F.adaptive_avg_pool2d(tok.decoder(q.f_hats[k]), lvl)
            aux = F.mse_loss(coarse, F.adaptive_avg_pool2d(real, lvl))
            loss = loss + v.aux_weight * aux
            stats["aux"] = aux.item()
        used = (tok.quant.usage > 0.03 / tok.quant.usage.numel()).float().mean().item()
        return loss, stats | {"loss": loss.item(), "codes_used": used, "restarted": float(restarted)}

    def _predictor_loss(self, real: torch.Tensor, gen: torch.Generator):
        G = self.G
        G.tokenizer.eval()
        G.predictor.train()
        drops = None
        if self.vopt.dropout > 0:  # masks from the step generator (checkpointed): a resumed run drops the same
            drops = torch.Generator(device=real.device)
            drops.manual_seed(int(torch.randint(0, 2**62, (), generator=gen)))
        for block in G.predictor.blocks:
            block.dropout, block.dropout_gen = self.vopt.dropout, drops
        with torch.no_grad():
            q = G.tokenizer.tokenize(real)
            q.f_hats = [f.detach() for f in q.f_hats]
        logits = G.logits(q)
        target = torch.cat([t.flatten(1) for t in q.tokens], dim=1)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), label_smoothing=self.vopt.label_smoothing)
        acc = (logits.argmax(-1) == target).float().mean().item()
        return ce, {"loss": ce.item(), "ce": ce.item(), "acc": acc}


register(
    Family(
        name="var",
        config_cls=VARConfig,
        generator_cls=VARGenerator,
        discriminator_cls=None,
        recipe_cls=VARRecipe,
        options_cls=VAROptions,
        # a model that trains in seconds (at resolution 16: a 4x4 latent grid, scales 1, 2, 4)
        tiny_config=dict(downsample=4, scales="1,2,4", vocab_size=16, code_dim=8, channel_max=16,
                         width=32, depth=2, heads=2, mlp_ratio=2),
        description="next-scale autoregressive transformer over a multi-scale VQ tokenizer (VAR); can decompose an image",
        encodes=True,  # encode / reconstruct / resample: the Decompose tab takes it
        ui=UIHints(
            truncation_label="Temperature (0: each token the most likely code, 1: as trained)",
            truncation_range=(0.0, 2.0),
            default_truncation=1.0,
        ),
        # Few-shot (bench/fewshot.py): the tokenizer adapts for the first 35% of the steps, then the
        # transformer; one CPU thread does a step of 16 in about a sixth of a second (9 minutes in
        # all at 32 px, 13-14 at 64 px). The 1x1 to 3x3 scales are drawn a token at a time: drawn at
        # once, their tokens combined different pictures into smears (coverage of EmojiOne-200
        # 0.42 -> 0.66, precision 0.54 -> 0.77). 3000 steps, not 1500: the mirrored pictures
        # (VAROptions.hflip) double what the transformer learns (at 2500 steps, Tango-200's coverage
        # was 0.41; at 3000, 0.56).
        finetune=FineTune(steps=3000, lr=1e-3, batch_size=16, config=(("ar_side", 3),)),
        # The tokenizer's decoder only (it turns chosen tokens into pixels; the transformer and the
        # quantiser, which pick the tokens, stay float32: the same tokens). bench/generate.py
        # --only-cpu-serving, one thread: 1.26-1.30x as fast (broad64-var 35.9 -> 27.7 ms, the decoder
        # alone 14.6 -> 4.2), no 8-bit value moved by more than 3 steps
        serving=Serving(channels_last=("tokenizer.decoder",), low_precision=("tokenizer.decoder",)),
    )
)
