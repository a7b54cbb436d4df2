#!/bin/bash
# levers: the robust source's eps and length (both without whitening; otherwise the cpu run's robust model: w16,
# 10 epochs, l2 eps 0.5, 3 steps of 2.5 eps / 3); D̂R inverted from each (cpu-scale settings); verified by the
# cpu run's verifier (airbench w16 with whitening) and by the same verifier without whitening, 3 seeds each
# (as it ran; the second lever, rnw_e20, was stopped after 3 minutes and ran again in run_robust_levers.sh)
set -x
cd /tmp/wexp/main
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"; O=/tmp/snap2/main/runs/reproduce_cpu/datasets
V="recipes/fast/verify.yaml $S source.limit=2000 source.test_limit=1000 model.width=16 train.batch_size=256 train.epochs=40 airbench.label_smoothing=0.0 eval.extra_eps=[]"
P="datasets.d_nonrobust.path=$O/d_nonrobust datasets.d_rand.path=$O/d_rand datasets.d_det.path=$O/d_det datasets.d_det_leak.path=$O/d_det datasets.d_rand_leak.path=$O/d_rand datasets.d_det_npy.path=$O/d_det datasets.d_rand_npy.path=$O/d_rand"
lever() {  # name eps step epochs
  R=runs/$1; mkdir -p $R; date
  [ -f $R/robust_model.safetensors ] || $A train recipes/fast/robust_model.yaml $S model.width=16 source.test_limit=2000 train.batch_size=512 \
     train.epochs=$4 "train.adversarial={kind: pgd, norm: l2, eps: $2, step_size: $3, steps: 3, random_start: false}" \
     airbench.whiten=false name=$1_robust_model checkpoint=$R/robust_model.safetensors
  date
  $A generate recipes/fast/d_robust.yaml $S model.train_recipe=null model.checkpoint=$R/robust_model.safetensors \
     source.limit=2000 batch_size=250 output.shard_size=250 output.dir=$R/d_robust
  date
  [ -f $R/verify_vnw/report.json ] || $A verify $V --only d_robust name=$1_dr_vnw report_dir=$R/verify_vnw "seeds=[0,1,2]" $P datasets.d_robust.path=$R/d_robust airbench.whiten=false
  [ -f $R/verify/report.json ] || $A verify $V --only d_robust name=$1_dr report_dir=$R/verify "seeds=[0,1,2]" $P datasets.d_robust.path=$R/d_robust
  date
}
lever rnw_eps1 1.0 0.8333 10
lever rnw_e20 0.5 0.4167 20
echo ALLDONE_8
