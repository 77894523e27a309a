#!/usr/bin/env bash
# The exact commands that trained the shipped hierarchical VAE models, on the same Debian-built
# data sets as weights/train_gan.sh. They ran on our 2-core CPU machine, one after the other
# (emoji64-hvae 44 min and 68 more, fashion32-hvae 30 min); a GPU runs them in minutes.
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
STEPS=${STEPS:-8000}
# (They ran when beta, min_sigma and kl_warmup_steps were config fields and --augment none was given;
# a VAE never augments, and those settings are HVAEOptions flags now: the same run.)
common=(--family hvae --steps "$STEPS" --batch 16 --lr 5e-4 --sample-every 500
        --checkpoint-every 500 --max-files 25000 --seed 0 --beta 2.0 --min-sigma 0.25 --kl-warmup-steps 1000)
# Two residual blocks per level, a global latent for whole-picture traits (HVAEConfig), beta 2 so
# that the prior samples cleanly at temperature 1 (HVAEOptions).
cfg() { echo "{\"blocks_per_level\": 2, \"z_global\": $1}"; }

python -m msgen train --data "$DATA/emoji" --out "$RUNS/emoji64-hvae" --resolution 64 \
  --config "$(cfg 64)" "${common[@]}" --title "emoji64-hvae: Noto colour emoji" \
  --dataset "Noto Color Emoji glyphs (Debian fonts-noto-color-emoji), 64x64 on white" --dataset-short "Noto emoji" \
  --license apache-2.0 --data-license "OFL-1.1 (font) / Apache-2.0 (images)"
# emoji64-hvae as shipped: the run above trained on for 8000 more steps from its own weights, the KL
# term at full weight from the first step (the 16,000-step model; 68 more minutes on our 2-core CPU).
# Its Decompose "vary detail" variants at 16x16 keep their picture and their sharpness (README).
python -m msgen train --data "$DATA/emoji" --out "$RUNS/emoji64-hvae-16k" --model "$RUNS/emoji64-hvae" --resolution 64 \
  --steps 8000 --batch 16 --lr 5e-4 --beta 2.0 --min-sigma 0.25 --kl-warmup-steps 0 --sample-every 1000 \
  --checkpoint-every 500 --max-files 25000 --seed 1 --threads 2 --title "emoji64-hvae: Noto colour emoji" \
  --dataset "Noto Color Emoji glyphs (Debian fonts-noto-color-emoji), 64x64 on white" --dataset-short "Noto emoji" \
  --license apache-2.0 --data-license "OFL-1.1 (font) / Apache-2.0 (images)"
python -m msgen train --data "$DATA/fashion" --out "$RUNS/fashion32-hvae" --resolution 32 --background black \
  --config "$(cfg 32)" "${common[@]}" --title "fashion32-hvae: Fashion-MNIST" \
  --dataset "Fashion-MNIST training images (Debian dataset-fashion-mnist), 28x28 padded to 32x32" \
  --dataset-short "Fashion-MNIST" --license mit --data-license "MIT"
