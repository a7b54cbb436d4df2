#!/bin/bash
# A wider (w32) airbench standard source without whitening: accurate and non-robust enough for eps 0.5?
set -x
cd /tmp/wexp/main
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"; R=runs/nw32; O=/tmp/snap2/main/runs/reproduce_cpu/datasets
[ -f $R/standard_model.safetensors ] || $A train recipes/fast/standard_model.yaml $S model.width=32 source.test_limit=2000 train.batch_size=512 \
   airbench.whiten=false name=nowhiten_w32_standard_model checkpoint=$R/standard_model.safetensors
for d in d_rand d_det; do
  $A generate recipes/fast/$d.yaml $S model.train_recipe=null model.checkpoint=$R/standard_model.safetensors \
     source.limit=2000 batch_size=250 output.shard_size=250 output.dir=$R/$d
done
V="recipes/fast/verify.yaml $S source.limit=2000 source.test_limit=1000 model.width=16 train.batch_size=256 train.epochs=40 airbench.label_smoothing=0.0 eval.extra_eps=[]"
P="datasets.d_robust.path=$O/d_robust datasets.d_nonrobust.path=$O/d_nonrobust datasets.d_det_leak.path=$O/d_det datasets.d_rand_leak.path=$O/d_rand datasets.d_det_npy.path=$O/d_det datasets.d_rand_npy.path=$O/d_rand"
$A verify $V --only d_rand,d_det name=nw32_source report_dir=$R/verify_source "seeds=[0,1,2]" $P \
   datasets.d_det.path=$R/d_det datasets.d_rand.path=$R/d_rand
echo ALLDONE4
