#!/bin/bash
# after run_source40.sh: D̂rand / D̂det from the 40-epoch source without whitening (plain CE), cpu-scale settings, 3 seeds
set -x
cd /tmp/wexp/main
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"; R=runs/nwls0_e40; O=/tmp/snap2/main/runs/reproduce_cpu/datasets
for d in d_det d_rand; do
  $A generate recipes/fast/$d.yaml $S model.train_recipe=null model.checkpoint=$R/standard_model.safetensors \
     source.limit=2000 batch_size=250 output.shard_size=250 output.dir=$R/$d
done
V="recipes/fast/verify.yaml $S source.limit=2000 source.test_limit=1000 model.width=16 train.batch_size=256 train.epochs=40 airbench.label_smoothing=0.0 eval.extra_eps=[]"
P="datasets.d_robust.path=$O/d_robust datasets.d_nonrobust.path=$O/d_nonrobust datasets.d_det_leak.path=$O/d_det datasets.d_rand_leak.path=$O/d_rand datasets.d_det_npy.path=$O/d_det datasets.d_rand_npy.path=$O/d_rand"
$A verify $V --only d_det,d_rand name=nwls0_e40_source report_dir=$R/verify_source "seeds=[0,1,2]" $P \
   datasets.d_det.path=$R/d_det datasets.d_rand.path=$R/d_rand
echo ALLDONE_S
