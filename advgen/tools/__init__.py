"""Tools beside the pipeline: measurements of advgen itself, not stages of it.

    bench.py      `advgen bench`: one batch of targeted PGD against the bare loop and torchattacks
    bench_e2e.py  `advgen bench-e2e`: a whole `generate` against the attack alone, 1 vs N processes
"""
