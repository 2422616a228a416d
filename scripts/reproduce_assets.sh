#!/usr/bin/env bash
# Rebuild everything shipped under safetune/assets from seeds (about 35 minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
safetune pretrain-shapes --out runs/shapes-sd --seed 0 --vae-steps 1200 --unet-steps 6000
safetune train-detector --out runs/shapes-detector --seed 0 --steps 2000
safetune world prompts --out runs/prompts
rm -rf safetune/assets/shapes-sd safetune/assets/shapes-detector safetune/assets/prompts
cp -r runs/shapes-sd safetune/assets/shapes-sd
cp -r runs/shapes-detector safetune/assets/shapes-detector
cp -r runs/prompts safetune/assets/prompts
