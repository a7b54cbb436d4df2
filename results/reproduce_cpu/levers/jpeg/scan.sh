#!/bin/bash
# lever scan: can a w16 standard source WITHOUT whitening (plain CE) be made attackable enough for eps 0.5 (>= 90% targeted
# success)? One change per variant against whitening/run_ls0.sh's source (83.5 / 35.2 / 4.9%, 65.6% success on 250 images).
set -x
cd /tmp/wexp/main
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"
base="recipes/fast/standard_model.yaml $S model.width=16 source.test_limit=2000 train.batch_size=512 airbench.whiten=false airbench.label_smoothing=0.0"
run() { name=$1; shift; R=runs/scan_$name; mkdir -p $R
  [ -f $R/standard_model.safetensors ] || $A train $base "$@" name=scan_${name}_standard_model checkpoint=$R/standard_model.safetensors
  [ -f $R/success_250.json ] || python /tmp/s7/steps1.py $R/standard_model.safetensors 250 $R/success_250.json
}
run noaug train.augment.flip=false train.augment.crop_padding=0
run nolook airbench.lookahead=false
run wd0 train.weight_decay=0.0
echo ALLDONE_SCAN
