#!/bin/bash
# the cpu scale at 5,000 images / 20 verifier epochs; source models taken from the committed 2k run (same stage keys)
cd /tmp/s6
export PYTHONPATH=$PWD TQDM_DISABLE=1
python -m advgen.cli reproduce recipes/reproduce_cpu.yaml
echo ALLDONE_S6 rc=$?
