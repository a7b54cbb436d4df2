#!/bin/bash
# lever: subset size for the D̂NR claims. The cpu run's standard model (whitened) inverts the first 5,000 training
# images instead of 2,000 (cpu-scale inversion settings); verified by the cpu run's verifier (airbench w16 with
# whitening, 40 epochs), 3 seeds, against standard training on the first 5,000 images of D (run_robust_levers.sh, dr5k)
set -x
cd /tmp/wexp/main
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"; C=/tmp/snap2/main/runs/reproduce_cpu; O=$C/datasets; R=runs/dnr5k; mkdir -p $R
V="recipes/fast/verify.yaml $S source.limit=5000 source.test_limit=1000 model.width=16 train.batch_size=256 train.epochs=40 airbench.label_smoothing=0.0 eval.extra_eps=[]"
P="datasets.d_robust.path=runs/dr5k/d_robust datasets.d_rand.path=$O/d_rand datasets.d_det.path=$O/d_det datasets.d_det_leak.path=$O/d_det datasets.d_rand_leak.path=$O/d_rand datasets.d_det_npy.path=$O/d_det datasets.d_rand_npy.path=$O/d_rand"
date
$A generate recipes/fast/d_nonrobust.yaml $S model.train_recipe=null model.checkpoint=$C/models/standard_model.safetensors \
   source.limit=5000 batch_size=250 output.shard_size=250 output.dir=$R/d_nonrobust
date
[ -f $R/verify/report.json ] || $A verify $V --only d_nonrobust name=dnr5k report_dir=$R/verify "seeds=[0,1,2]" $P datasets.d_nonrobust.path=$R/d_nonrobust
date
echo ALLDONE_11
