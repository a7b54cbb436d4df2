#!/bin/bash
# lever follow-up: the cpu recipe's D̂rand / D̂det (then D̂NR) at 5,000 images from the standard source in runs/scan_$1 (tree $2),
# verified as the recipe does (airbench w16 with whitening, 20 epochs, 5,000 images, 3 seeds).
set -x
cd $2   # a copy of the repository, ../shared beside it
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"; R=runs/scan_$1; O=/tmp/s6/runs/reproduce_cpu/datasets
V="recipes/fast/verify.yaml $S source.limit=5000 source.test_limit=1000 model.width=16 train.batch_size=256 train.epochs=20 airbench.label_smoothing=0.0 eval.extra_eps=[]"
P="datasets.d_robust.path=$O/d_robust datasets.d_det_leak.path=$O/d_det datasets.d_rand_leak.path=$O/d_rand datasets.d_det_npy.path=$O/d_det datasets.d_rand_npy.path=$O/d_rand"
for d in d_det d_rand; do
  date
  [ -f $R/${d}_5k/manifest.json ] || $A generate recipes/fast/$d.yaml $S model.train_recipe=null model.checkpoint=$R/standard_model.safetensors \
     source.limit=5000 batch_size=250 output.shard_size=250 output.dir=$R/${d}_5k
done
date
[ -f $R/verify_pgd_5k/report.json ] || $A verify $V --only d_det,d_rand name=scan_$1_pgd5k report_dir=$R/verify_pgd_5k "seeds=[0,1,2]" $P \
   datasets.d_nonrobust.path=$O/d_nonrobust datasets.d_det.path=$R/d_det_5k datasets.d_rand.path=$R/d_rand_5k
date
[ "$3" = "dnr" ] || { echo ALLDONE_SETS; exit 0; }
[ -f $R/d_nonrobust_5k/manifest.json ] || $A generate recipes/fast/d_nonrobust.yaml $S model.train_recipe=null model.checkpoint=$R/standard_model.safetensors \
   source.limit=5000 batch_size=250 output.shard_size=250 output.dir=$R/d_nonrobust_5k
date
[ -f $R/verify_dnr_5k/report.json ] || $A verify $V --only d_nonrobust name=scan_$1_dnr5k report_dir=$R/verify_dnr_5k "seeds=[0,1,2]" $P \
   datasets.d_det.path=$O/d_det datasets.d_rand.path=$O/d_rand datasets.d_nonrobust.path=$R/d_nonrobust_5k
date
echo ALLDONE_SETS
