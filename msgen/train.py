"""Training: from scratch or fine-tuning an exported model, with EMA, previews, stop and resume.

A ``Trainer`` owns one run folder::

    <run>/model/   the exported model (config.json, model.safetensors, README.md, samples.png)
    <run>/state/   training state: state.safetensors (weights, EMA, optimiser moments, RNG)
                   + state.json (step, options, optimiser hyper-parameters); never exported
    <run>/run.json what the run is (family, base, data, options) and how it ended

The family-specific part is a *recipe* (``GANRecipe`` here; other families name theirs in the
registry): it owns the modules and optimisers and does one optimisation step. The loop around
it -- data sampling, EMA, previews from fixed seeds, callbacks, tqdm, stop flag, atomic
checkpoints, resume -- is shared (lucidrains' ``Trainer`` shape, EDM's small ``loss.py``
callables). All randomness comes from explicit ``torch.Generator`` objects whose states are
checkpointed, so a resumed run continues exactly where it stopped. Under ``torchrun`` the same
loop runs on every process with a ``World`` (``msgen.distributed``): each rank takes its rows of
the global batch, gradients are averaged inside ``backward()``, and only rank 0 writes.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import losses as objectives
from .augment import POLICIES, diff_augment
from .distributed import SINGLE, World, rows
from .models import MultiScaleOutput, build_discriminator, build_generator, get_family, make_config

PREVIEW_SEED = 20_201_031  # fixed: previews of one run are comparable step to step
PREVIEW_COUNT = 16
SAMPLES_WIDTH = 512  # samples.png is enlarged to about this width, as the page shows its previews


@dataclass(frozen=True)
class TrainOptions:
    steps: int = 1000  # optimisation steps of this run in total (a resume continues towards it)
    batch_size: int = 16  # small batches suit 20-200 image sets and a 2-core CPU
    lr: float = 2e-4  # Adam, as in StyleGAN2 / FastGAN
    betas: tuple[float, float] = (0.0, 0.99)  # beta1 = 0 stabilises GAN training
    augment: tuple[str, ...] = POLICIES  # DiffAugment policies; few-shot sets need all three
    loss: str = "ns"  # "ns" (non-saturating logistic), "hinge" or "rpgan" (R3GAN's paired loss, msgen.losses)
    r1_gamma: float = 1.0  # R1 penalty weight on real images (lazy, every r1_every steps)
    r1_every: int = 4
    r2_gamma: float = 0.0  # R2 penalty on fake images, on R1's schedule; R3GAN sets it equal to r1_gamma
    cdc_weight: float = 0.0  # fine-tuning only: Ojha et al.'s cross-domain correspondence to the base (msgen.losses)
    ms_weight: float = 0.0  # Mao et al.'s mode-seeking regulariser on the finest pictures (msgen.losses) ...
    ms_size: int = 0  # ... area-averaged to this side first (0: full resolution)
    mixing_prob: float = 0.5  # style-mixing regularisation so that per-level mixing is meaningful
    ema_half_life_images: int = 5_000  # EMA of G; ramped up early in a run (StyleGAN2-ADA)
    ema_rampup: float = 0.1
    sample_every: int = 50  # steps between preview grids sent to callbacks
    checkpoint_every: int = 200  # steps between atomic checkpoints (state + exported model)
    seed: int = 0
    device: str = "auto"  # "auto" picks CUDA, then MPS, then CPU

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.steps <= 10_000_000, "steps must be between 1 and 10,000,000"),
            (1 <= self.batch_size <= 1024, "batch size must be between 1 and 1024"),
            (0 < self.lr <= 0.1, "learning rate must be in (0, 0.1]"),
            (self.loss in ("ns", "hinge", "rpgan"), "loss must be 'ns', 'hinge' or 'rpgan'"),
            (min(self.r1_gamma, self.r2_gamma, self.cdc_weight, self.ms_weight) >= 0, "penalty weights must be >= 0"),
            (self.sample_every >= 1 and self.checkpoint_every >= 1, "intervals must be at least 1"),
            (0 <= self.seed < 2**32, "seed must be in [0, 2**32)"),
            (all(p in POLICIES for p in self.augment), f"augmentations must be among {', '.join(POLICIES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class Progress:
    """What a callback receives: called every step; ``preview`` is set every ``sample_every``."""

    step: int
    total: int
    losses: dict[str, float]
    elapsed: float  # seconds of training in this process
    images_per_s: float
    preview: MultiScaleOutput | None = None
    checkpointed: bool = False
    done: bool = False
    stopped: bool = False
    eta_s: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# --- losses: small pure callables ------------------------------------------------------------
def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "rpgan":
        return objectives.rp_d_loss(real_logits, fake_logits)
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    return -fake_logits.mean() if kind == "hinge" else F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: dict[int, torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(real_logits.sum(), list(real_images.values()), create_graph=True)
    return sum(g.pow(2).flatten(1).sum(1) for g in grads).mean()


# --- recipes -----------------------------------------------------------------------------------
class GANRecipe:
    """One step of multi-scale GAN training: D on real vs fake pyramids, then G; R1 and mixing.

    Options that default to off add R2 on fakes, the paired (R3GAN) loss and, when fine-tuning,
    the cross-domain correspondence to a frozen copy of the base taken here, before any step.
    """

    def __init__(self, generator: torch.nn.Module, discriminator: torch.nn.Module, options: TrainOptions):
        self.G, self.D, self.opt = generator, discriminator, options
        self.source = copy.deepcopy(generator).eval().requires_grad_(False) if options.cdc_weight > 0 else None
        self.modules = {"generator": generator, "discriminator": discriminator}
        self.optimizers = {
            "generator": torch.optim.Adam(generator.parameters(), lr=options.lr, betas=options.betas),
            "discriminator": torch.optim.Adam(discriminator.parameters(), lr=options.lr, betas=options.betas),
        }
        self.shard = None  # set by msgen.distributed: this rank's rows of the global batch

    def _latents(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[torch.Tensor, Any]:
        latents = lambda k: torch.randn(k, self.G.config.latent_dim, generator=gen)  # noqa: E731
        z = rows(latents, n, self.shard).to(device)
        mix = None
        if torch.rand((), generator=gen).item() < self.opt.mixing_prob:
            levels = self.G.levels
            switch = levels[int(torch.randint(1, len(levels), (), generator=gen))]
            mix = (rows(latents, n, self.shard).to(device), switch)
        return z, mix

    def step(self, real: torch.Tensor, step: int, gen: torch.Generator) -> dict[str, float]:
        G, D, opt = self.G, self.D, self.opt
        n, dev = real.shape[0], real.device
        aug = lambda images: diff_augment(images, opt.augment, gen, self.shard) if opt.augment else images  # noqa: E731
        # Discriminator.
        z, mix = self._latents(n, gen, dev)
        with torch.no_grad():
            fake = G(z, mix=mix).images
        real_pyr = D.real_pyramid(real)
        real_logits = D(aug(real_pyr))
        fake_logits = D(aug(fake))
        loss_d = d_loss(real_logits, fake_logits, opt.loss)
        total_d = loss_d
        losses = {"d": loss_d.item()}
        if opt.r1_gamma > 0 and step % opt.r1_every == 0:
            # R1 on the un-augmented pyramid, in its own pass: grid_sample (translation) has no
            # double backward on CUDA, and the penalty's job, smoothing D around the data, is the same.
            clean = {k: v.detach().requires_grad_(True) for k, v in real_pyr.items()}
            r1 = r1_penalty(D(clean), clean)
            total_d = total_d + 0.5 * opt.r1_gamma * opt.r1_every * r1
            losses["r1"] = r1.item()
        if opt.r2_gamma > 0 and step % opt.r1_every == 0:
            clean = {k: v.detach().requires_grad_(True) for k, v in fake.items()}
            r2 = r1_penalty(D(clean), clean)
            total_d = total_d + 0.5 * opt.r2_gamma * opt.r1_every * r2
            losses["r2"] = r2.item()
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        total_d.backward()
        self.optimizers["discriminator"].step()
        # Generator.
        z, mix = self._latents(n, gen, dev)
        D.requires_grad_(False)
        if self.source is None:
            fake_g = G(z, mix=mix).images
        else:
            fake_g, feats = _with_features(G, z, mix)
            with torch.no_grad():
                _, feats_src = _with_features(self.source, z, mix)
        fake_logits_g = D(aug(fake_g))
        if opt.loss == "rpgan":
            with torch.no_grad():
                real_logits_g = D(aug(real_pyr))
            loss_g = objectives.rp_g_loss(fake_logits_g, real_logits_g)
        else:
            loss_g = g_loss(fake_logits_g, opt.loss)
        if self.source is not None:
            cdc = objectives.correspondence_loss(list(feats.values()), list(feats_src.values()))
            losses_cdc = cdc.item()
            loss_g = loss_g + opt.cdc_weight * cdc
        if opt.ms_weight > 0:
            ms = objectives.mode_seeking_loss(fake_g[max(fake_g)], z, size=opt.ms_size or None)
            losses_ms = ms.item()
            loss_g = loss_g + opt.ms_weight * ms
        D.requires_grad_(True)
        self.optimizers["generator"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizers["generator"].step()
        losses["g"] = loss_g.item()
        if self.source is not None:
            losses["cdc"] = losses_cdc
        if opt.ms_weight > 0:
            losses["ms"] = losses_ms
        losses["d_real"] = real_logits.mean().item()
        losses["d_fake"] = fake_logits.mean().item()
        return losses


def _with_features(G: torch.nn.Module, z: torch.Tensor, mix) -> tuple[dict, dict[int, torch.Tensor]]:
    """G's pictures and every level's feature map, with gradients (hooks removed afterwards)."""
    feats: dict[int, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, out, lvl=lvl: feats.__setitem__(lvl, out))
               for lvl, m in G.granularity_modules().items()]
    try:
        return G(z, mix=mix).images, feats
    finally:
        for h in handles:
            h.remove()


def make_recipe(generator: torch.nn.Module, discriminator: torch.nn.Module | None, options: TrainOptions):
    family = get_family(generator.config.family)
    path = getattr(family, "recipe", None) or "msgen.train:GANRecipe"
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)(generator, discriminator, options)


# --- optimiser state <-> safetensors -----------------------------------------------------------
def _flatten_optimizer(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"opt.{name}.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, {"param_groups": sd["param_groups"]}


def _unflatten_optimizer(name: str, opt: torch.optim.Optimizer, tensors: dict, info: dict) -> None:
    prefix = f"opt.{name}."
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, sub = key[len(prefix):].split(".", 1)
            state.setdefault(int(idx), {})[sub] = value
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def _gen_state(gen: torch.Generator) -> torch.Tensor:
    return gen.get_state().clone()


class Trainer:
    """Train ``family`` from scratch (``config``) or fine-tune ``base`` (an exported model folder)
    on ``images`` (N x 3 x r x r in [-1, 1]), in ``run_dir``. ``train()`` resumes automatically
    when ``run_dir/state`` exists."""

    def __init__(
        self,
        *,
        images: torch.Tensor,
        run_dir: str | Path,
        config: Any = None,
        family: str | None = None,
        resolution: int | None = None,
        base: str | Path | None = None,
        options: TrainOptions = TrainOptions(),
        callbacks: tuple[Callable[[Progress], None], ...] = (),
        stop: threading.Event | Callable[[], bool] | None = None,
        meta: dict[str, Any] | None = None,
        progress_bar: bool = False,
        world: World = SINGLE,
    ):
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
            raise ValueError("training needs at least one image (N x 3 x r x r)")
        self.run_dir = Path(run_dir)
        self.options = options
        self.callbacks = tuple(callbacks)
        self.stop = stop
        self.meta = dict(meta or {})
        self.world = world  # several processes (msgen.distributed): rank 0 writes and reports
        self.progress_bar = progress_bar and world.is_main
        self.device = world.device(pick_device(options.device))
        self.base = str(base) if base is not None else None
        self.G, self.D = self._build(config, family, resolution, base)
        if images.shape[-1] != self.G.config.resolution:
            raise ValueError(f"images are {images.shape[-1]}px but the model is {self.G.config.resolution}px")
        self.images = images.float()
        self.G.to(self.device).train()
        if self.D is not None:  # likelihood families (hvae) train without one
            self.D.to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.recipe = make_recipe(self.G, self.D, options)
        world.attach(self.recipe, options.batch_size)
        self.data_gen = torch.Generator().manual_seed(options.seed)
        self.step_gen = torch.Generator().manual_seed(options.seed + 1)
        self.step = 0
        self.train_seconds = 0.0  # across resumes, for the card

    def _build(self, config, family, resolution, base):
        if base is not None:
            path = ckpt.resolve(base)
            cfg, _meta, tensors = ckpt.read_model_dir(path)
            G = build_generator(cfg)
            G.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("generator.")})
            D = build_discriminator(cfg)
            d_state = {k[14:]: v for k, v in tensors.items() if k.startswith("discriminator.")}
            if D is not None and d_state:
                D.load_state_dict(d_state)  # a pretrained D makes few-shot fine-tuning far steadier
            return G, D
        if config is None:
            if family is None:
                raise ValueError("give a base model to fine-tune, or a family (and resolution) to train from scratch")
            config = make_config(family, **({"resolution": resolution} if resolution else {}))
        torch.manual_seed(self.options.seed)  # initial weights follow the run's seed
        return build_generator(config), build_discriminator(config)

    # --- state ----------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.run_dir / "state"

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    def save_state(self) -> None:
        tensors: dict[str, torch.Tensor] = {}
        info: dict[str, Any] = {"step": self.step, "train_seconds": self.train_seconds,
                                "options": dataclasses.asdict(self.options), "optimizers": {}}
        for name, module in self.recipe.modules.items():
            if module is not None:
                tensors.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
        tensors.update({f"ema.{k}": v for k, v in self.G_ema.state_dict().items()})
        for name, opt in self.recipe.optimizers.items():
            flat, opt_info = _flatten_optimizer(name, opt)
            tensors.update(flat)
            info["optimizers"][name] = opt_info
        tensors["rng.data"] = _gen_state(self.data_gen)
        tensors["rng.step"] = _gen_state(self.step_gen)
        ckpt.atomic_save_tensors(self.state_dir / "state.safetensors", tensors, metadata={"step": str(self.step)})
        # state.json is written last and names the step: a crash between the two writes leaves a
        # newer safetensors beside an older json, which resume detects through the step stamp.
        tensors_step = self.step
        ckpt.atomic_write_text(self.state_dir / "state.json", json.dumps(info | {"tensors_step": tensors_step}, indent=1))

    def load_state(self) -> bool:
        path = self.state_dir / "state.safetensors"
        if not path.is_file() or not (self.state_dir / "state.json").is_file():
            return False
        from safetensors.torch import load_file

        info = json.loads((self.state_dir / "state.json").read_text())
        tensors = load_file(str(path))
        for name, module in self.recipe.modules.items():
            if module is not None:
                module.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
        self.G_ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        for name, opt in self.recipe.optimizers.items():
            _unflatten_optimizer(name, opt, tensors, info["optimizers"][name])
        self.data_gen.set_state(tensors["rng.data"])
        self.step_gen.set_state(tensors["rng.step"])
        self.step = int(info["step"])
        self.train_seconds = float(info.get("train_seconds", 0.0))
        return True

    def export(self) -> Path:
        meta = self.meta | {
            "family": self.G.config.family,
            "steps": self.step,
            "batch_size": self.options.batch_size,
            "seed": self.options.seed,
            "wall_time_s": round(self.train_seconds, 1),
            "hardware": _hardware(self.device) + (f", {self.world.size} processes" if self.world.active else ""),
            "num_images": int(self.images.shape[0]),
            "has_samples": True,
        }
        if self.base:
            meta.setdefault("base", self.base)
        model_dir = ckpt.save_model(self.model_dir, self.G_ema.cpu(), discriminator=self.D.cpu() if self.D is not None else None,
                                    meta=meta)
        self.G_ema.to(self.device)
        if self.D is not None:
            self.D.to(self.device)
        ckpt.atomic_write_bytes(model_dir / "samples.png", _samples_png(self.preview().finest))
        return model_dir

    @torch.no_grad()
    def preview(self) -> MultiScaleOutput:
        z = self.G_ema.sample_latents(PREVIEW_COUNT, PREVIEW_SEED).to(self.device)
        out = self.G_ema(z)
        return MultiScaleOutput(images={k: v.cpu() for k, v in out.images.items()})

    # --- the loop ---------------------------------------------------------------------------
    def _stopped(self) -> bool:
        if self.stop is None:
            flag = False
        else:
            flag = self.stop.is_set() if isinstance(self.stop, threading.Event) else bool(self.stop())
        return self.world.any(flag)

    def _ema_update(self) -> None:
        opt = self.options
        images_seen = (self.step + 1) * opt.batch_size
        half_life = min(opt.ema_half_life_images, max(images_seen * opt.ema_rampup, opt.batch_size))
        beta = 0.5 ** (opt.batch_size / half_life)
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.lerp_(p.detach(), 1 - beta)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    def train(self) -> Path:
        resumed = self.load_state()
        self.world.check_same(self.step, "step to resume from")
        self.world.broadcast([*(m for m in self.recipe.modules.values() if m is not None), self.G_ema])
        opt = self.options
        data = self.images.to(self.device)
        start_step, t0 = self.step, time.perf_counter()
        self._write_run_json("running", resumed)
        bar = tqdm(total=opt.steps, initial=self.step, disable=not self.progress_bar, desc="train", unit="step")
        stopped = False
        while self.step < opt.steps:
            if self._stopped():
                stopped = True
                break
            idx = self.world.local(torch.randint(0, data.shape[0], (opt.batch_size,), generator=self.data_gen))
            losses = self.recipe.step(data[idx.to(self.device)], self.step, self.step_gen)
            losses = self.world.after_step(self.recipe, losses)
            self._ema_update()
            self.step += 1
            elapsed = time.perf_counter() - t0
            rate = (self.step - start_step) * opt.batch_size / max(elapsed, 1e-9)
            ckpt_now = self.step % opt.checkpoint_every == 0 and self.step < opt.steps
            if ckpt_now:
                self._checkpoint(elapsed_since=t0)
            preview = self.preview() if self.step % opt.sample_every == 0 and self.world.is_main else None
            eta = (opt.steps - self.step) * opt.batch_size / rate if rate > 0 else None
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items() if k in ("d", "g", "loss")})
            self._emit(Progress(self.step, opt.steps, losses, elapsed, rate, preview, ckpt_now, eta_s=eta))
        bar.close()
        self._checkpoint(elapsed_since=t0)
        self._write_run_json("stopped" if stopped else "finished", resumed)
        self.world.barrier()  # the other ranks wait for rank 0's last writes before they exit
        elapsed = time.perf_counter() - t0
        rate = (self.step - start_step) * opt.batch_size / max(elapsed, 1e-9)
        final = self.preview() if self.world.is_main else None
        self._emit(Progress(self.step, opt.steps, {}, elapsed, rate, final, True, done=True, stopped=stopped))
        return self.model_dir

    def _checkpoint(self, *, elapsed_since: float) -> None:
        now = time.perf_counter()
        self.train_seconds += now - getattr(self, "_last_ckpt", elapsed_since)
        self._last_ckpt = now
        if self.world.is_main:
            self.save_state()
            self.export()

    def _emit(self, progress: Progress) -> None:
        if not self.world.is_main:
            return
        for cb in self.callbacks:
            cb(progress)

    def _write_run_json(self, status: str, resumed: bool) -> None:
        if not self.world.is_main:
            return
        info = {"status": status, "step": self.step, "steps": self.options.steps, "family": self.G.config.family,
                "resolution": self.G.config.resolution, "base": self.base, "resumed": resumed,
                "options": dataclasses.asdict(self.options), "meta": self.meta, "processes": self.world.size,
                "config": dataclasses.asdict(self.G.config)}
        ckpt.atomic_write_text(self.run_dir / "run.json", json.dumps(info, indent=1, default=str))


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


def _samples_png(images: torch.Tensor) -> bytes:
    """The preview images (N x 3 x r x r in [-1, 1]) as ``samples.png``: 4 a row, black 1 px lines."""
    from . import render

    sheet = render.grid(render.to_uint8(images), cols=min(4, len(images)), gap=1, fill=0, border=True)
    factor = max(1, SAMPLES_WIDTH // sheet.shape[1])  # 32 px tiles would give a 133 px thumbnail
    return render.png_bytes(render.upscale(sheet, factor))  # nearest: the model's own pixels, just larger


def resume_options(run_dir: str | Path, **changes: Any) -> TrainOptions:
    """The options a run was started with (from its state), optionally changed (e.g. more steps)."""
    info = json.loads((Path(run_dir) / "state" / "state.json").read_text())
    opts = info["options"]
    opts["betas"] = tuple(opts["betas"])
    opts["augment"] = tuple(opts["augment"])
    return TrainOptions(**(opts | changes))
