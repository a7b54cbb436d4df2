"""An output's layout, without torch: file names, sha256, markers and the manifest, read and checked.

    out/shards/shard-00000.tar   out/data/train-00000.parquet   out/markers/shard-00000.json
    out/recipe.yaml              out/manifest.json              out/README.md

What advgen.writers.shards writes, every other stage reads through here: generate (which shards are finished),
cards and publish (is the whole output intact), verify and reproduce (which output a result measured: the sha256 of
its manifest). `marker_problem(marker, i)` says what is wrong with a marker read from JSON (None when it has the
shape write_shard gives it): a marker of any other shape means "shard not finished", never "finished", and its paths
must be the shard's own files, so a marker cannot point a reader outside the output. `read_manifest` + `check_files`
are the full check of an output (~1 s per GB, the sha256 of every file).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Optional

from advgen.errors import OutputError

SHARD_DIR, DATA_DIR, MARKER_DIR = "shards", "data", "markers"
MANIFEST, RECIPE = "manifest.json", "recipe.yaml"
PREVIEW = "preview.png"          # a sample grid (originals above generated images), written before the manifest

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


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json(path, obj) -> None:
    """Write JSON atomically (a temporary file renamed over `path`): a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def read_keyed_run(path, key: str):
    """The `run` dict saved by `write_json(path, {"key": key, "run": ...})` when its key is still `key`, else None
    (missing, unreadable or made from other inputs): what verify and transfer resume from."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return obj["run"] if isinstance(obj, dict) and obj.get("key") == key and isinstance(obj.get("run"), dict) else None


def manifest_sha256(out) -> str:
    """The identity of a finished output: the sha256 of its manifest.json (which holds every file's sha256)."""
    return sha256_file(Path(out) / MANIFEST)


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


def read_marker(out: Path, i: int, check: bool = True) -> Optional[dict]:
    """The marker of shard i if the shard is complete (a marker of the right shape, files present, checksums
    match), else None."""
    mp = marker_path(out, i)
    if not mp.is_file():
        return None
    try:
        marker = json.loads(mp.read_text())
    except (ValueError, OSError):        # not JSON, not UTF-8, unreadable: not finished
        return None
    if marker_problem(marker, i) is not None:
        return None
    if check:
        for key in ("tar", "parquet"):
            if key in marker:
                f = Path(out) / marker[key]
                if not f.is_file() or sha256_file(f) != marker[f"{key}_sha256"]:
                    return None
    return marker


MANIFEST_FIELDS = {"dataset": str, "shards": list, "count": int, "recipe": dict, "checkpoint": dict, "source": dict,
                   "stats": dict}


def manifest_problem(m) -> Optional[str]:
    """What is wrong with the shape of a manifest read from JSON ("has no 'count'"), or None."""
    if not isinstance(m, dict):
        return f"is a JSON {type(m).__name__}, not an object"
    for key, kind in MANIFEST_FIELDS.items():
        if key not in m:
            return f"has no {key!r}"
        if not isinstance(m[key], kind) or isinstance(m[key], bool):
            return f"has a {key!r} that is not a {kind.__name__}"
    if not isinstance(m["recipe"].get("attack"), dict):
        return "has no 'recipe.attack'"
    for i, entry in enumerate(m["shards"]):
        problem = shard_entry_problem(entry, i)
        if problem:
            return f"lists shard {i} wrongly ({problem})"
    return None


def read_manifest(out) -> tuple[dict, bytes]:
    """(manifest, its bytes) of a finished output, its shape checked; OutputError when there is none or it is not
    one advgen wrote."""
    out = Path(out)
    try:
        data = (out / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise OutputError(f"{out}: no {MANIFEST}; the generation did not finish — re-run the same recipe to resume "
                          "it") from None
    try:
        manifest = json.loads(data)
    except ValueError as e:
        raise OutputError(f"{out}/{MANIFEST} is not valid JSON ({e}); re-run the recipe") from None
    problem = manifest_problem(manifest)
    if problem:
        raise OutputError(f"{out}/{MANIFEST} {problem}; it was not written by advgen generate — re-run the recipe")
    return manifest, data


def check_files(out, m: dict, progress=None) -> None:
    """Everything the manifest promises is there and intact (counts, every shard's marker agreeing with the manifest,
    the sha256 of every file); raises OutputError naming the first problem. `progress(nbytes)` is called after each
    file is hashed (a progress bar's update)."""
    out = Path(out)
    shards = m["shards"]
    n = m.get("num_shards", len(shards))
    if len(shards) != n:
        raise OutputError(f"{out}: manifest lists {len(shards)} shards but num_shards is {n}; re-run the recipe")
    if sum(s["count"] for s in shards) != m["count"]:
        raise OutputError(f"{out}: shard counts in the manifest do not add up to count {m['count']}")
    for i, s in enumerate(shards):
        mp = marker_path(out, i)
        if not mp.is_file():
            raise OutputError(f"{out}: shard {i} has no marker ({MARKER_DIR}/{mp.name}); the output is incomplete, "
                              "re-run the same recipe to redo it")
        try:
            marker = json.loads(mp.read_text())
        except ValueError:
            raise OutputError(f"{out}: marker {MARKER_DIR}/{mp.name} is not valid JSON; re-run the recipe") from None
        problem = marker_problem(marker, i)
        if problem:
            raise OutputError(f"{out}: marker {MARKER_DIR}/{mp.name} is not a shard marker ({problem}); re-run the "
                              "recipe to redo the shard")
        for key in ("tar", "tar_sha256", "parquet", "parquet_sha256", "count"):
            if marker.get(key) != s.get(key):
                raise OutputError(f"{out}: shard {i}: marker and manifest disagree on {key!r}; the output was "
                                  "modified after generation, re-run the recipe with --overwrite")
        for key in ("tar", "parquet"):
            if key not in s:
                continue
            f = out / s[key]
            if not f.is_file():
                raise OutputError(f"{out}: {s[key]} is missing; re-run the same recipe to redo shard {i}")
            if sha256_file(f) != s[f"{key}_sha256"]:
                raise OutputError(f"{out}: {s[key]} does not match its sha256 in the manifest; the file changed "
                                  "after generation, re-run the recipe to redo it")
            if progress is not None:
                progress(f.stat().st_size)
    preview = m.get("preview")
    if isinstance(preview, dict) and isinstance(preview.get("path"), str):
        f = out / preview["path"]
        if not f.is_file() or sha256_file(f) != preview.get("sha256"):
            raise OutputError(f"{out}: {preview['path']} is missing or does not match its sha256 in the manifest; "
                              "re-run the recipe with --overwrite, or delete the manifest's 'preview' entry")
