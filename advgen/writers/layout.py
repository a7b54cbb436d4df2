"""Names of an output's files and the shape of a shard's completion marker (no torch: cards/publish import it).

    out/shards/shard-00000.tar   out/data/train-00000.parquet   out/markers/shard-00000.json
    out/recipe.yaml              out/manifest.json              out/README.md

`marker_problem(marker, i)` says what is wrong with a marker read from JSON (None when it has the shape
advgen.writers.shards.write_shard gives it): a marker of any other shape means "shard not finished", never
"finished", and its paths must be the shard's own files, so a marker cannot point a reader outside the output.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

SHARD_DIR, DATA_DIR, MARKER_DIR = "shards", "data", "markers"
MANIFEST, RECIPE = "manifest.json", "recipe.yaml"

_SHA256 = re.compile(r"[0-9a-f]{64}")


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def tar_rel(i: int) -> str:
    return f"{SHARD_DIR}/{shard_name(i)}.tar"


def parquet_rel(i: int) -> str:
    return f"{DATA_DIR}/train-{i:05d}.parquet"


def marker_rel(i: int) -> str:
    return f"{MARKER_DIR}/{shard_name(i)}.json"


def tar_path(out: Path, i: int) -> Path:
    return Path(out) / tar_rel(i)


def parquet_path(out: Path, i: int) -> Path:
    return Path(out) / parquet_rel(i)


def marker_path(out: Path, i: int) -> Path:
    return Path(out) / marker_rel(i)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def shard_entry_problem(entry, i: int) -> Optional[str]:
    """What is wrong with shard i's {tar, tar_sha256, count[, parquet, parquet_sha256]} (a marker or a manifest
    entry), or None."""
    if not isinstance(entry, dict):
        return f"a JSON {type(entry).__name__}, not an object"
    if not _is_int(entry.get("count")) or entry["count"] < 0:
        return f"'count' is {entry.get('count')!r}, not a count"
    files = {"tar": tar_rel(i)}
    if "parquet" in entry or "parquet_sha256" in entry:
        files["parquet"] = parquet_rel(i)
    for key, rel in files.items():
        if entry.get(key) != rel:
            return f"{key!r} is {entry.get(key)!r}, not {rel!r}"
        if not isinstance(entry.get(f"{key}_sha256"), str) or not _SHA256.fullmatch(entry[f"{key}_sha256"]):
            return f"'{key}_sha256' is not a sha256"
    return None


def marker_problem(marker, i: int) -> Optional[str]:
    """What is wrong with the marker of shard i, or None when it has the shape write_shard gives it."""
    problem = shard_entry_problem(marker, i)
    if problem:
        return problem
    if marker.get("shard") != i or not _is_int(marker.get("shard")):
        return f"'shard' is {marker.get('shard')!r}, not {i}"
    stats = marker.get("stats")
    if not isinstance(stats, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              for v in stats.values()):
        return "'stats' is not a mapping of numbers"
    if "provenance" in marker and not isinstance(marker["provenance"], dict):
        return "'provenance' is not an object"
    return None
