"""The one place that picks a torch device: "auto" is CUDA, then Apple's MPS, then the CPU.

Training (``msgen.train``), the model cache (``msgen.zoo``) and the metrics' feature network
(``msgen.metrics``) all ask here, so "auto" means the same device everywhere.
"""

from __future__ import annotations

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
