#!/bin/bash
# The whitening-strength lever at the cpu scale: the `cpu` run's w16 standard source (whitening on, label smoothing 0.2)
# with airbench.whiten_eps=EPS (default 5e-4): each patch direction gets gain 1/sqrt(lambda + EPS) instead of
# ~1/sqrt(lambda). D̂det / D̂rand from it (ε 0.5, 100 steps), verified with the cpu verifier over 3 seeds.
set -x
cd /tmp/wexp/main   # a copy of the repository, ../shared beside it
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"; O=/tmp/snap2/main/runs/reproduce_cpu/datasets
for EPS in "$@"; do
R=runs/weps$EPS
[ -f $R/standard_model.safetensors ] || $A train recipes/fast/standard_model.yaml $S model.width=16 source.test_limit=2000 train.batch_size=512 \
   airbench.whiten_eps=$EPS name=whiten_eps${EPS}_standard_model checkpoint=$R/standard_model.safetensors
for d in d_det d_rand; do
  $A generate recipes/fast/$d.yaml $S model.train_recipe=null model.checkpoint=$R/standard_model.safetensors \
     source.limit=2000 batch_size=250 output.shard_size=250 output.dir=$R/$d output.npy=true
done
V="recipes/fast/verify.yaml $S source.limit=2000 source.test_limit=1000 model.width=16 train.batch_size=256 train.epochs=40 airbench.label_smoothing=0.0 eval.extra_eps=[]"
P="datasets.d_robust.path=$O/d_robust datasets.d_nonrobust.path=$O/d_nonrobust datasets.d_det_leak.path=$O/d_det datasets.d_rand_leak.path=$O/d_rand datasets.d_det_npy.path=$O/d_det datasets.d_rand_npy.path=$O/d_rand"
$A verify $V --only d_det,d_rand name=whiten_eps$EPS report_dir=$R/verify "seeds=[0,1,2]" $P \
   datasets.d_det.path=$R/d_det datasets.d_rand.path=$R/d_rand
echo DONE6 $EPS   # run as: run_whiten_eps.sh 0.1
done
echo ALLDONE6
