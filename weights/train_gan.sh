#!/usr/bin/env bash
# The exact commands that trained the shipped multi-scale GAN models. Data sets come from Debian
# packages through the project's own builders:
#   python -m msgen data sprites --out data/sprites
#   python -m msgen data emoji   --out data/emoji
#   python -m msgen data fashion --out data/fashion --limit 20000
# DATA may hold the folders or zips of them; RUNS is where the runs (and resumable state) go; a
# run folder resumes where it stopped when its command is given again.
#
# fashion32 was retrained on our 2-core CPU after the mapping network's init was fixed (He init:
# with torch's default init every GAN here collapsed; README, "Why the GANs collapsed"): the
# default config, batch 32, 8000 steps, 2 threads, 72 minutes.
# sprites32 and emoji64 are still the first GPU runs (torch's init; retraining them is open).
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
pick() { if [ -e "$DATA/$1.zip" ]; then echo "$DATA/$1.zip"; else echo "$DATA/$1"; fi; }
only=${1:-all}  # fashion32, gpu (sprites32 and emoji64) or all

if [ "$only" = fashion32 ] || [ "$only" = all ]; then
python -m msgen train --family msggan --data "$(pick fashion)" --out "$RUNS/fashion32" --resolution 32 \
  --steps 8000 --batch 32 --r1 0.5 --ema-half-life 10000 --sample-every 500 --checkpoint-every 250 \
  --max-files 25000 --threads 2 --seed 0 --background black --title "fashion32: Fashion-MNIST" \
  --dataset "Fashion-MNIST training images (Debian dataset-fashion-mnist), 28x28 padded to 32x32" \
  --dataset-short "Fashion-MNIST" --license mit --data-license "MIT"
fi

if [ "$only" = gpu ] || [ "$only" = all ]; then
# One GPU, the two in parallel (trained before the mapping network's init was fixed).
STEPS=${STEPS:-8000}
G='"channel_base": 2048, "channel_max": 192, "d_channel_base": 2048, "d_channel_max": 128'
common=(--family msggan --steps "$STEPS" --batch 64 --r1 0.5 --ema-half-life 10000
        --sample-every 1000 --checkpoint-every 500 --max-files 25000 --seed 0)
python -m msgen train --data "$(pick sprites)" --out "$RUNS/sprites32" --resolution 32 --config "{$G}" "${common[@]}" \
  --background black --title "sprites32: Dungeon Crawl sprites" \
  --dataset "Dungeon Crawl Stone Soup tiles (Debian crawl-tiles-data), 32x32 cells" --dataset-short "Dungeon Crawl sprites" \
  --license cc0-1.0 --data-license "CC0-1.0" &
python -m msgen train --data "$(pick emoji)" --out "$RUNS/emoji64" --resolution 64 --config "{$G}" "${common[@]}" \
  --title "emoji64: Noto colour emoji" \
  --dataset "Noto Color Emoji glyphs (Debian fonts-noto-color-emoji), 64x64 on white" --dataset-short "Noto emoji" \
  --license apache-2.0 --data-license "OFL-1.1 (font) / Apache-2.0 (images)" &
wait
fi
