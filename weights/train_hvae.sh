#!/usr/bin/env bash
# The exact commands that trained the shipped hierarchical VAE models, on the same Debian-built
# data sets as weights/train_gan.sh. They ran on our 2-core CPU machine, one after the other
# (emoji64-hvae 44 min, fashion32-hvae 30 min); a GPU runs them in minutes.
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
STEPS=${STEPS:-8000}
common=(--family hvae --steps "$STEPS" --batch 16 --lr 5e-4 --augment none --sample-every 500
        --checkpoint-every 500 --max-files 25000 --seed 0)
# Two residual blocks per level, a global latent for whole-picture traits, beta 2 so that the prior
# samples cleanly at temperature 1 (see HVAEConfig for each field).
cfg() { echo "{\"blocks_per_level\": 2, \"z_global\": $1, \"beta\": 2.0, \"min_sigma\": 0.25, \"kl_warmup_steps\": 1000}"; }

python -m msgen train --data "$DATA/emoji" --out "$RUNS/emoji64-hvae" --resolution 64 \
  --config "$(cfg 64)" "${common[@]}" --title "emoji64-hvae: Noto colour emoji" \
  --dataset "Noto Color Emoji glyphs (Debian fonts-noto-color-emoji), 64x64 on white" --dataset-short "Noto emoji" \
  --license apache-2.0 --data-license "OFL-1.1 (font) / Apache-2.0 (images)"
python -m msgen train --data "$DATA/fashion" --out "$RUNS/fashion32-hvae" --resolution 32 --background black \
  --config "$(cfg 32)" "${common[@]}" --title "fashion32-hvae: Fashion-MNIST" \
  --dataset "Fashion-MNIST training images (Debian dataset-fashion-mnist), 28x28 padded to 32x32" \
  --dataset-short "Fashion-MNIST" --license mit --data-license "MIT"
