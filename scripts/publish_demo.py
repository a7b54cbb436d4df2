"""Publish outputs to the loopback Hub of the tests (tests/support/hubserver.py) and load every config back: the
figures of the publishing step (time, sizes, the card's first screen) without a real Hub.

    python scripts/publish_demo.py runs/digits_robust runs/digits_nonrobust runs/digits_rand runs/digits_det \
        --report results/digits_uint8/report.json        # options after the outputs go to publish and card

Prints the wall time of `advgen publish` (a real subprocess), of a second publish (no commit), the size of
each config in the repo, the first 40 lines of the card, and each config's row count from load_dataset.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.conftest_hub import configure_hub_environment  # noqa: E402  (sets HF_ENDPOINT before any HF import)

port, _ = configure_hub_environment()
from tests.support.hubserver import HubServer  # noqa: E402


def main(argv: list[str]) -> int:
    cut = next((i for i, a in enumerate(argv) if a.startswith("--")), len(argv))
    outputs, extra = argv[:cut], argv[cut:]
    server = HubServer(port=port)
    server.start()
    repo = f"{server.user}/digits-robust-features"
    env = {**os.environ, "HF_TOKEN": server.token}
    try:
        for attempt in ("first", "second"):
            t0 = time.perf_counter()
            p = subprocess.run(["advgen", "publish", *outputs, *extra, "--repo-id", repo], env=env, capture_output=True,
                               text=True)
            print(f"advgen publish ({attempt}): exit {p.returncode}, {time.perf_counter() - t0:.1f} s, "
                  f"{len(server.commits(repo))} commits in the repo")
            print("   " + "\n   ".join(p.stdout.strip().splitlines()[-3:]))
        from datasets import load_dataset
        from huggingface_hub import HfApi

        sizes: dict[str, int] = {}
        for f in HfApi().list_repo_tree(repo, repo_type="dataset", recursive=True):
            parts = f.path.split("/")
            if getattr(f, "size", None) is not None and len(parts) == 3:
                key = f"{parts[1]} {parts[0]}"
                sizes[key] = sizes.get(key, 0) + f.size
        for k, v in sorted(sizes.items()):
            print(f"  {k:<28} {v / 1e6:8.2f} MB")
        card = subprocess.run(["advgen", "card", *outputs, *extra, "--repo-id", repo], capture_output=True, text=True).stdout
        print("---- card, first 40 lines after the YAML header ----")
        body = card.split("\n---\n", 1)[1] if card.startswith("---") else card
        print("\n".join(body.strip().splitlines()[:40]))
        print("----")
        for name in ("d_det", "d_rand", "d_robust", "d_nonrobust"):
            ds = load_dataset(repo, name, split="train")
            print(f"load_dataset({repo!r}, {name!r}): {ds.num_rows} rows, features {list(ds.features)}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
