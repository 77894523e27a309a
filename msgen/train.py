"""Training: from scratch or fine-tuning an exported model, with EMA, previews, stop and resume.

(About 350 lines: the loop and the state it checkpoints and resumes belong together.)

A ``Trainer`` trains in one run folder, through its owner ``msgen.run.Run`` (the layout,
``run.json``, the checkpoint's files): it writes the exported model (``<run>/model/``), the
training state (``<run>/state/``: weights, EMA, optimiser moments, RNG; never exported) and the
run's record (what it is: family, base, data, options, and how it ended). The options are
``msgen.options.TrainOptions`` (re-exported here).

The family-specific part is a *recipe* (the family's ``recipe_cls``, in its own file under
``msgen/models/``, with its own options dataclass in ``TrainOptions.family``): it owns the
modules and optimisers and does one optimisation step. The loop around
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
import json
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .device import pick_device
from .distributed import SINGLE, World
from .models import MultiScaleOutput, build_discriminator, build_generator, get_family, make_config
from .options import LOOP_FIELDS, TrainOptions, family_options, options_from_dict, options_to_dict
from .run import DataRecord, Run, RunError, RunRecord

__all__ = ["Trainer", "TrainOptions", "Progress", "make_recipe", "resume_options", "options_from_dict",
           "options_to_dict", "family_options", "LOOP_FIELDS", "PREVIEW_SEED"]

PREVIEW_SEED = 20_201_031  # fixed: previews of one run are comparable step to step
PREVIEW_COUNT = 16
SAMPLES_WIDTH = 512  # samples.png is enlarged to about this width, as the page shows its previews


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


def make_recipe(generator: torch.nn.Module, discriminator: torch.nn.Module | None, options: TrainOptions):
    """The generator's family's recipe, with ``options.family`` filled in for that family."""
    name = generator.config.family
    return get_family(name).recipe_cls(generator, discriminator, options.for_family(name))


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
    if len(info["param_groups"]) != len(opt.param_groups):  # e.g. the GAN's mapping_lr turned on or off
        raise ValueError(f"this run's {name} optimiser was begun with other options (its parameter groups differ, "
                         f"as when the GAN's --mapping-lr is turned on or off): resume it with the options it began with")
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def _gen_state(gen: torch.Generator) -> torch.Tensor:
    return gen.get_state().clone()


def fine_tune_config(cfg: Any) -> Any:
    """The config a fine-tune of a base with config ``cfg`` trains: its family's
    ``FineTune.config`` changes, each where the base has that field's default."""
    defaults = type(cfg)()
    changes = {k: v for k, v in get_family(cfg.family).finetune.config
               if getattr(cfg, k) == getattr(defaults, k) and getattr(cfg, k) != v}
    return dataclasses.replace(cfg, **changes) if changes else cfg


