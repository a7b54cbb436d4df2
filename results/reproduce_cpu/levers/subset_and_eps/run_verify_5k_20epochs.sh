#!/bin/bash
# lever: can a 5,000-image cpu scale keep its verification time? The 5k sets of run_robust_levers.sh (dr5k) and
# run_dnr5k.sh verified with 20 epochs instead of 40 (the same number of steps as 40 epochs of 2,000 images),
# cpu run's verifier otherwise, 3 seeds
while ! grep -q ALLDONE_11 /tmp/wexp/run11.log; do sleep 20; done
set -x
cd /tmp/wexp/main
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"; C=/tmp/snap2/main/runs/reproduce_cpu; O=$C/datasets; R=runs/v5k_e20
V="recipes/fast/verify.yaml $S source.limit=5000 source.test_limit=1000 model.width=16 train.batch_size=256 train.epochs=20 airbench.label_smoothing=0.0 eval.extra_eps=[]"
P="datasets.d_robust.path=runs/dr5k/d_robust datasets.d_nonrobust.path=runs/dnr5k/d_nonrobust datasets.d_rand.path=$O/d_rand datasets.d_det.path=$O/d_det datasets.d_det_leak.path=$O/d_det datasets.d_rand_leak.path=$O/d_rand datasets.d_det_npy.path=$O/d_det datasets.d_rand_npy.path=$O/d_rand"
date
$A verify $V --only baseline_std,d_robust,d_nonrobust name=v5k_e20 report_dir=$R/verify "seeds=[0,1,2]" $P
date
echo ALLDONE_12
