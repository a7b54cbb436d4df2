#!/bin/bash
# lever: the no-whitening, plain-CE source with the three levers of scan.sh that made it more attackable, together
while pgrep -f "scan2?\.sh" > /dev/null; do sleep 20; done
set -x
cd /tmp/s7/tree
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"
base="recipes/fast/standard_model.yaml $S model.width=16 source.test_limit=2000 train.batch_size=512"
run() { name=$1; shift; R=runs/scan_$name; mkdir -p $R
  [ -f $R/standard_model.safetensors ] || $A train $base "$@" name=scan_${name}_standard_model checkpoint=$R/standard_model.safetensors
  [ -f $R/success_250.json ] || python /tmp/s7/steps1.py $R/standard_model.safetensors 250 $R/success_250.json
}
run noaug_wd0_nolook airbench.whiten=false airbench.label_smoothing=0.0 train.augment.flip=false train.augment.crop_padding=0 train.weight_decay=0.0 airbench.lookahead=false
echo ALLDONE_SCAN3
