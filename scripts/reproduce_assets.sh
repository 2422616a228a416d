#!/usr/bin/env bash
# Rebuild everything shipped under safetune/assets from seeds (about 70 minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
safetune pretrain-shapes --out runs/shapes-sd --seed 0 --vae-steps 1200 --unet-steps 6000
# the never-trained reference: same seed, pool and budget, no star image or word, the VAE above reused
safetune pretrain-shapes --out runs/shapes-sd-nostar --seed 0 --unet-steps 6000 --exclude-harmful --vae-from runs/shapes-sd
safetune train-detector --out runs/shapes-detector --seed 0 --steps 2000
safetune world prompts --out runs/prompts
rm -rf safetune/assets/shapes-sd safetune/assets/shapes-sd-nostar safetune/assets/shapes-detector safetune/assets/prompts
cp -r runs/shapes-sd safetune/assets/shapes-sd
cp -r runs/shapes-sd-nostar safetune/assets/shapes-sd-nostar
cp -r runs/shapes-detector safetune/assets/shapes-detector
cp -r runs/prompts safetune/assets/prompts
