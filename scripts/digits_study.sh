#!/usr/bin/env bash
# The digits study: every number of the "Digits study" in the verification report, reproduced.
# Each block is independent once its datasets exist; outputs go to runs/study/ (git-ignored).
# Cost on 2 shared CPU cores (measured with OMP_NUM_THREADS=1, which is 2-3x faster than torch's
# default 2 threads when the cores are shared): one inversion set ~5-12 min, one small-CNN model
# 15-60 s, one adversarially trained model 2-3 min; the whole script ~3 h.
#
#   bash scripts/digits_study.sh            # or copy one block
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} TQDM_DISABLE=1
S=runs/study
mkdir -p $S

# -- the four datasets with the shipped generation recipes (source models trained and cached once) --
advgen generate recipes/digits_det.yaml            # -> runs/digits_det  (targeted PGD, eps 1.4)
advgen generate recipes/digits_rand.yaml           # -> runs/digits_rand
advgen generate recipes/digits_robust.yaml         # -> runs/digits_robust (D̂R, x0 = another train image)
advgen generate recipes/digits_nonrobust.yaml      # -> runs/digits_nonrobust (D̂NR)
# the same two recipes into $S (byte-identical: generation does not depend on output.dir)
advgen generate recipes/digits_robust.yaml    output.dir=$S/robust_base
advgen generate recipes/digits_nonrobust.yaml output.dir=$S/nonrobust_base

# -- 1. the main table, as shipped: six sets x 10 seeds, robust accuracy at eps 0.75 (+ 0.25, 0.5, 1.0) --
advgen verify recipes/verify_digits_study.yaml      # -> reports/verify_digits_study

# -- 1a. first pass: 3 seeds, eps 0.5 checked (D̂R below D there), then 10 seeds of the three close sets at 0.75 --
advgen verify recipes/verify_digits_study.yaml report_dir=$S/v_study_base eval.eps=0.5 "eval.extra_eps=[0.25, 0.75, 1.0]" \
    "seeds=[0, 1, 2]" datasets.d_robust.path=$S/robust_base datasets.d_nonrobust.path=$S/nonrobust_base || true
advgen verify recipes/verify_digits_study.yaml --only baseline_std,d_robust,d_nonrobust report_dir=$S/v_eps075_10seeds \
    "eval.extra_eps=[0.5, 1.0]" datasets.d_robust.path=$S/robust_base datasets.d_nonrobust.path=$S/nonrobust_base || true

# -- 2. PNG (uint8) vs float32 (npy) copies of D̂det / D̂rand, 5 seeds --
advgen verify recipes/verify_digits_uint8.yaml report_dir=$S/uint8

# -- 3. lever: augmentation (1-pixel random shifts) when training, for D and D̂R / D̂NR alike (eps 0.5, 3 seeds) --
advgen verify recipes/verify_digits_study.yaml --only baseline_std,d_robust,d_nonrobust report_dir=$S/v_aug1 \
    eval.eps=0.5 "eval.extra_eps=[1.0]" "seeds=[0, 1, 2]" \
    datasets.d_robust.path=$S/robust_base datasets.d_nonrobust.path=$S/nonrobust_base \
    "train.augment={crop_padding: 1}" || true

# -- 4. lever: x0 rule = uniform noise (the paper's Appendix D.1) for both D̂R and D̂NR --
advgen generate recipes/digits_robust.yaml    output.dir=$S/robust_noise    attack.x0=noise
advgen generate recipes/digits_nonrobust.yaml output.dir=$S/nonrobust_noise attack.x0=noise
advgen verify recipes/verify_digits_study.yaml --only d_robust,d_nonrobust report_dir=$S/v_noise \
    eval.eps=0.5 "eval.extra_eps=[1.0]" "seeds=[0, 1, 2]" datasets.d_robust.path=$S/robust_noise datasets.d_nonrobust.path=$S/nonrobust_noise || true