def _fine_tuned_generator(cfg: Any, state: dict[str, torch.Tensor], seed: int,
                          resumed: set[str] = frozenset()) -> torch.nn.Module:
    """The base's generator under ``fine_tune_config``: every base tensor loaded, the parts a change
    adds at their initial values (drawn from the run's seed). ``state`` holds exactly ``cfg``'s
    tensors (``read_model_dir`` checked them). ``resumed``: the tensor names of the run's checkpoint,
    if any; a run begun as the plain base (before its family's change existed) resumes as it began
    (a change that adds no tensor looks the same, and changes nothing to resume)."""
    new_cfg = fine_tune_config(cfg)
    if new_cfg is not cfg and resumed and {k for k in resumed if k.startswith("generator.")} == {
            f"generator.{k}" for k in state}:
        new_cfg = cfg
    if new_cfg is cfg:
        G = build_generator(cfg)
        G.load_state_dict(state)
        return G
    with torch.random.fork_rng(devices=[]):  # the global generator stays as it was
        torch.manual_seed(seed)
        G = build_generator(new_cfg)
    try:  # strict: a base tensor with no place, or another shape, in the changed model is refused
        G.load_state_dict(G.state_dict() | state)
    except RuntimeError as exc:
        raise ValueError(f"the base does not fit its fine-tune config: {exc}") from None
    return G


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
        data: DataRecord | None = None,
    ):
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
            raise ValueError("training needs at least one image (N x 3 x r x r)")
        self.run_dir = Path(run_dir)
        self.run = Run(self.run_dir)
        self.data = data  # where the images came from, for run.json (None: what it says already)
        self.callbacks = tuple(callbacks)
        self.stop = stop
        self.meta = dict(meta or {})
        self.world = world  # several processes (msgen.distributed): rank 0 writes and reports
        self.progress_bar = progress_bar and world.is_main
        self.device = world.device(pick_device(options.device))
        self.base = str(base) if base is not None else None
        self.options = options  # the seed of the initial weights; ``family`` is filled in below
        self.G, self.D = self._build(config, family, resolution, base)
        self.options = options = self._family_options(options, base)
        if images.shape[-1] != self.G.config.resolution:
            raise ValueError(f"images are {images.shape[-1]}px but the model is {self.G.config.resolution}px")
        self.images = images.float()
        self.G.to(self.device).train()
        if self.D is not None:  # likelihood families train without one
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
            G = _fine_tuned_generator(cfg, ckpt.split_tensors(tensors, "generator."), self.options.seed,
                                      resumed=self.run.state_tensor_names())
            D = build_discriminator(cfg)
            d_state = ckpt.split_tensors(tensors, "discriminator.")
            if D is not None and d_state:
                D.load_state_dict(d_state)  # a pretrained D makes few-shot fine-tuning far steadier
            return G, D
        if config is None:
            if family is None:
                raise ValueError("give a base model to fine-tune, or a family (and resolution) to train from scratch")
            config = make_config(family, **({"resolution": resolution} if resolution else {}))
        torch.manual_seed(self.options.seed)  # initial weights follow the run's seed
        return build_generator(config), build_discriminator(config)

    def _family_options(self, options: TrainOptions, base: str | Path | None) -> TrainOptions:
        """``options`` with the model's family's options filled in. Unset, they are the family's
        defaults, except that a base exported when they were config fields keeps its own values."""
        name = self.G.config.family
        if options.family is None and base is not None:
            legacy = get_family(name).legacy_config_keys
            if legacy:
                raw = json.loads((ckpt.resolve(base) / "config.json").read_text())  # read_model_dir checked it
                kept = {k: raw[k] for k in legacy if k in raw}
                if kept:
                    return dataclasses.replace(options, family=family_options(name, kept))
        return options.for_family(name)

    # --- state ----------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.run.state_dir

    @property
    def model_dir(self) -> Path:
        return self.run.model_dir

    def save_state(self) -> None:
        tensors: dict[str, torch.Tensor] = {}
        info: dict[str, Any] = {"step": self.step, "train_seconds": self.train_seconds,
                                "options": options_to_dict(self.options), "optimizers": {}}
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
        self.run.save_state(tensors, info)

    def load_state(self) -> bool:
        loaded = self.run.load_state()
        if loaded is None:
            return False
        info, tensors = loaded
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
        # A recipe whose stages train different parts may restart the EMA where a stage begins
        # (``ema_start(step)``: the step it counts from): there the EMA becomes the weights, and its
        # ramp starts again. var's predictor learns the raw tokenizer's codes, so the exported
        # tokenizer must be that tokenizer, not an average of its path.
        start = self.recipe.ema_start(self.step) if hasattr(self.recipe, "ema_start") else 0
        if start and self.step == start:
            self.G_ema.load_state_dict(self.G.state_dict())
            return
        images_seen = (self.step + 1 - start) * opt.batch_size
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
        data = self.data
        if data is None:  # a queued run's record says where its images are
            try:
                data = self.run.record().data
            except RunError:
                data = DataRecord()
        cfg = self.G.config
        self.run.write(RunRecord(status=status, step=self.step, steps=self.options.steps, family=cfg.family,
                                 resolution=cfg.resolution, config=dataclasses.asdict(cfg),
                                 options=options_to_dict(self.options), base=self.base, resumed=resumed,
                                 processes=self.world.size, data=data, command=self.meta.get("command"),
                                 meta=self.meta))


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
    """The options a run was started with (from its state), optionally changed (e.g. more steps);
    ``Run.train_options``. Runs written before the family options had their own dataclass are translated."""
    return Run(run_dir).train_options(**changes)
