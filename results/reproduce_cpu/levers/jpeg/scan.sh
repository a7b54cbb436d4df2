#!/bin/bash
# lever scan: can a w16 standard source be made attackable enough for eps 0.5 (>= 90% targeted success) while its
# perturbation stays out of the chroma detail the JPEG copy lacks? Each run trains a source (10 epochs on 50k, tested on
# 2,000 images) and measures targeted success at eps 0.5 (100 steps of 0.1, t = y + 1, first 250 training images) with
# steps1.py = ../whitening/attack_steps.py restricted to its (100, 0.1) row.
# As it ran, in three scripts one after another: the first three runs from /tmp/wexp/main (a copy of the tree), the
# last two (scan3.sh, scan4.sh) from /tmp/s7/tree (a copy with airbench.whiten_drop); a first drop6 run (scan2.sh)
# trained to NaN with zero filters for the dropped directions and was redone after the fix (8b61e65).
set -x
cd /tmp/wexp/main
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"
nowhiten="airbench.whiten=false airbench.label_smoothing=0.0"      # whitening/run_ls0.sh's source
run() { name=$1; shift; R=runs/scan_$name; mkdir -p $R
  [ -f $R/standard_model.safetensors ] || $A train recipes/fast/standard_model.yaml $S model.width=16 source.test_limit=2000 \
      train.batch_size=512 "$@" name=scan_${name}_standard_model checkpoint=$R/standard_model.safetensors
  [ -f $R/success_250.json ] || python /tmp/s7/steps1.py $R/standard_model.safetensors 250 $R/success_250.json
}
run noaug $nowhiten train.augment.flip=false train.augment.crop_padding=0
run nolook $nowhiten airbench.lookahead=false
run wd0 $nowhiten train.weight_decay=0.0
# scan3.sh, scan4.sh (cd /tmp/s7/tree):
run noaug_wd0_nolook $nowhiten train.augment.flip=false train.augment.crop_padding=0 train.weight_decay=0.0 airbench.lookahead=false
run drop6 airbench.whiten_drop=6          # the recipe's whitened source (label smoothing 0.2), blind to 6 directions
echo ALLDONE_SCAN