# -- 5. lever: the robust source model: eps 1.5 (collapses), and eps 1.0 trained twice as long --
advgen train recipes/digits_robust_model.yaml train.adversarial.eps=1.5 train.adversarial.step_size=0.375 \
    checkpoint=$S/robust_model_eps1.5.safetensors
advgen train recipes/digits_robust_model.yaml train.adversarial.eps=1.5 train.adversarial.step_size=0.375 \
    train.lr=0.0003 train.epochs=40 checkpoint=$S/robust_model_eps1.5_lr3e-4.safetensors
advgen train recipes/digits_robust_model.yaml train.epochs=60 checkpoint=$S/robust_model_60ep.safetensors
advgen generate recipes/digits_robust.yaml output.dir=$S/robust_60ep "model={checkpoint: $S/robust_model_60ep.safetensors}"
advgen verify recipes/verify_digits_study.yaml --only d_robust report_dir=$S/v_robust_60ep \
    eval.eps=0.5 "eval.extra_eps=[1.0]" "seeds=[0, 1, 2]" datasets.d_robust.path=$S/robust_60ep || true

# -- 6. the adversarial baseline: without a random start 1 seed in 10 collapses (first shipped-study run),
#       with it none does (seed 4 stalls at 78% clean); eps 1.5 collapses either way --
advgen verify recipes/verify_digits_study.yaml --only baseline_adv report_dir=$S/adv_norandom_10seeds \
    "datasets.baseline_adv.adversarial.random_start=false" || true
advgen verify recipes/verify_digits_study.yaml --only baseline_adv report_dir=$S/adv_rs_10seeds
advgen train recipes/digits_robust_model.yaml train.adversarial.eps=1.5 train.adversarial.step_size=0.375 \
    train.adversarial.random_start=true checkpoint=$S/robust_model_eps1.5_rs.safetensors

# -- 7. lever: the robust source model trained with random starts, and a wider one (width 64); 10 seeds each --
advgen train recipes/digits_robust_model.yaml train.adversarial.random_start=true checkpoint=$S/robust_rs.safetensors
advgen generate recipes/digits_robust.yaml output.dir=$S/robust_rs "model={checkpoint: $S/robust_rs.safetensors}"
advgen verify recipes/verify_digits_study.yaml --only d_robust report_dir=results/digits_robust_rs \
    "eval.extra_eps=[0.5, 1.0]" datasets.d_robust.path=$S/robust_rs
advgen train recipes/digits_robust_model.yaml model.width=64 train.adversarial.random_start=true \
    checkpoint=$S/robust_w64.safetensors
advgen generate recipes/digits_robust.yaml output.dir=$S/robust_w64 "model={checkpoint: $S/robust_w64.safetensors}"
advgen verify recipes/verify_digits_study.yaml --only d_robust report_dir=results/digits_robust_w64 \
    "eval.extra_eps=[0.5, 1.0]" datasets.d_robust.path=$S/robust_w64

# -- 8. lever: a robust source model trained at eps 0.5 (99% clean, 81% at 0.5), and the normalised inversion loss --
advgen train recipes/digits_robust_model.yaml train.adversarial.eps=0.5 train.adversarial.step_size=0.125 \
    train.adversarial.random_start=true checkpoint=$S/robust_e05.safetensors
advgen generate recipes/digits_robust.yaml output.dir=$S/robust_e05 "model={checkpoint: $S/robust_e05.safetensors}"
advgen verify recipes/verify_digits_study.yaml --only d_robust report_dir=results/digits_robust_e05 \
    "eval.extra_eps=[0.5, 1.0]" datasets.d_robust.path=$S/robust_e05
advgen generate recipes/digits_robust.yaml output.dir=$S/robust_norm attack.normalize_loss=true
advgen verify recipes/verify_digits_study.yaml --only d_robust report_dir=results/digits_robust_norm \
    "eval.extra_eps=[0.5, 1.0]" datasets.d_robust.path=$S/robust_norm

# -- the README block from the reports --
advgen report reports/verify_digits_study $S/uint8
