#!/bin/bash
# after run_ls0.sh: D̂NR inverted from its source (no whitening, plain cross-entropy), cpu-scale settings, 3 seeds
set -x
cd /tmp/wexp/main   # a copy of the repository, ../shared beside it
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"; R=runs/nwls0; O=/tmp/snap2/main/runs/reproduce_cpu/datasets
$A generate recipes/fast/d_nonrobust.yaml $S model.train_recipe=null model.checkpoint=$R/standard_model.safetensors \
   source.limit=2000 batch_size=250 output.shard_size=250 output.dir=$R/d_nonrobust
V="recipes/fast/verify.yaml $S source.limit=2000 source.test_limit=1000 model.width=16 train.batch_size=256 train.epochs=40 airbench.label_smoothing=0.0 eval.extra_eps=[]"
P="datasets.d_robust.path=$O/d_robust datasets.d_rand.path=$O/d_rand datasets.d_det.path=$O/d_det datasets.d_det_leak.path=$O/d_det datasets.d_rand_leak.path=$O/d_rand datasets.d_det_npy.path=$O/d_det datasets.d_rand_npy.path=$O/d_rand"
$A verify $V --only d_nonrobust name=nwls0_dnr report_dir=$R/verify_dnr "seeds=[0,1,2]" $P datasets.d_nonrobust.path=$R/d_nonrobust
echo ALLDONE7
