"""A run's quality report, the same for the Train tab and ``python -m msgen train``.

Before the first step and after the last, samples of the generator are compared with the
training pictures: the per-level Laplacian SWD (Karras et al. 2018; every level, 4x4 included)
and, in EfficientNet-Lite0 features of pictures resized to 128 px, precision / recall / density /
coverage with k = 5 (Naeem et al. 2020) and the near-duplicate share (samples within RMS 0.05 of
another sample). Beside them stands the *floor*: one half of the pictures against the other half,
the best any model can score at this set size. SWD alone does not see a collapse (a few pictures
repeated); coverage and the near-duplicate share do. The report is the run's ``quality.json``
(read and written through ``msgen.run.Run``) and, after the run, rows of the model card.
``train_with_report`` is the one before / train / after sequence the CLI and the Train tab run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from .run import Run

QUALITY_SAMPLES = 256  # cap on images per side of the SWD comparison; keeps it to seconds on a CPU
QUALITY_SEED = 7  # fixed: "before" and "after" read the same patch positions and the same samples
DIVERSITY_SAMPLES = 128  # per side of coverage & co.: Lite0 at 128 px is ~0.07 s an image on one core


def read_quality(run_dir: Path) -> dict[str, Any]:
    """The run's report; {} when it has none (``Run.quality``)."""
    return Run(run_dir).quality()


def _subset(images: torch.Tensor, n: int) -> torch.Tensor:
    n = min(len(images), n)
    return images[torch.linspace(0, len(images) - 1, n).long()] if len(images) > n else images


class QualityReport:
    """Measures and stores one run's report; the real side's features are computed once."""

    def __init__(self, run_dir: str | Path, images: torch.Tensor):
        self.run = Run(run_dir)
        self.run_dir = self.run.path
        self.real = _subset(images, QUALITY_SAMPLES).float()
        self.real_div = _subset(images, DIVERSITY_SAMPLES).float()
        self.quality = self.run.quality()
        self._features: torch.Tensor | None = None

    def needs_before(self) -> bool:
        return "before" not in self.quality

    def measure_before(self, generator: torch.nn.Module) -> dict[str, Any]:
        self.quality["before"] = self.swd(generator)
        self.quality["diversity_before"] = self.diversity(generator)
        self.quality["floor"] = self.floor()
        self._write()
        return self.quality

    def measure_after(self, trainer) -> dict[str, Any]:
        """The "after" figures of ``trainer.G_ema``; re-exports the model so its card carries them."""
        self.quality["after"] = self.swd(trainer.G_ema)
        self.quality["diversity_after"] = self.diversity(trainer.G_ema)
        if "floor" not in self.quality:
            self.quality["floor"] = self.floor()
        self.quality["after_step"] = trainer.step
        self._write()
        trainer.meta["metrics"] = card_metrics(self.quality)
        seed = self.opening_seed(trainer.G_ema)
        if seed is not None:
            trainer.meta["opening_seed"] = seed
        trainer.export()  # weights unchanged; the card gains the report
        return self.quality

    # --- the figures --------------------------------------------------------------------------
    def swd(self, generator: torch.nn.Module) -> dict[str, float]:
        """Per-level SWD of samples vs the pictures; {} if it cannot be measured (the run goes on)."""
        from .metrics import sample_images, swd

        try:
            fake = sample_images(generator, len(self.real), seed=QUALITY_SEED)
            return {str(k): round(float(v), 3) for k, v in swd(self.real, fake, seed=QUALITY_SEED, min_resolution=4).items()}
        except (ValueError, RuntimeError):  # e.g. a family or size the metric does not support
            return {}

    def features(self) -> torch.Tensor:
        from .metrics import diversity_features

        if self._features is None:
            self._features = diversity_features(self.real_div)
        return self._features

    def diversity(self, generator: torch.nn.Module) -> dict[str, float]:
        from .metrics import diversity, sample_images

        try:
            fake = sample_images(generator, len(self.real_div), seed=QUALITY_SEED)
            out = diversity(self.real_div, fake, real_features=self.features())
            return {k: round(float(v), 3) for k, v in out.items()}
        except (ValueError, RuntimeError):  # under k + 2 pictures: prdc is undefined
            return {}

    def opening_seed(self, generator: torch.nn.Module) -> int | None:
        """Where the Generate page opens the model (``msgen.metrics.opening_seed`` against the run's
        pictures); None when it cannot be measured."""
        from .metrics import opening_seed

        try:
            return opening_seed(generator, self.features())
        except (ValueError, RuntimeError):
            return None

    def floor(self) -> dict[str, Any]:
        from .metrics import near_duplicate_share, prdc, swd

        out: dict[str, Any] = {}
        idx = torch.randperm(len(self.real_div), generator=torch.Generator().manual_seed(QUALITY_SEED))
        a, b = idx[: len(idx) // 2], idx[len(idx) // 2: len(idx) // 2 * 2]
        try:
            out["swd"] = {str(k): round(float(v), 3) for k, v in swd(self.real_div[a], self.real_div[b],
                                                                      seed=QUALITY_SEED, min_resolution=4).items()}
        except (ValueError, RuntimeError):
            pass
        try:
            feats = self.features()
            out |= {k: round(float(v), 3) for k, v in prdc(feats[a], feats[b]).items()}
        except (ValueError, RuntimeError):
            pass
        out["near_duplicates"] = round(near_duplicate_share(self.real_div), 3)
        return out

    def _write(self) -> None:
        self.run.write_quality(self.quality)


def train_with_report(trainer, images: torch.Tensor, *, measure: bool = True,
                      note: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """``trainer.train()`` between the report's "before" (a run's first start only) and "after"
    figures; the report, or {} when ``measure`` is False (a rank of a distributed run but the first
    trains without measuring). ``note`` hears what is being measured ("" while training)."""
    report = QualityReport(trainer.run_dir, images) if measure else None
    if report is not None and Run(trainer.run_dir).step() == 0 and report.needs_before():
        note("measuring the starting point (SWD, coverage)")
        report.measure_before(trainer.G_ema)
    note("")
    trainer.train()
    if report is None:
        return {}
    note("measuring the result (SWD, coverage)")
    return report.measure_after(trainer)


def card_metrics(quality: dict[str, Any]) -> dict[str, Any]:
    """The report as rows of the model card's metrics table."""
    out = {}
    if quality.get("before"):
        out["SWD x1e3 before"] = quality["before"]
    if quality.get("after"):
        out[f"SWD x1e3 after (step {quality.get('after_step', '?')})"] = quality["after"]
    for key, label in (("diversity_before", "diversity before"), ("diversity_after", "diversity after"),
                       ("floor", "your pictures, half vs half")):
        figures = {k: v for k, v in (quality.get(key) or {}).items() if k in ("coverage", "near_duplicates")}
        if figures:
            out[f"coverage / near-duplicate share, {label}"] = figures
    return out
