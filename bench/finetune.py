"""Fine-tuning speed on the CPU: msgen vs the PyPI package lightweight-gan, and the default fine-tune.

    python bench/finetune.py [--threads 2] [--steps 20] [--batch 16] [--images 50] [--skip-full]

1. Training images/s at 32 and 64 px, batch 16 (the page's default): one msgen step is the
   Train tab's (multi-scale D and G updates, DiffAugment colour/translation/cutout, lazy R1
   every 4 steps, EMA); one lightweight-gan step is its ``Trainer.train`` step re-typed for the
   CPU with its own ``Generator``, ``Discriminator`` and ``AugWrapper`` at its ``Trainer``'s
   default sizes (latent 256, fmap_max 512, no attention, 5x5 D output; ``--lw-cli`` takes its
   command line's instead: attention at 32 px and a 1x1 D output, which at batch 16 needs more
   than 8 GB of RAM on a CPU), its losses (hinge, the D's auto-encoding loss, gradient penalty every 4 steps) and Adam
   (lr 2e-4, betas 0.5/0.9); its default aug_prob is 0, so it augments nothing.
   lightweight-gan asserts CUDA at import and its Trainer moves everything to ``cuda:0``, so
   it cannot train on a CPU at all; ``torch.cuda.is_available`` is patched for the import only.
2. Wall time of the default fine-tune, through the page's own code path (``run_job``: data
   loading, SWD before and after, checkpoints, export) on 50 images: the Train tab's defaults
   (500 steps, batch 16, its preselected base: a shipped 32 px GAN; a random-init default msggan
   at 32 px when none is shipped: same architecture, same speed), in its worker thread.

Images: 50 Dungeon Crawl sprites (``msgen.datasets``, 32 px, enlarged for 64) when crawl-tiles-data
is installed, else the test fixtures (16).
Both sides see the same images, batch and thread count in the same process.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path
from unittest import mock

import _common  # noqa: F401  (puts the repo on sys.path)
import torch

ROOT = Path(__file__).resolve().parent.parent


def image_folder(n: int, tmp: Path) -> Path:
    from msgen.data import DataError
    from msgen.datasets import build_dataset

    out = tmp / "images"
    try:
        build_dataset("sprites", out, limit=n)  # emoji would do too, but parsing its font takes GBs
        return out
    except (DataError, OSError, ValueError) as exc:
        print(f"(sprites set unavailable: {exc}; using tests/fixtures/images)")
        shutil.rmtree(out, ignore_errors=True)
        return ROOT / "tests" / "fixtures" / "images"


def timed(step, steps: int, warmup: int = 1) -> float:
    """Mean seconds per step over ``steps`` (a multiple of 4, so that the every-4th-step gradient
    penalties of both recipes are counted at their true rate) after ``warmup`` steps."""
    for i in range(warmup):
        step(i)
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    return (time.perf_counter() - t) / steps


def msgen_step(res: int, batch: int, real: torch.Tensor):
    from msgen.models import make_config
    from msgen.train import Trainer, TrainOptions

    tmp = tempfile.mkdtemp()
    opts = TrainOptions(steps=10**6, batch_size=batch, device="cpu", sample_every=10**6, checkpoint_every=10**6)
    t = Trainer(images=real * 2 - 1, run_dir=tmp, config=make_config("msggan", resolution=res), options=opts)
    params = sum(p.numel() for p in t.G.parameters()) + sum(p.numel() for p in t.D.parameters())
    data = t.images

    def step(i: int) -> None:
        idx = torch.randint(0, len(data), (batch,), generator=t.data_gen)
        t.recipe.step(data[idx], i, t.step_gen)
        t._ema_update()

    return step, params


def import_lightweight_gan():
    # It asserts torch.cuda.is_available() at import time; patch that for the import only.
    with mock.patch.object(torch.cuda, "is_available", return_value=True):
        import lightweight_gan.lightweight_gan as lw
    return lw


def lightweight_gan_step(res: int, batch: int, real: torch.Tensor, attention: bool = False):
    lw = import_lightweight_gan()
    # Its Trainer class's defaults; its CLI adds attention at 32 px and a 1x1 D output (--lw-cli).
    kw = dict(image_size=res, fmap_max=512, attn_res_layers=[32] if attention else [])
    G = lw.Generator(latent_dim=256, **kw)
    D = lw.Discriminator(disc_output_size=1 if attention else 5, **kw)
    for m in list(G.modules()) + list(D.modules()):  # LightweightGAN._init_weights
        if type(m) in {torch.nn.Conv2d, torch.nn.Linear}:
            torch.nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", nonlinearity="leaky_relu")
    D_aug = lw.AugWrapper(D, res)
    G_opt = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.9))
    D_opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.9))
    params = sum(p.numel() for p in G.parameters()) + sum(p.numel() for p in D.parameters())
    gen = torch.Generator().manual_seed(0)
    aug = {"prob": 0.0, "types": ["translation", "cutout"]}  # Trainer: aug_prob None -> 0
    G.train(), D.train()

    def step(i: int) -> None:  # Trainer.train() without amp, DDP and gradient accumulation
        gp_now = i % 4 == 0
        D_opt.zero_grad()
        latents = torch.randn(batch, 256, generator=gen)
        images = real[torch.randint(0, len(real), (batch,), generator=gen)].clone()
        with torch.no_grad():
            fake = G(latents)
        if gp_now:
            images.requires_grad_()
        fake, (fake_out, fake_out_32, _) = D_aug(fake, detach=True, input_requires_grad=gp_now,
                                                 return_discr_input=True, **aug)
        real_out, real_out_32, aux = D_aug(images, calc_aux_loss=True, **aug)
        loss = lw.hinge_loss(real_out, fake_out) + lw.hinge_loss(real_out_32, fake_out_32) + aux
        if gp_now:
            outs = [real_out, real_out_32]
            g_real = torch.autograd.grad(outs, images, [torch.ones_like(t) for t in outs], create_graph=True,
                                         retain_graph=True)[0]
            outs = [fake_out, fake_out_32]
            g_fake = torch.autograd.grad(outs, fake, [torch.ones_like(t) for t in outs], create_graph=True,
                                         retain_graph=True)[0]
            grads = torch.cat((g_real, g_fake)).reshape(2 * batch, -1)
            loss = loss + 10 * (grads.norm(2, dim=1) ** 2).mean()
        loss.backward()
        D_opt.step()
        G_opt.zero_grad()
        fake_out, fake_out_32, _ = D_aug(G(torch.randn(batch, 256, generator=gen)), **aug)
        (lw.gen_hinge_loss(fake_out, None) + lw.gen_hinge_loss(fake_out_32, None)).backward()
        G_opt.step()

    return step, params


def default_finetune(folder: Path, tmp: Path) -> tuple[float, str, int, int, int]:
    """Wall time of the Train tab's default run on ``folder``, through its own job code."""
    from msgen.checkpoint import save_model
    from msgen.models import build_discriminator, build_generator, make_config
    from msgen.train import TrainOptions
    from msgen.ui import common
    from msgen.ui import train as tab
    from msgen.ui.jobs import JobManager, JobSpec

    ctx = common.AppContext(runs_dir=tmp / "runs")
    choice = tab.default_base(ctx)
    if choice.startswith("model:"):
        entry = ctx.find(choice[6:], None)
        base, label = entry.path, f"{entry.name}, {entry.resolution} px"
    else:
        torch.manual_seed(0)
        cfg = make_config("msggan", resolution=32)
        base = save_model(tmp / "base", build_generator(cfg), discriminator=build_discriminator(cfg))
        label = "msggan-32 (random init; no shipped model)"
    options = TrainOptions(steps=tab.DEFAULT_STEPS, batch_size=tab.DEFAULT_BATCH, lr=tab.DEFAULT_LR,
                           sample_every=tab.DEFAULT_PREVIEW_EVERY, checkpoint_every=tab.CHECKPOINT_EVERY)
    manager = JobManager()  # the page's worker, with its torch thread count (one core left free)
    t = time.perf_counter()
    job = manager.submit(JobSpec(run_dir=tmp / "run", name="bench", owner_key="bench", data=folder, options=options,
                                 base=base))
    manager.wait(job, timeout=24 * 3600)
    if job.state != "finished":
        raise RuntimeError(f"default fine-tune {job.state}: {job.message}")
    return time.perf_counter() - t, label, job.step, options.batch_size, manager.threads


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--steps", type=int, default=20, help="timed msgen steps (a multiple of 4)")
    p.add_argument("--lw-steps", type=int, default=4, help="timed lightweight-gan steps (a multiple of 4)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--skip-full", action="store_true", help="skip the default fine-tune's wall time")
    p.add_argument("--lw-cli", action="store_true", help="lightweight-gan at its CLI's sizes (attention at 32 px)")
    p.add_argument("--skip-speed", action="store_true", help="only the default fine-tune's wall time")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(0)  # lightweight-gan's quadrant choice uses the random module
    torch.manual_seed(0)
    from msgen.data import load_image_set

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = image_folder(args.images, tmp)
        print(f"CPU, {args.threads} torch threads, batch {args.batch}, mean of {args.steps} msgen and "
              f"{args.lw_steps} lightweight-gan steps after one warm-up; "
              f"{len(list(folder.iterdir()))} images from {folder.name}")
        if not args.skip_speed:
            print("| px | msgen images/s | lightweight-gan images/s | ratio | msgen params (G+D) | "
                  "lightweight-gan params |")
            print("| --- | --- | --- | --- | --- | --- |")
        for res in () if args.skip_speed else (32, 64):
            real = (load_image_set(folder, res).images + 1) / 2  # [0, 1], lightweight-gan's range
            ours, our_params = msgen_step(res, args.batch, real)
            theirs, their_params = lightweight_gan_step(res, args.batch, real, attention=args.lw_cli)
            a = args.batch / timed(ours, args.steps)
            b = args.batch / timed(theirs, args.lw_steps)
            print(f"| {res} | {a:.1f} | {b:.1f} | {a / b:.2f} | {our_params / 1e6:.2f} M "
                  f"| {their_params / 1e6:.2f} M |")
        if not args.skip_full:
            wall, label, steps, batch, threads = default_finetune(folder, tmp)
            print(f"\ndefault fine-tune as the Train tab runs it ({label}, {steps} steps x batch {batch}, "
                  f"{threads} torch thread(s), SWD before/after, checkpoints): {wall:.0f} s wall, "
                  f"{steps * batch / wall:.1f} images/s overall")
        print("\nlightweight-gan cannot train on a CPU through its own Trainer: it asserts CUDA at import and "
              "moves the models and every batch to cuda:0.")


if __name__ == "__main__":
    main()
