#!/usr/bin/env bash
# Rebuild everything shipped under safetune/assets from seeds (about 110 minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
safetune pretrain-shapes --out runs/shapes-sd --seed 0 --vae-steps 1200 --unet-steps 6000
# the never-trained reference: same seed, pool and budget, no star image or word, the VAE above reused
safetune pretrain-shapes --out runs/shapes-sd-nostar --seed 0 --unet-steps 6000 --exclude-harmful --vae-from runs/shapes-sd
# its further pretrainings, the reference's training seeds 1 and 2 in a study (reference_pretrainings)
for seed in 1 2; do
  safetune pretrain-shapes --out runs/shapes-sd-nostar-seed$seed --seed $seed --unet-steps 6000 --exclude-harmful \
    --vae-from runs/shapes-sd
done
safetune train-detector --out runs/shapes-detector --seed 0 --steps 2000
safetune world prompts --out runs/prompts
rm -rf safetune/assets/shapes-sd safetune/assets/shapes-sd-nostar* safetune/assets/shapes-detector safetune/assets/prompts
cp -r runs/shapes-sd safetune/assets/shapes-sd
cp -r runs/shapes-sd-nostar safetune/assets/shapes-sd-nostar
for seed in 1 2; do cp -r runs/shapes-sd-nostar-seed$seed safetune/assets/shapes-sd-nostar-seed$seed; done
cp -r runs/shapes-detector safetune/assets/shapes-detector
cp -r runs/prompts safetune/assets/prompts
