"""The one place that picks a torch device: "auto" is CUDA, then Apple's MPS, then the CPU.

Training (``msgen.train``), the model cache (``msgen.zoo``) and the metrics' feature network
(``msgen.metrics``) all ask here, so "auto" means the same device everywhere.
"""

from __future__ import annotations

import os

import torch


def pick_device(name: str | torch.device = "auto") -> torch.device:
    if str(name) != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (Intel AMX tiles). There oneDNN runs
    the parts that ``Family.serving`` names in bfloat16 1.3-1.4x as fast as in float32 on one
    thread, batch 1 (bench/generate.py --only-cpu-serving); elsewhere bfloat16 is emulated and slower.
    ``MSGEN_CPU_BF16=0`` turns its use off, ``MSGEN_CPU_BF16=1`` on."""
    env = os.environ.get("MSGEN_CPU_BF16", "").strip()
    if env in ("0", "1"):
        return env == "1"
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch's own check; private, so guarded
    try:
        return bool(probe()) if probe is not None and torch.backends.mkldnn.is_available() else False
    except Exception:  # noqa: BLE001 - a probe that fails means no
        return False
