#!/usr/bin/env bash
# The exact commands that trained the shipped hierarchical VAE models (one GPU, both in parallel),
# on the same Debian-built data sets as weights/train_gan.sh.
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
STEPS=${STEPS:-4000}
common=(--family hvae --steps "$STEPS" --batch 64 --lr 5e-4 --augment none --sample-every 500
        --checkpoint-every 250 --max-files 25000 --seed 0)
pick() { if [ -e "$DATA/$1.zip" ]; then echo "$DATA/$1.zip"; else echo "$DATA/$1"; fi; }

python -m msgen train --data "$(pick fashion)" --out "$RUNS/fashion32-hvae" --resolution 32 \
  --config '{"kl_warmup_steps": 1000}' "${common[@]}" --title "fashion32-hvae: Fashion-MNIST" \
  --dataset "Fashion-MNIST training images (Debian dataset-fashion-mnist), 28x28 padded to 32x32" \
  --dataset-short "Fashion-MNIST" --license mit --data-license "MIT" &
python -m msgen train --data "$(pick emoji)" --out "$RUNS/emoji64-hvae" --resolution 64 \
  --config '{"kl_warmup_steps": 1000}' "${common[@]}" --title "emoji64-hvae: Noto colour emoji" \
  --dataset "Noto Color Emoji glyphs (Debian fonts-noto-color-emoji), 64x64 on white" --dataset-short "Noto emoji" \
  --license apache-2.0 --data-license "OFL-1.1 (font) / Apache-2.0 (images)" &
wait
