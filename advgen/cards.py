"""The dataset card: one README.md for a multi-config repo, rendered from manifests (and verification reports).

    advgen card runs/digits_det runs/digits_rand --repo-id me/advgen-digits -o README.md
    advgen card runs/digits_det --report runs/verify_det/report.json      # add a verification table

The YAML header is built with huggingface_hub's DatasetCardData (license, task_categories,
size_categories, source_datasets, tags, pretty_name, `configs:` with data_files per config, and
`dataset_info:` per config, with the `datasets.Features` read from each output's parquet schema); the prose
comes from the Jinja template dataset_cards/dataset_card.md.j2. Config names are manifest["dataset"]
(d_det, d_rand, d_robust, d_nonrobust); `repo_layout` is the one place that says where an output's files go in
the repo, so the card's data_files and what `advgen publish` uploads cannot drift apart.

The card is byte-stable: it is a function of the output files and reports only (no dates, no absolute paths,
configs in a fixed order), so publishing unchanged outputs again changes nothing. Every output is checked before a
card is made of it, as `advgen publish` does (manifest and markers of the right shape and agreeing, sha256 of every
file as recorded): ~1 s per GB; four digits configs take well under a second.

Verification reports (`advgen verify`): JSON with a list `results`, one entry per trained model, each with at
least dataset, model, std_acc, robust_acc, eps, paper_std_acc, paper_robust_acc, expected, passed, seconds
(accuracies are fractions; also used when present: kind, title, use_npy, *_std, seeds). A row belongs to the
output whose manifest it names: its `manifest_sha256` is the sha256 of that output's manifest.json (a local
output) or of the manifests/<config>.json `advgen publish` made of it (a Hub config). Found at OUT/verify/*.json,
or passed with --report (repeatable). A row with use_npy true (or `images` "npy") is a model trained on the float32
copies, not the PNGs; where both exist for a config and model, the card shows the accuracy difference. A top-level
`png_vs_float` mapping, if present, is shown as is.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from tqdm.auto import tqdm

from advgen.cli import bars_off, parser, run
from advgen.errors import CardError, OutputError
from advgen.recipe import DIGITS_SPLIT_SEED, DIGITS_TEST_FRACTION, TARGETS_OF
from advgen.writers.layout import MANIFEST, check_files, read_manifest

TEMPLATE = "dataset_card.md.j2"


def template_dir() -> Path:
    """dataset_cards/ of the source tree, or the copy installed as advgen/dataset_cards (pyproject package-dir)."""
    here = Path(__file__).resolve().parent
    for d in (here.parent / "dataset_cards", here / "dataset_cards"):
        if (d / TEMPLATE).is_file():
            return d
    raise CardError(f"the card template {TEMPLATE} is missing from {here.parent / 'dataset_cards'} and "
                    f"{here / 'dataset_cards'}; reinstall advgen (pip install advgen)")

# Where an output's files go in the repo (see repo_layout).
REPO_DATA_DIR, REPO_WDS_DIR, REPO_MANIFEST_DIR, REPO_ASSETS_DIR = "data", "webdataset", "manifests", "assets"
REPO_RECIPE_DIR = "recipes"
PUBLIC_RECIPE = "<the manifest's recipe, as YAML>"     # repo_layout's source for recipes/<config>.yaml (made here)
CONFIG_ORDER = ("d_det", "d_rand", "d_robust", "d_nonrobust")

CONFIGS = {
    "d_det": {"symbol": "D̂det", "section": "3.2", "generator": "targeted PGD",
              "summary": "every training image x of class y is perturbed by targeted PGD towards t = (y + 1) mod C "
                         "and stored with label t: image and label agree only through non-robust features."},
    "d_rand": {"symbol": "D̂rand", "section": "3.2", "generator": "targeted PGD",
               "summary": "every training image x is perturbed by targeted PGD towards a class t drawn uniformly "
                          "over the C classes (t may equal y) and stored with label t."},
    "d_robust": {"symbol": "D̂R", "section": "3.1", "generator": "representation inversion",
                 "summary": "every training image x is rebuilt from a start image x0 by matching the penultimate "
                            "representation of x under a robust (adversarially trained) source model; stored with "
                            "the original label y, so it keeps mostly the features that model relies on: robust "
                            "ones."},
    "d_nonrobust": {"symbol": "D̂NR", "section": "3.1", "generator": "representation inversion",
                    "summary": "every training image x is rebuilt from a start image x0 by matching the penultimate "
                               "representation of x under a standard source model; stored with the original label "
                               "y, so it keeps the robust and non-robust features that model relies on."},
}

# Labels of the manifest's mean_* statistics (every mean_* is shown; unknown ones under their own name).
STAT_LABELS = {
    "mean_success": "targeted success (source model predicts the stored label on the stored image)",
    "mean_l2": "mean ‖x_stored − x‖₂",
    "mean_linf": "mean ‖x_stored − x‖∞",
    "mean_l2_to_source": "mean ‖x_stored − x‖₂ (x: the image whose features are matched)",
    "mean_loss": "mean final attack loss (on the float iterate)",
    "mean_rel_dist_init": "mean ‖g(x0) − g(x)‖ / ‖g(x)‖ at the start image",
    "mean_rel_dist_final": "mean ‖g(x_stored) − g(x)‖ / ‖g(x)‖ on the stored image",
}

SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]

TAGS = ["adversarial-examples", "robustness", "adversarial-robustness", "non-robust-features", "robust-features",
        "synthetic", "ilyas2019"]

BIBTEX = """@inproceedings{ilyas2019adversarial,
  title     = {Adversarial Examples Are Not Bugs, They Are Features},
  author    = {Ilyas, Andrew and Santurkar, Shibani and Tsipras, Dimitris and Engstrom, Logan and
               Tran, Brandon and Madry, Aleksander},
  booktitle = {Advances in Neural Information Processing Systems},
  volume    = {32},
  year      = {2019}
}"""


# ------------------------------------------------------------------------------------------------------------------
# Reading outputs and reports
# ------------------------------------------------------------------------------------------------------------------

@dataclass
class ConfigSource:
    """One output dir as one config of the repo."""

    out: Path
    manifest: dict
    manifest_bytes: bytes
    features: object = None                         # datasets.Features of the parquet
    num_bytes: int = 0                              # uncompressed size of the parquet data (dataset_info)
    results: list = field(default_factory=list)     # verification rows for this config

    @property
    def name(self) -> str:
        return self.manifest["dataset"]


def repo_layout(cfg: ConfigSource) -> dict[str, str]:
    """{path in the repo: path relative to the output dir}: parquet, WebDataset shards, manifest."""
    name = cfg.name
    files = {}
    for s in cfg.manifest["shards"]:
        if "parquet" in s:
            files[f"{REPO_DATA_DIR}/{name}/{Path(s['parquet']).name}"] = s["parquet"]
    for s in cfg.manifest["shards"]:
        files[f"{REPO_WDS_DIR}/{name}/{Path(s['tar']).name}"] = s["tar"]
    files[f"{REPO_MANIFEST_DIR}/{name}.json"] = MANIFEST
    files[f"{REPO_RECIPE_DIR}/{name}.yaml"] = PUBLIC_RECIPE
    preview = cfg.manifest.get("preview")
    if isinstance(preview, dict) and isinstance(preview.get("path"), str):
        files[f"{REPO_ASSETS_DIR}/{name}.png"] = preview["path"]       # the sample grid the card shows
    return files


def data_files_pattern(name: str) -> str:
    return f"{REPO_DATA_DIR}/{name}/train-*.parquet"


def wds_pattern(name: str) -> str:
    return f"{REPO_WDS_DIR}/{name}/*.tar"


def load_config(out) -> ConfigSource:
    """Read an output's manifest and its parquet schema (not its data)."""
    import pyarrow.parquet as pq
    from datasets import Features

    out = Path(out)
    if not out.is_dir():
        raise CardError(f"{out}: no such output directory")
    manifest, manifest_bytes = read_manifest(out)
    if manifest["dataset"] not in CONFIGS:
        raise CardError(f"{out}/{MANIFEST}: unknown dataset {manifest['dataset']!r}; "
                        f"expected one of {', '.join(CONFIG_ORDER)}")
    cfg = ConfigSource(out=out, manifest=manifest, manifest_bytes=manifest_bytes)
    parquets = [s["parquet"] for s in manifest["shards"] if "parquet" in s]
    if not parquets or len(parquets) != len(manifest["shards"]):
        raise CardError(f"{out}: no parquet files in the manifest (generated with output.hf_export: false); "
                        "regenerate with output.hf_export=true to publish it")
    schema = None
    for rel in parquets:
        path = out / rel
        if not path.is_file():
            raise OutputError(f"{out}: {rel} is missing; re-run the recipe to redo the shard")
        try:
            meta = pq.read_metadata(path)
        except Exception as e:      # pyarrow.ArrowInvalid & co: a truncated or overwritten file
            raise OutputError(f"{out}: {rel} is not a readable parquet file ({type(e).__name__}); re-run the recipe "
                              "to redo the shard") from None
        if schema is None:
            schema = meta.schema.to_arrow_schema()
        elif not meta.schema.to_arrow_schema().equals(schema, check_metadata=True):
            raise CardError(f"{out}: {rel} has other columns than {parquets[0]}; regenerate the output")
        cfg.num_bytes += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    cfg.features = Features.from_arrow_schema(schema)
    total = sum((out / sh[k]).stat().st_size for sh in manifest["shards"] for k in ("tar", "parquet")
                if isinstance(sh.get(k), str) and (out / sh[k]).is_file())
    with tqdm(total=total, desc=f"checksums of {out.name}", unit="B", unit_scale=True, leave=False,
              disable=bars_off(total < CHECKSUM_BAR_BYTES)) as bar:
        check_files(out, manifest, progress=bar.update)
    return cfg


