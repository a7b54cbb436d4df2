#!/bin/bash
# after run.sh: D̂det of the cpu-scale w16 source generated in fp32 instead of bf16 autocast; verified as the cpu scale does
while ! grep -q ALLDONE /tmp/wexp/run.log; do sleep 20; done
set -x
cd /tmp/wexp/main
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"; R=runs/nw; O=/tmp/snap2/main/runs/reproduce_cpu/datasets
$A generate recipes/fast/d_det.yaml $S model.train_recipe=null model.checkpoint=/tmp/snap2/main/runs/reproduce_cpu/models/standard_model.safetensors \
   source.limit=2000 batch_size=250 output.shard_size=250 output.dir=$R/d_det_fp32 precision=fp32
V="recipes/fast/verify.yaml $S source.limit=2000 source.test_limit=1000 model.width=16 train.batch_size=256 train.epochs=40 airbench.label_smoothing=0.0 eval.extra_eps=[]"
P="datasets.d_robust.path=$O/d_robust datasets.d_nonrobust.path=$O/d_nonrobust datasets.d_rand.path=$O/d_rand datasets.d_det_leak.path=$O/d_det datasets.d_rand_leak.path=$O/d_rand datasets.d_det_npy.path=$O/d_det datasets.d_rand_npy.path=$O/d_rand"
$A verify $V --only d_det name=fp32_det report_dir=$R/verify_fp32 "seeds=[0,1,2]" $P datasets.d_det.path=$R/d_det_fp32
echo ALLDONE2
