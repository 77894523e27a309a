#!/usr/bin/env bash
# The exact command that trained the shipped next-scale autoregressive model (fashion32-var), on the
# same Debian-built Fashion-MNIST set as weights/train_gan.sh and weights/train_hvae.sh:
#   python -m msgen data fashion --out "$DATA/fashion" --limit 20000
# One run trains both stages (VARRecipe): the tokenizer for the first 35% of the steps (560 of 1600),
# then the transformer. The same command towards 3000 steps then resumed the run for more
# transformer steps (once the transformer has been updated it stays the stage, so the tokenizer is
# not touched again). It ran niced on one thread of our shared 2-core CPU machine; rerunning a
# command resumes from the run's last checkpoint.
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
train() {
python -m msgen train --family var --data "$DATA/fashion" --out "$RUNS/fashion32-var" --resolution 32 --background black \
  --steps "$1" --batch 24 --lr 1e-3 --augment none --ema-half-life 2000 --sample-every 200 \
  --checkpoint-every 100 --max-files 25000 --threads 1 --seed 0 --title "fashion32-var: Fashion-MNIST" \
  --dataset "Fashion-MNIST training images (Debian dataset-fashion-mnist), 28x28 padded to 32x32" \
  --dataset-short "Fashion-MNIST" --license mit --data-license "MIT" --description "$DESCRIPTION"
}
DESCRIPTION="Next-scale autoregressive model (VAR, Tian et al. 2024) on Fashion-MNIST: a multi-scale residual VQ \
tokenizer (scales 1, 2, 3, 4, 6, 8 on an 8x8 grid, 128 codes) and a 4-layer, 128-wide transformer with block-causal \
attention over scales, trained on the CPU by weights/train_var.sh: 1600 steps (tokenizer 560, transformer 1040), \
then resumed to 3000 steps (transformer only)."
train 1600
train 3000
