#!/bin/bash
# lever: the source without whitening, plain cross-entropy, trained 40 epochs instead of 10 (does a longer-trained
# w16 source become less robust, so that eps 0.5 reaches 90% targeted success?)
set -x
cd /tmp/wexp/main
export PYTHONPATH=$PWD TQDM_DISABLE=1
A="python -m advgen.cli"; S="source.path=../shared/data/cifar10"; R=runs/nwls0_e40
[ -f $R/standard_model.safetensors ] || $A train recipes/fast/standard_model.yaml $S model.width=16 source.test_limit=2000 train.batch_size=512 \
   train.epochs=40 airbench.whiten=false airbench.label_smoothing=0.0 name=nowhiten_ls0_e40_standard_model checkpoint=$R/standard_model.safetensors
python /tmp/s4/steps1.py $R/standard_model.safetensors 250 $R/success_250.json
echo ALLDONE_C
