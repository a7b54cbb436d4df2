#!/bin/bash
# as it ran: D̂NR from the scan source after the cpu verify rerun (/tmp/s8/run_verify.sh) finished, on idle cores
while pgrep -f "run_verify\.sh" > /dev/null; do sleep 20; done
/tmp/s7/sets.sh noaug_wd0_nolook /tmp/s7/tree dnr
