#!/bin/bash
# lever: the robust source without whitening (airbench.whiten=false; otherwise the cpu run's robust model: w16,
# 10 epochs, l2 eps 0.5, 3 steps of 2.5 eps / 3); D̂R inverted from it (cpu-scale settings); verified by the cpu
# run's verifier (airbench w16 with whitening) and by the same verifier without whitening, 3 seeds each
set -x
cd /tmp/wexp/main
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"; R=runs/rnw; O=/tmp/snap2/main/runs/reproduce_cpu/datasets
[ -f $R/robust_model.safetensors ] || $A train recipes/fast/robust_model.yaml $S model.width=16 source.test_limit=2000 train.batch_size=512 \
   train.epochs=10 "train.adversarial={kind: pgd, norm: l2, eps: 0.5, step_size: 0.4167, steps: 3, random_start: false}" \
   airbench.whiten=false name=nowhiten_robust_model checkpoint=$R/robust_model.safetensors
$A generate recipes/fast/d_robust.yaml $S model.train_recipe=null model.checkpoint=$R/robust_model.safetensors \
   source.limit=2000 batch_size=250 output.shard_size=250 output.dir=$R/d_robust
V="recipes/fast/verify.yaml $S source.limit=2000 source.test_limit=1000 model.width=16 train.batch_size=256 train.epochs=40 airbench.label_smoothing=0.0 eval.extra_eps=[]"
P="datasets.d_nonrobust.path=$O/d_nonrobust datasets.d_rand.path=$O/d_rand datasets.d_det.path=$O/d_det datasets.d_det_leak.path=$O/d_det datasets.d_rand_leak.path=$O/d_rand datasets.d_det_npy.path=$O/d_det datasets.d_rand_npy.path=$O/d_rand"
$A verify $V --only d_robust name=rnw_dr report_dir=$R/verify "seeds=[0,1,2]" $P datasets.d_robust.path=$R/d_robust
$A verify $V --only d_robust name=rnw_dr_vnw report_dir=$R/verify_vnw "seeds=[0,1,2]" $P datasets.d_robust.path=$R/d_robust airbench.whiten=false
echo ALLDONE_R
