#!/bin/bash
# Two more cpu-scale levers for D̂det (current code): eps 1.0 against the same w16 source; eps 0.5 against a w32 source.
cd /tmp/levcode; export PYTHONPATH=/tmp/levcode
C=/work/shared/data/cifar10
R=/tmp/snap2/main/runs/reproduce_cpu/datasets
M=/work/main/results/reproduce_cpu/models/standard_model.safetensors
gen() {  # gen OUT CKPT EPS STEP
  python -m advgen.cli generate recipes/fast/d_det.yaml source.path=$C source.limit=2000 model.checkpoint=$2 model.train_recipe=null \
    attack.eps=$3 attack.step_size=$4 output.dir=$1 batch_size=250 output.shard_size=250
}
ver() {  # ver NAME SET
  python -m advgen.cli verify recipes/fast/verify.yaml --only d_det name=$1 report_dir=/tmp/lev/$1 source.path=$C \
    source.limit=2000 source.test_limit=1000 model.width=16 train.batch_size=256 train.epochs=40 airbench.label_smoothing=0.0 \
    "seeds=[0,1,2]" "eval.extra_eps=[]" eval.shifted_labels=true \
    datasets.d_robust.path=$R/d_robust datasets.d_nonrobust.path=$R/d_nonrobust datasets.d_det.path=$2 datasets.d_rand.path=$R/d_rand \
    datasets.d_det_npy.path=$R/d_det datasets.d_rand_npy.path=$R/d_rand datasets.d_det_leak.path=$R/d_det datasets.d_rand_leak.path=$R/d_rand
}
echo "== eps 1.0, w16 source $(date)"
gen /tmp/lev/d_det_eps1 $M 1.0 0.2 && ver lev_det_eps1 /tmp/lev/d_det_eps1
echo "== w32 source $(date)"
python -m advgen.cli train recipes/fast/standard_model.yaml source.path=$C model.width=32 source.test_limit=2000 train.batch_size=512 \
  checkpoint=/tmp/lev/std_w32.safetensors && gen /tmp/lev/d_det_w32 /tmp/lev/std_w32.safetensors 0.5 0.1 && ver lev_det_w32 /tmp/lev/d_det_w32
echo "== done $(date)"
