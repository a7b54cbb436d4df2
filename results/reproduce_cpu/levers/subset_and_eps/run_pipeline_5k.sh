#!/bin/bash
# head start for a 5,000-image cpu scale (sets of 5k, verifiers 20 epochs), source models reused from the cpu run
cd /tmp/wexp/main
export PYTHONPATH=$PWD TQDM_DISABLE=1
python -m advgen.cli reproduce recipes/reproduce_cpu.yaml dir=runs/reproduce_cpu5k name=reproduce_cpu5k \
  d_robust.source.limit=5000 d_nonrobust.source.limit=5000 d_rand.source.limit=5000 d_det.source.limit=5000 \
  verify.source.limit=5000 verify.train.epochs=20
echo ALLDONE_13
