#!/bin/bash
# levers, in order: (a) the cpu run's robust model (whitened) trained at l2 eps 1.0 instead of 0.5; (b) subset
# size: D̂R of the first 5,000 images from the cpu run's robust model against D of 5,000; (c) the robust source
# without whitening trained 20 epochs instead of 10. D̂R inverted with the cpu-scale settings; verifiers: the cpu
# run's (airbench w16 with whitening, 40 epochs) and, for (a), (c), the same without whitening; 3 seeds each
# (as it ran; (c) was stopped during its training to give the CPU time to run_dnr5k.sh, so it has no results)
set -x
cd /tmp/wexp/main
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"; C=/tmp/snap2/main/runs/reproduce_cpu; O=$C/datasets
V="recipes/fast/verify.yaml $S source.test_limit=1000 model.width=16 train.batch_size=256 train.epochs=40 airbench.label_smoothing=0.0 eval.extra_eps=[]"
P="datasets.d_nonrobust.path=$O/d_nonrobust datasets.d_rand.path=$O/d_rand datasets.d_det.path=$O/d_det datasets.d_det_leak.path=$O/d_det datasets.d_rand_leak.path=$O/d_rand datasets.d_det_npy.path=$O/d_det datasets.d_rand_npy.path=$O/d_rand"
lever() {  # name eps step epochs whiten
  R=runs/$1; mkdir -p $R; date
  [ -f $R/robust_model.safetensors ] || $A train recipes/fast/robust_model.yaml $S model.width=16 source.test_limit=2000 train.batch_size=512 \
     train.epochs=$4 "train.adversarial={kind: pgd, norm: l2, eps: $2, step_size: $3, steps: 3, random_start: false}" \
     airbench.whiten=$5 name=$1_robust_model checkpoint=$R/robust_model.safetensors
  date
  $A generate recipes/fast/d_robust.yaml $S model.train_recipe=null model.checkpoint=$R/robust_model.safetensors \
     source.limit=2000 batch_size=250 output.shard_size=250 output.dir=$R/d_robust
  date
  [ -f $R/verify/report.json ] || $A verify $V source.limit=2000 --only d_robust name=$1_dr report_dir=$R/verify "seeds=[0,1,2]" $P datasets.d_robust.path=$R/d_robust
  [ -f $R/verify_vnw/report.json ] || $A verify $V source.limit=2000 --only d_robust name=$1_dr_vnw report_dir=$R/verify_vnw "seeds=[0,1,2]" $P datasets.d_robust.path=$R/d_robust airbench.whiten=false
  date
}
lever rw_eps1 1.0 0.8333 10 true
R=runs/dr5k; mkdir -p $R; date
$A generate recipes/fast/d_robust.yaml $S model.train_recipe=null model.checkpoint=$C/models/robust_model.safetensors \
   source.limit=5000 batch_size=250 output.shard_size=250 output.dir=$R/d_robust
date
[ -f $R/verify/report.json ] || $A verify $V source.limit=5000 --only baseline_std,d_robust name=dr5k report_dir=$R/verify "seeds=[0,1,2]" $P datasets.d_robust.path=$R/d_robust
date
lever rnw_e20 0.5 0.4167 20 false
echo ALLDONE_10
