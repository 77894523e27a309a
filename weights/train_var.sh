#!/usr/bin/env bash
# The exact command that trained the shipped next-scale autoregressive model (fashion32-var), on the
# same Debian-built Fashion-MNIST set as weights/train_gan.sh and weights/train_hvae.sh:
#   python -m msgen data fashion --out "$DATA/fashion" --limit 20000
# One run trains both stages (VARRecipe): the tokenizer for the first 35% of the steps (560 of 1600),
# then the transformer (1040). It ran niced on one thread of our shared 2-core CPU machine (8.5 CPU
# minutes, 37 min of wall time under others' load); rerunning the command resumes from the run's
# last checkpoint, and `train 3000` afterwards would continue the transformer alone (once it has
# been updated it stays the stage, so the tokenizer is not touched again). The card's description
# and metrics were added at export from the figures in the README (python bench/var.py --recon, msgen eval).
# (It ran with --augment none, when every family took the GAN's flags; it augmented nothing, and its
# own settings are VAROptions flags now, spelled out below: the same run.)
# All three models here were trained before var mirrored pictures by default (VAROptions.hflip, now
# 0.5): the commands below add --hflip 0, the run they were (their cards record the command as it was typed).
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
train() {
python -m msgen train --family var --data "$DATA/fashion" --out "$RUNS/fashion32-var" --resolution 32 --background black \
  --steps "$1" --batch 24 --lr 1e-3 --ema-half-life 2000 --sample-every 200 \
  --tokenizer-share 0.35 --beta 0.25 --aux-weight 0.5 --restart-every 25 --lr-warmup-steps 100 --grad-clip 2.0 --hflip 0 \
  --checkpoint-every 100 --max-files 25000 --threads 1 --seed 0 --title "fashion32-var: Fashion-MNIST" \
  --dataset "Fashion-MNIST training images (Debian dataset-fashion-mnist), 28x28 padded to 32x32" \
  --dataset-short "Fashion-MNIST" --license mit --data-license "MIT"
}
train 1600

# broad32-var, the Train tab's default start (msgen.defaults.FINETUNE.base): the broad mix of small
# colour pictures (python -m msgen data broad --out "$DATA/broad": Noto emoji, Crawl tiles, Oxygen and
# nuoveXT icons, every 20th Fashion-MNIST image), a 512-code codebook, both stages in one run (tokenizer
# for the first 40%: 1600 steps, then the transformer: 2400), 2 threads on our shared 2-core CPU, 50 min.
# (The run was started with --steps 8000 and, at its step-200 checkpoint, resumed with --steps 4000:
# both stay in the tokenizer stage to step 1600, and the learning-rate warm-up is per stage.)
train_broad() {
python -m msgen train --family var --data "$DATA/broad" --out "$RUNS/broad32-var" --resolution 32 \
  --config '{"vocab_size": 512}' --steps "$1" --batch 32 --lr 1e-3 --ema-half-life 2000 --sample-every 500 \
  --tokenizer-share 0.4 --hflip 0 --checkpoint-every 200 --max-files 25000 --threads 2 --seed 0 \
  --title "broad32-var: broad mix of small pictures" --dataset-short broad
}
train_broad 4000

# broad64-var, the start for 64 px fine-tunes: the same mix at 64 px (python -m msgen data broad --out
# "$DATA/broad64" --resolution 64: 8,871 pictures, the icon themes from their 64x64 folders), downsample 8
# (the same 8x8 token grid as broad32-var) and the 1x1 to 3x3 scales drawn a token at a time (ar_side 3,
# what every var fine-tune uses), both stages in one run (tokenizer 1600 steps, transformer 2400), 2 threads
# on our 2-core CPU, 17 min. (Its card names the title and data in their final wording.)
train_broad64() {
python -m msgen train --family var --data "$DATA/broad64" --out "$RUNS/broad64-var" --resolution 64 \
  --config '{"vocab_size": 512, "downsample": 8, "ar_side": 3}' --steps "$1" --batch 32 --lr 1e-3 --ema-half-life 2000 \
  --sample-every 500 --tokenizer-share 0.4 --hflip 0 --checkpoint-every 200 --max-files 25000 --threads 2 --seed 0 \
  --title "broad64-var: broad mix of small pictures at 64 px" --dataset-short broad64
}
train_broad64 4000
