#!/bin/bash
# usage: run_exp.sh NAME [overrides...]   (verification-only lever study on the cpu-scale sets)
cd /tmp/snap2/main
R=runs/reproduce_cpu/datasets
name=$1; shift
python -m advgen.cli verify recipes/fast/verify.yaml --only baseline_std,d_robust,d_nonrobust \
  name=exp_$name report_dir=/tmp/exp/$name source.path=../shared/data/cifar10 source.limit=2000 source.test_limit=1000 \
  model.width=16 train.batch_size=256 train.epochs=40 airbench.label_smoothing=0.0 seeds=[0] eval.extra_eps=[] eval.shifted_labels=false \
  datasets.d_robust.path=$R/d_robust datasets.d_nonrobust.path=$R/d_nonrobust datasets.d_det.path=$R/d_det datasets.d_rand.path=$R/d_rand \
  datasets.d_det_npy.path=$R/d_det datasets.d_rand_npy.path=$R/d_rand datasets.d_det_leak.path=$R/d_det datasets.d_rand_leak.path=$R/d_rand \
  "$@" > /tmp/exp/$name.log 2>&1
grep -ao "seed [0-9]: std acc [0-9.]*, robust acc [0-9.]*" /tmp/exp/$name.log | sed "s/^/$name /"