def public_manifest(cfg: ConfigSource) -> bytes:
    """The manifest as published: every absolute local path made relative to the output ("." for the output dir
    itself) or cut to its file name; the rest as written."""
    root = cfg.out.resolve()

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        if isinstance(v, str) and (os.path.isabs(v) or v.startswith("~")):
            p = Path(v).expanduser().resolve()
            return p.relative_to(root).as_posix() if p == root or root in p.parents else p.name
        return v

    m = clean(cfg.manifest)
    m["recipe"].setdefault("output", {})["dir"] = "."
    return (json.dumps(m, indent=2) + "\n").encode()


def public_recipe(cfg: ConfigSource) -> bytes:
    """recipes/<config>.yaml of the repo: the resolved recipe that made the config (local paths cut as in the
    public manifest), output.dir runs/<config>: `advgen generate recipes/<config>.yaml` remakes it."""
    import yaml

    recipe = json.loads(public_manifest(cfg))["recipe"]
    recipe.setdefault("output", {})["dir"] = f"runs/{cfg.name}"
    sha = cfg.manifest["checkpoint"].get("sha256")
    head = (f"# Remakes config {cfg.name} of this repo: advgen generate recipes/{cfg.name}.yaml\n"
            f"# model.checkpoint must be the source model this config was made from (sha256 {sha});\n"
            "# the same recipe and seed give the same bytes on the CPU.\n")
    return (head + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)).encode()


