#!/usr/bin/env bash
# The exact commands that trained the shipped multi-scale GAN models (run on one GPU, the three
# in parallel). Data sets come from Debian packages through the project's own builders:
#   python -m msgen data sprites --out data/sprites
#   python -m msgen data emoji   --out data/emoji
#   python -m msgen data fashion --out data/fashion --limit 20000
# DATA may hold the folders or zips of them; RUNS is where the runs (and resumable state) go.
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
STEPS=${STEPS:-8000}
G='"channel_base": 2048, "channel_max": 192, "d_channel_base": 2048, "d_channel_max": 128'
common=(--family msggan --steps "$STEPS" --batch 64 --r1 0.5 --ema-half-life 10000
        --sample-every 1000 --checkpoint-every 500 --max-files 25000 --seed 0)
pick() { if [ -e "$DATA/$1.zip" ]; then echo "$DATA/$1.zip"; else echo "$DATA/$1"; fi; }

python -m msgen train --data "$(pick sprites)" --out "$RUNS/sprites32" --resolution 32 --config "{$G}" "${common[@]}" \
  --background black --title "sprites32: Dungeon Crawl sprites" \
  --dataset "Dungeon Crawl Stone Soup tiles (Debian crawl-tiles-data), 32x32 cells" --dataset-short "Dungeon Crawl sprites" \
  --license cc0-1.0 --data-license "CC0-1.0" &
python -m msgen train --data "$(pick emoji)" --out "$RUNS/emoji64" --resolution 64 --config "{$G}" "${common[@]}" \
  --title "emoji64: Noto colour emoji" \
  --dataset "Noto Color Emoji glyphs (Debian fonts-noto-color-emoji), 64x64 on white" --dataset-short "Noto emoji" \
  --license apache-2.0 --data-license "OFL-1.1 (font) / Apache-2.0 (images)" &
python -m msgen train --data "$(pick fashion)" --out "$RUNS/fashion32" --resolution 32 --config "{$G}" "${common[@]}" \
  --background black --title "fashion32: Fashion-MNIST" \
  --dataset "Fashion-MNIST training images (Debian dataset-fashion-mnist), 28x28 padded to 32x32" \
  --dataset-short "Fashion-MNIST" --license mit --data-license "MIT" &
wait
