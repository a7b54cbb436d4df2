#!/bin/bash
# lever: the cpu run's D, D̂R and D̂NR verified by airbench w16 WITHOUT its whitening front end, 3 seeds
set -x
cd /tmp/wexp/main
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"; R=runs/vnw; O=/tmp/snap2/main/runs/reproduce_cpu/datasets
V="recipes/fast/verify.yaml $S source.limit=2000 source.test_limit=1000 model.width=16 train.batch_size=256 train.epochs=40 airbench.label_smoothing=0.0 eval.extra_eps=[]"
P="datasets.d_robust.path=$O/d_robust datasets.d_nonrobust.path=$O/d_nonrobust datasets.d_rand.path=$O/d_rand datasets.d_det.path=$O/d_det datasets.d_det_leak.path=$O/d_det datasets.d_rand_leak.path=$O/d_rand datasets.d_det_npy.path=$O/d_det datasets.d_rand_npy.path=$O/d_rand"
$A verify $V --only baseline_std,d_robust,d_nonrobust name=vnw_dr_dnr report_dir=$R/verify "seeds=[0,1,2]" $P airbench.whiten=false
echo ALLDONE_B
