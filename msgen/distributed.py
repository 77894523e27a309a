"""Data-parallel training over several processes: ``torchrun --nproc_per_node=N -m msgen train ...``.

Built on plain ``torch.distributed`` (NCCL on GPUs, gloo on CPUs), with gradients averaged by
explicit all-reduce, as StyleGAN2-ADA's training loop does, rather than through
``DistributedDataParallel`` or Hugging Face Accelerate. A GAN step does not fit DDP's one
forward / one backward contract: the discriminator runs four times a step (real, fake, the
lazy R1 pass, the generator's pass) with its ``requires_grad`` toggled, and R1 is a double
backward (``torch.autograd.grad(create_graph=True)``), which DDP's reducer does not support.
Accelerate's ``prepare`` wraps models in that same DDP and adds a dependency whose sharded
data loader does not apply either (batches are drawn with replacement from a seeded stream).

How a run stays the same run for any number of processes:

* **One random stream, sliced.** Every rank holds the run's data and step generators with the
  same seed and state, and draws every per-sample random number (batch indices, latents,
  augmentation parameters) for the *global* batch, keeping its slice ``rank::world``. So
  rank r trains on exactly the samples a single process would put at positions r, r+W, ...
  of its batch, and a resume with another process count continues the same streams. The
  strided slice also keeps the discriminator's minibatch-stddev groups (samples i, i+n/g ...)
  whole when ``batch / world`` is a multiple of the group size (4).
* **Gradients.** A post-accumulate-grad hook on every parameter of every module the recipe
  owns (generator, discriminator) weights the rank's gradient by its share of the batch and
  all-reduces it, so when ``backward()`` returns every rank holds the global-batch gradient;
  a recipe that clips or skips on the gradient norm (the VAE's) decides the same everywhere,
  and the R1 penalty, folded into the discriminator's loss, is averaged with it.
* **Buffers, EMA, losses.** Floating buffers (the mapping network's ``w_avg``) are averaged
  after each step (their updates are linear in the batch mean, so this is the global update);
  the EMA generator is then updated identically from identical weights on every rank.
* **Writes.** Only rank 0 writes checkpoints, previews, ``run.json`` and the exported model,
  and only it reports progress; the others train. A resume reads the run folder on every
  rank, so on several machines the run folder must be on a shared file system.

Batch statistics a family computes inside its loss (the VAE's detached sigma and free-bits
clamp) are per rank: such a family trains correctly data-parallel but approximates, rather
than reproduces, a single process.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist

__all__ = ["Shard", "World", "SINGLE", "init_from_env", "shutdown", "rows"]


@dataclass(frozen=True)
class Shard:
    """This rank's slice ``start::step`` of a global batch of ``total`` samples."""

    start: int
    step: int
    total: int

    @property
    def size(self) -> int:
        return len(range(self.start, self.total, self.step))


def rows(draw: Callable[[int], torch.Tensor], n: int, shard: Shard | None) -> torch.Tensor:
    """``draw(n)`` on one process; on several, the rank's rows of ``draw(global batch)``, so the
    generator advances the same on every rank and each sample gets its single-process draw."""
    if shard is None or shard.step == 1:
        return draw(n)
    if n != shard.size:
        raise ValueError(f"a batch of {n} does not match this rank's shard of {shard.size}")
    return draw(shard.total)[shard.start::shard.step]


@dataclass(frozen=True)
class World:
    """The processes of one run. ``SINGLE`` (one process, no process group) costs nothing."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process on a node: ``cuda:LOCAL_RANK``."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def shard(self, batch_size: int) -> Shard | None:
        if not self.active:
            return None
        if batch_size < self.size:
            raise ValueError(f"batch size {batch_size} is smaller than the {self.size} processes; "
                             "give every process at least one sample")
        return Shard(self.rank, self.size, batch_size)

    def local(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global-batch tensor."""
        return batch[self.rank::self.size] if self.active else batch

    # --- hooks the Trainer calls ---------------------------------------------------------------
    def attach(self, recipe: Any, batch_size: int) -> None:
        """Average the gradients of every module ``recipe`` owns, inside ``backward()``."""
        recipe.shard = self.shard(batch_size)
        if not self.active:
            return
        weight = recipe.shard.size / batch_size  # a rank's loss is a mean over its share

        def reduce(param: torch.Tensor) -> None:
            param.grad.mul_(weight)
            dist.all_reduce(param.grad)

        for module in _modules(recipe):
            for param in module.parameters():
                param.register_post_accumulate_grad_hook(reduce)

    def after_step(self, recipe: Any, losses: dict[str, float]) -> dict[str, float]:
        """Average floating buffers across ranks, and the losses for the log."""
        if not self.active:
            return losses
        weight = recipe.shard.size / recipe.shard.total
        buffers = [b for m in _modules(recipe) for b in m.buffers() if b.is_floating_point()]
        keys = sorted(losses)
        device = next(_modules(recipe)[0].parameters()).device
        logged = torch.tensor([float(losses[k]) for k in keys], dtype=torch.float64, device=device)
        flat = torch.cat([b.detach().flatten().double() for b in buffers] + [logged]) * weight
        dist.all_reduce(flat)
        offset = 0
        for b in buffers:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()
        return dict(zip(keys, flat[offset:].tolist()))

    def broadcast(self, modules: Iterable[torch.nn.Module]) -> None:
        """Rank 0's weights and buffers everywhere (seeded builds already agree; this makes sure)."""
        if not self.active:
            return
        for module in modules:
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)

    def check_same(self, value: int, what: str) -> None:
        """Fail clearly when ranks disagree, e.g. a resume on machines that do not share the run folder."""
        if not self.active:
            return
        t = torch.tensor([value, -value], dtype=torch.int64, device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if int(t[0]) != value or int(-t[1]) != value:
            raise RuntimeError(f"processes disagree on the {what} ({value} on rank {self.rank}); on several machines "
                               "the run folder must be on a file system they share")

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (a stop request must stop all of them together)."""
        if not self.active:
            return flag
        t = torch.tensor([int(flag)], device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def _comm_device(self) -> torch.device:
        """NCCL moves CUDA tensors only; gloo, CPU ones."""
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


SINGLE = World()


def _modules(recipe: Any) -> list[torch.nn.Module]:
    return [m for m in recipe.modules.values() if m is not None]


def init_from_env(device: str = "auto", *, timeout_s: float = 600.0) -> World:
    """The world ``torchrun`` (or Slurm via torchrun) describes in RANK / WORLD_SIZE / LOCAL_RANK;
    ``SINGLE`` when launched as one plain process. NCCL when this rank trains on a GPU, else gloo."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if on_gpu:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_gpu else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return World(rank=rank, size=size, local_rank=local_rank)


def shutdown(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()