def load_configs(outs) -> list[ConfigSource]:
    """Configs in the paper's order; two outputs with the same config name are an error."""
    cfgs, seen = [], {}
    for out in outs:
        cfg = load_config(out)
        if cfg.name in seen:
            raise CardError(f"{seen[cfg.name]} and {out} are both config {cfg.name!r}; "
                            "publish one output per config")
        seen[cfg.name] = out
        cfgs.append(cfg)
    return sorted(cfgs, key=lambda c: CONFIG_ORDER.index(c.name))


def load_reports(cfgs: list[ConfigSource], report_paths=()) -> tuple[list[dict], dict]:
    """Attach verification rows to their configs; returns (rows of no config, e.g. baselines; png_vs_float).

    Reports are read from OUT/verify/*.json (`advgen verify` puts a copy of its report there for each output it
    trained on) and from report_paths; the same report found twice counts once. A row belongs to the config whose
    manifest its `manifest_sha256` names (the local manifest.json, or the public copy `advgen publish` uploads);
    rows of other generated sets are left out; baselines (kind other than "generated") are kept once.
    """
    found = [p for c in cfgs for p in sorted((c.out / "verify").glob("*.json"))] + [Path(p) for p in report_paths]
    by_sha = {}
    for c in cfgs:
        by_sha[hashlib.sha256(c.manifest_bytes).hexdigest()] = c
        by_sha[hashlib.sha256(public_manifest(c)).hexdigest()] = c
    other, png_vs_float, seen, seen_other, attached = [], {}, set(), set(), set()
    for path in found:
        if not path.is_file():
            raise CardError(f"report {str(path)!r} does not exist")
        try:
            report = json.loads(path.read_text())
            results = report["results"]
            assert isinstance(results, list)
        except (json.JSONDecodeError, KeyError, TypeError, AssertionError):
            raise CardError(f"report {str(path)!r} is not a verification report (JSON with a list 'results')") from None
        key = json.dumps([report.get("name"), results], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        if isinstance(report.get("png_vs_float"), dict):
            png_vs_float.update(report["png_vs_float"])
        for i, row in enumerate(results):
            missing = [k for k in ("dataset", "model", "std_acc", "robust_acc") if k not in row]
            if missing:
                raise CardError(f"report {str(path)!r}: results[{i}] has no {', '.join(missing)}")
            cfg = by_sha.get(row.get("manifest_sha256"))
            if cfg is not None:
                ident = (id(cfg), json.dumps(row, sort_keys=True))
                if ident not in attached:
                    attached.add(ident)
                    cfg.results.append(row)
            elif row.get("kind", "generated") != "generated":
                ident = json.dumps([row.get(k) for k in ("dataset", "model", "std_acc", "robust_acc", "use_npy")])
                if ident not in seen_other:       # the same baseline in several reports: once
                    seen_other.add(ident)
                    other.append(row)
    return other, png_vs_float


# ------------------------------------------------------------------------------------------------------------------
# What the template sees
# ------------------------------------------------------------------------------------------------------------------

def pct(x) -> str:
    return "—" if x is None else f"{100 * float(x):.1f}%"


def num(x, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def size_category(n: int) -> str:
    for bound, label in SIZE_CATEGORIES:
        if n < bound:
            return label
    return "n>1B"


def source_label(src: dict) -> str:
    """Human name of the source dataset (no local paths)."""
    kind, path = src.get("kind"), src.get("path") or ""
    if kind == "digits":
        return "scikit-learn digits"
    if kind == "synthetic":
        return "synthetic blobs (test data, not a paper dataset)"
    if kind == "hf":
        return source_hub_id(src) or Path(path.rstrip("/")).name or kind
    return Path(path.rstrip("/")).name or kind


CHECKSUM_BAR_BYTES = 256 << 20    # hashing runs ~1 s per GB: a bar for outputs that take a moment
DIGITS_ROWS = 1797      # len(sklearn.datasets.load_digits().images)
PAPER_URL = "https://arxiv.org/abs/1905.02175"
# Local copies of Hub datasets, known by their folder name: the card names the Hub id they mirror.
HUB_IDS = {"cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100", "mnist": "ylecun/mnist",
           "fashion_mnist": "zalando-datasets/fashion_mnist", "svhn": "ufldl-stanford/svhn"}
# Licences of the source images, as their publishers state them ("unknown" where they state none). The generated
# images are derived from them (and from a model the user trained), so the card inherits the source's licence.
SOURCE_LICENSES = {"uoft-cs/cifar10": "unknown", "uoft-cs/cifar100": "unknown", "ylecun/mnist": "mit",
                   "zalando-datasets/fashion_mnist": "mit", "ufldl-stanford/svhn": "other",
                   "sklearn-digits": "cc-by-4.0"}
LICENSE_NOTES = {"unknown": "its publishers state no licence", "cc-by-4.0": "CC BY 4.0 (UCI Machine Learning "
                 "Repository, *Optical Recognition of Handwritten Digits*)", "mit": "MIT",
                 "other": "see the source dataset's own terms"}


def source_hub_id(src: dict) -> Optional[str]:
    """The Hub id of the source dataset: its path when it is one, the id a local copy mirrors (by folder name)."""
    kind, path = src.get("kind"), src.get("path") or ""
    if kind != "hf":
        return None
    if not _is_local(path):
        return path
    return HUB_IDS.get(Path(path.rstrip("/")).name.lower())


def source_dataset_id(src: dict) -> str:
    """The `source_datasets` entry: the Hub id where there is one (also for a local copy of a Hub dataset)."""
    hub = source_hub_id(src)
    if hub:
        return hub
    if src.get("kind") == "digits":
        return "sklearn-digits"
    return source_label(src)


def source_license(src: dict) -> str:
    return SOURCE_LICENSES.get(source_dataset_id(src), "unknown")


def norm_label(norm) -> str:
    return {"l2": "ℓ2", "linf": "ℓ∞"}.get(norm, str(norm))


def _is_local(path: str) -> bool:
    return path.startswith(("/", "./", "../", "~")) or os.path.isdir(path)


def _model_ref(recipe: dict) -> str:
    """The recipe's model reference without local directories (a train recipe path is relative to the repo)."""
    m = recipe.get("model", {})
    if m.get("train_recipe"):
        tr = m["train_recipe"]
        return f"`{tr}`" if not os.path.isabs(tr) and not tr.startswith("..") else f"`{Path(tr).name}`"
    if m.get("checkpoint"):
        return f"`{Path(m['checkpoint']).name}`"
    return "—"


def test_split_code(src: dict) -> str:
    """Python that loads the test split a model trained on this config must be evaluated on, without advgen."""
    kind, hub = src.get("kind"), source_hub_id(src)
    if kind == "digits":
        return ("import numpy as np\nfrom sklearn.datasets import load_digits\n"
                "from sklearn.model_selection import train_test_split\n\n"
                "d = load_digits()      # advgen's split; source_index is the row of load_digits()\n"
                f"train_rows, test_rows = train_test_split(np.arange({DIGITS_ROWS}), test_size={DIGITS_TEST_FRACTION}, "
                f"random_state={DIGITS_SPLIT_SEED}, stratify=d.target)\n"
                "x_test = np.rint(d.images[test_rows] * 255 / 16).astype(np.uint8)   # pixels as advgen scales them\n"
                "y_test = d.target[test_rows]")
    if hub:
        return (f'from datasets import load_dataset\n\n'
                f'test = load_dataset("{hub}", split="{src.get("test_split") or "test"}")')
    return f"# the {src.get('test_split') or 'test'} split of {source_label(src)}"


def index_meaning(src: dict) -> str:
    if src.get("kind") == "digits":
        return "the row of `sklearn.datasets.load_digits()`"
    return f"the row of the `{src.get('split')}` split of {source_label(src)}"


def config_view(cfg: ConfigSource) -> dict:
    m = cfg.manifest
    r, a, ck = m["recipe"], m["recipe"]["attack"], m["checkpoint"]
    metrics = ck.get("metrics", {}) or {}
    info = CONFIGS[cfg.name]
    src = m["source"]
    shape = src.get("shape") or []
    d = math.prod(shape) if shape else None
    targets = TARGETS_OF.get(cfg.name)      # the dataset decides the attack: PGD sets have a target rule
    inversion = targets is None
    if inversion:
        generator = ("representation inversion: normalised ℓ2 gradient descent on ‖g(z) − g(x)‖ from z = x0, "
                     "z clamped to [0,1] after every step, no ε ball (g: the source model's penultimate layer)")
    else:
        generator = (f"targeted PGD in the {norm_label(a.get('norm'))} ball of radius ε around x, "
                     f"{'normalised gradient' if a.get('norm') == 'l2' else 'sign'} steps, "
                     "projection on the ball then clamp to [0,1]")
    params = [("generator", generator)]
    if inversion:
        x0 = a.get("x0")
        params.append(("x0 rule", "another training image, drawn uniformly from the other images of the split, "
                                  "independently of x's label (paper §3.1)" if x0 == "train" else
                       "uniform noise in [0,1] (paper, Appendix D.1)" if x0 == "noise" else str(x0)))
        params.append(("loss", "‖g(z) − g(x)‖₂ / ‖g(x)‖₂" if a.get("normalize_loss") else "‖g(z) − g(x)‖₂"))
        params.append(("label", "the original label y"))
    else:
        params.append(("ε", num(a.get("eps"))))
        params.append(("target rule", "t = (y + 1) mod C" if targets == "det" else
                       "t uniform over the C classes (may equal y)"))
        params.append(("label", "the target t"))
        params.append(("random start", num(a.get("random_start"))))
    params += [("steps", num(a.get("steps"))), ("step size", num(a.get("step_size"))),
               ("keep best iterate", num(a.get("keep_best"))), ("seed", num(r.get("seed"))),
               ("precision", str(r.get("precision")))]
    robust = None
    if metrics.get("robust_acc") is not None:
        robust = (f"{pct(metrics['robust_acc'])} ({norm_label(metrics.get('robust_norm', 'l2'))} PGD, "
                  f"ε = {num(metrics.get('robust_eps'))}, {num(metrics.get('robust_steps'))} steps)")
    order = list(STAT_LABELS)
    stats = [(k, STAT_LABELS.get(k, k), pct(v) if k == "mean_success" else num(v))
             for k, v in sorted(m["stats"].items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order
                                                                    else len(order), kv[0]))
             if k.startswith("mean_")]
    s = m["stats"]
    if "mean_rel_dist_final" in s:
        headline = (f"‖g(x_r) − g(x)‖/‖g(x)‖ {num(s.get('mean_rel_dist_init'), 3)} → "
                    f"{num(s['mean_rel_dist_final'], 3)}")
    elif "mean_l2" in s:
        headline = f"‖δ‖₂ {num(s['mean_l2'], 3)} (ε {num(a.get('eps'))})"
    else:
        headline = "—"
    layout = repo_layout(cfg)
    parquet = [cfg.out / rel for p, rel in layout.items() if p.startswith(REPO_DATA_DIR + "/")]
    tars = [cfg.out / rel for p, rel in layout.items() if p.startswith(REPO_WDS_DIR + "/")]
    return {
        "name": cfg.name, "symbol": info["symbol"], "section": info["section"], "summary": info["summary"],
        "generator": info["generator"], "inversion": inversion, "recipe_name": m.get("name"),
        "count": m["count"], "num_shards": m.get("num_shards", len(m["shards"])),
        "classes": src.get("class_names") or [], "source": source_label(src), "split": src.get("split"),
        "source_samples": src.get("num_samples"), "shape": "×".join(str(s) for s in shape),
        "arch": ck.get("arch"), "adversarial": bool(ck.get("adversarial")), "sha256": ck.get("sha256"),
        "model_ref": _model_ref(r), "test_acc": pct(metrics.get("test_acc")) if "test_acc" in metrics else None,
        "robust": robust, "params": params, "stats": stats,
        "success": m["stats"].get("mean_success"), "headline": headline,
        "npy": bool(r.get("output", {}).get("npy")),
        "rounding_bound": None if d is None else num(math.sqrt(d) / 510, 3),
        "eps": a.get("eps") if not inversion else None, "d": d,
        "parquet_files": len(parquet), "parquet_size": human_size(sum(p.stat().st_size for p in parquet)),
        "tar_files": len(tars), "tar_size": human_size(sum(p.stat().st_size for p in tars)),
        "advgen_version": m.get("advgen_version"), "git_sha": m.get("git_sha"),
        "results": [result_view(x, cfg.name) for x in cfg.results],
        "model_mismatch": (cfg.name == "d_robust") != bool(ck.get("adversarial")),
        "preview": f"{REPO_ASSETS_DIR}/{cfg.name}.png" if f"{REPO_ASSETS_DIR}/{cfg.name}.png" in layout else None,
        "index_meaning": index_meaning(src), "test_code": test_split_code(src),
        "license": source_license(src), "license_note": LICENSE_NOTES.get(source_license(src), source_license(src)),
    }


def is_float_row(row: dict) -> bool:
    """A model trained on the float32 copies (verify's use_npy) rather than the PNGs."""
    return bool(row.get("use_npy")) or str(row.get("images", "png")).lower() in ("npy", "float", "float32")


def _range(r) -> str:
    if isinstance(r, (list, tuple)) and len(r) == 2:
        return f"{pct(r[0])}–{pct(r[1])}"
    return str(r)


def result_view(row: dict, config: Optional[str] = None) -> dict:
    expected = row.get("expected")
    if isinstance(expected, dict):
        expected = "; ".join(f"{k.replace('_acc', '')} {_range(v)}" for k, v in expected.items() if v is not None)
    passed = row.get("passed")
    secs = row.get("seconds")
    seeds = row.get("seeds")
    n = len(seeds) if isinstance(seeds, list) else 1

    def acc(key):
        sd = row.get(f"{key}_std")
        return pct(row.get(key)) + (f" ± {100 * float(sd):.1f}" if n > 1 and sd is not None else "")

    return {"dataset": f"`{config}`" if config else str(row.get("title") or row["dataset"]),
            "model": str(row["model"]) + (f" ({n} seeds)" if n > 1 else ""),
            "images": "float32 (npy)" if is_float_row(row) else "png",
            "std_acc": acc("std_acc"), "robust_acc": acc("robust_acc"),
            "paper_std_acc": pct(row.get("paper_std_acc")), "paper_robust_acc": pct(row.get("paper_robust_acc")),
            "eps": num(row.get("eps")), "expected": "—" if expected in (None, "") else str(expected),
            "passed": "—" if passed is None else ("yes" if passed else "no"),
            "seconds": "—" if secs is None else f"{float(secs):.0f} s"}


def rounding_lines(views: list[dict]) -> list[str]:
    """The uint8 rounding bound per image shape, beside each PGD config's ε."""
    lines = []
    for shape in sorted({v["shape"] for v in views}):
        vs = [v for v in views if v["shape"] == shape]
        eps = ", ".join(f"`{v['name']}` {num(v['eps'])}" for v in vs if v["eps"] is not None)
        lines.append(f"{shape} images (d = {vs[0]['d']}): ‖Δ‖₂ ≤ {vs[0]['rounding_bound']}"
                     + (f" (ε: {eps})" if eps else ""))
    return lines


def png_float_rows(cfgs: list[ConfigSource]) -> list[dict]:
    """Accuracy differences between models trained on the PNGs and on the float32 images, where both exist."""
    out = []
    for c in cfgs:
        rows = {}
        for x in c.results:
            kind = "float" if is_float_row(x) else "png"
            rows.setdefault(str(x["model"]), {})[kind] = x
        for model, pair in sorted(rows.items()):
            if "png" in pair and "float" in pair:
                p, f = pair["png"], pair["float"]
                out.append({"dataset": c.name, "model": model,
                            "std": f"{pct(p['std_acc'])} vs {pct(f['std_acc'])} "
                                   f"({100 * (p['std_acc'] - f['std_acc']):+.1f} points)",
                            "robust": f"{pct(p['robust_acc'])} vs {pct(f['robust_acc'])} "
                                      f"({100 * (p['robust_acc'] - f['robust_acc']):+.1f} points)"})
    return out


def card_data(cfgs: list[ConfigSource], pretty_name: str):
    from datasets import ClassLabel, DatasetInfo, SplitDict, SplitInfo
    from huggingface_hub import DatasetCardData

    infos = []
    for c in cfgs:
        features = c.features.copy()
        names = c.manifest["source"].get("class_names")
        if "source_label" in features and names:        # the original label, named like `label`
            features["source_label"] = ClassLabel(names=list(names))
        splits = SplitDict()
        splits.add(SplitInfo(name="train", num_bytes=c.num_bytes, num_examples=c.manifest["count"]))
        download = sum((c.out / rel).stat().st_size for p, rel in repo_layout(c).items()
                       if p.startswith(REPO_DATA_DIR + "/"))
        infos.append(DatasetInfo(features=features, config_name=c.name, splits=splits, download_size=download,
                                 dataset_size=c.num_bytes)._to_yaml_dict())
    sources = sorted({source_dataset_id(c.manifest["source"]) for c in cfgs})
    licenses = sorted({source_license(c.manifest["source"]) for c in cfgs})
    return DatasetCardData(
        license=licenses[0] if len(licenses) == 1 else licenses,
        task_categories=["image-classification"],
        size_categories=[size_category(sum(c.manifest["count"] for c in cfgs))],
        source_datasets=sources,
        tags=TAGS,
        pretty_name=pretty_name,
        configs=[{"config_name": c.name, **({"default": True} if i == 0 else {}),    # load_dataset(repo) = first
                  "data_files": [{"split": "train", "path": data_files_pattern(c.name)}]} for i, c in enumerate(cfgs)],
        dataset_info=infos,
    )


REPORT_FIGURES = (("accuracy.png", "Figure 2b: standard and robust accuracy per training set, ours beside the paper"),
                  ("figure2a.png", "Figure 2a: the same source images in D, D̂R and D̂NR"),
                  ("robustness.png", "Accuracy against the attack radius ε"))


def report_figures(report_paths) -> list[dict]:
    """The figures `advgen verify` drew beside each given report.json, as {path (in the repo), local, caption}:
    `advgen publish` uploads them under assets/<report name>/ and the card shows them."""
    out = []
    for p in map(Path, report_paths):
        try:
            name = json.loads(p.read_text()).get("name") or p.parent.name
        except (OSError, ValueError, AttributeError):
            continue                           # load_reports names the problem
        folder = re.sub(r"[^\w.-]", "_", str(name))
        for fname, caption in REPORT_FIGURES:
            if (p.parent / fname).is_file():
                out.append({"path": f"{REPO_ASSETS_DIR}/{folder}/{fname}", "local": p.parent / fname,
                            "caption": f"{caption} ({name})"})
    return out


def _unique_tests(views: list[dict]) -> list[dict]:
    """One 'evaluate on' block per source dataset: {source, code, configs}."""
    out: dict[str, dict] = {}
    for v in views:
        block = out.setdefault(v["test_code"], {"source": v["source"], "code": v["test_code"], "configs": []})
        block["configs"].append(v["name"])
    return list(out.values())


def render_card(outs, reports=(), repo_id: Optional[str] = None, revision: Optional[str] = None,
                cfgs: Optional[list[ConfigSource]] = None) -> str:
    """The README.md text for these outputs (cfgs: already loaded configs, to skip reading them again)."""
    import jinja2
    from huggingface_hub import DatasetCard

    cfgs = load_configs(outs) if cfgs is None else cfgs
    for c in cfgs:
        c.results = []
    other, png_vs_float = load_reports(cfgs, reports)
    views = [config_view(c) for c in cfgs]
    sources = sorted({v["source"] for v in views})
    pretty = (f"Adversarial Examples are not Bugs, they are Features: "
              f"{', '.join(v['symbol'] for v in views)} on {', '.join(sources)}")
    data = card_data(cfgs, pretty)
    repo = repo_id or "USER/REPO"
    rev = revision if revision not in (None, "main") else None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir())), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters.update(pct=pct, num=num)
    text = env.get_template(TEMPLATE).render(
        card_data=data.to_yaml(), pretty_name=pretty, configs=views, repo_id=repo, repo_id_given=repo_id is not None,
        revision=rev, hf_revision=f"@{quote(rev, safe='')}" if rev else "", bibtex=BIBTEX,
        other_results=[result_view(x) for x in other], png_vs_float=sorted(png_vs_float.items()),
        png_float_rows=png_float_rows(cfgs), any_results=bool(other) or any(v["results"] for v in views),
        data_dir=REPO_DATA_DIR, wds_dir=REPO_WDS_DIR, manifest_dir=REPO_MANIFEST_DIR,
        sources=sources, total=sum(v["count"] for v in views), rounding=rounding_lines(views),
        paper_url=PAPER_URL, tests=_unique_tests(views), figures=report_figures(reports))
    card = DatasetCard(text)       # parses the YAML header back: a broken header fails here, not on the Hub
    return str(card)


# ------------------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = parser("advgen card", description="Render the dataset card (README.md) of one or more outputs, without "
                                         "uploading anything.")
    p.add_argument("outputs", nargs="+", help="output dirs of `advgen generate` (one per config)")
    p.add_argument("--report", action="append", default=[], metavar="PATH",
                   help="a verification report JSON (repeatable; OUT/verify/*.json are read automatically)")
    p.add_argument("--repo-id", help="the repo the card is for (used in the loading examples)")
    p.add_argument("--revision", help="the branch the card is for (used in the loading examples)")
    p.add_argument("-o", "--output", help="write the card here instead of stdout")
    args = p.parse_args(argv)
    text = render_card(args.outputs, args.report, repo_id=args.repo_id, revision=args.revision)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(text.encode())} bytes)")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(run("card", main))
