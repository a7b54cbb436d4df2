#!/bin/bash
# lever: the recipe's whitened standard source with its 6 lowest-variance patch directions dropped (airbench.whiten_drop=6:
# on the JPEG copy these are the chroma detail 4:2:0 subsampling removed, levers/jpeg). One change against the cpu recipe.
while pgrep -f "scan[23]?\.sh" > /dev/null; do sleep 20; done
set -x
cd /tmp/s7/tree
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"
base="recipes/fast/standard_model.yaml $S model.width=16 source.test_limit=2000 train.batch_size=512"
run() { name=$1; shift; R=runs/scan_$name; mkdir -p $R
  [ -f $R/standard_model.safetensors ] || $A train $base "$@" name=scan_${name}_standard_model checkpoint=$R/standard_model.safetensors
  [ -f $R/success_250.json ] || python /tmp/s7/steps1.py $R/standard_model.safetensors 250 $R/success_250.json
}
run drop6 airbench.whiten_drop=6
echo ALLDONE_SCAN4
