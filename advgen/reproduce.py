"""Table 1 / Figure 2b in one command: train both source models, generate D̂R, D̂NR, D̂rand and D̂det, train the
verification models and the two baselines, and write one report with the paper's numbers beside ours.

    advgen reproduce recipes/reproduce_cpu.yaml                  # CIFAR-10 subset, 2 CPU cores, ~2 h
    advgen reproduce recipes/reproduce_fast.yaml source.path=../shared/data/cifar10      # one GPU
    accelerate launch --multi_gpu --num_processes 2 advgen/reproduce.py recipes/reproduce_cpu.yaml
    advgen reproduce recipes/reproduce_paper.yaml --plan         # FLOPs and implied time per stage, runs nothing

A pipeline recipe (advgen.recipe.ReproduceRecipe) chains stage recipes that also run on their own
(`advgen train`, `advgen generate`, `advgen verify`); the pipeline only links them: each generation gets the
checkpoint its stage trained, every output lands under `dir`, and the verification reads those outputs.

    DIR/models/{standard,robust}_model.safetensors   the source models (+ .json with their accuracies)
    DIR/datasets/d_*/                                the four generated sets (advgen outputs)
    DIR/verify/                                      the verification report, figures, one JSON per model
    DIR/stages/<stage>.json                          what each stage was made from, its times
    DIR/report.md, report.json, stage_times.png      the Table 1 / Figure 2b report

Stages are cached by what they were made from (the resolved stage recipe and the sha256 of every upstream
checkpoint or manifest): a finished stage is never redone, a killed run resumes at the unfinished stage
(generation at its unfinished shard, verification at its unfinished model), and a stage whose inputs
changed is redone from scratch. KEY=VALUE overrides go to one stage with its name as prefix
(`robust_model.train.epochs=5`, `d_det.attack.eps=0.4`, `verify.seeds=[0]`) and to every stage without one
(`source.path=../shared/data/cifar10`); `dir=...` and `name=...` set the pipeline's own fields.

Exit status: 0 every claim of the verification recipe holds, every set is in its range and D̂rand / D̂det
reached `min_success`; 1 otherwise; 2 a recipe, checkpoint or dataset cannot be used (one line).
Costs per stage on the machines we measured are in the recipes' headers and in results/reproduce_*.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):   # run as a script (accelerate launch advgen/reproduce.py): make `advgen` importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import dataclasses
import datetime
import hashlib
import json
import resource
import time
from pathlib import Path
from typing import Optional

from advgen.cli import parser, run, say
from advgen.errors import PipelineError, RecipeError
from advgen.recipe import (PIPELINE_DATASETS, TARGETS_OF, GenerateRecipe, ReproduceRecipe, TrainRecipe, VerifyRecipe,
                           load_recipe, non_default, parse_override, to_dict)
from advgen.report import pipeline_markdown, write_pipeline_report
from advgen.writers.layout import MANIFEST, manifest_sha256, write_json

MODEL_STAGES = ("standard_model", "robust_model")
SOURCE_MODEL = {"d_robust": "robust_model", "d_nonrobust": "standard_model", "d_rand": "standard_model",
                "d_det": "standard_model"}
BASELINES = ("baseline_std", "baseline_adv")
STAGES = (*MODEL_STAGES, *PIPELINE_DATASETS, "verify")
TITLES = {"baseline_std": "Std training on D", "baseline_adv": "Adv training on D", "d_robust": "D̂R",
          "d_nonrobust": "D̂NR", "d_rand": "D̂rand", "d_det": "D̂det"}


# ------------------------------------------------------------------------------------------------------------------
# Recipes: the pipeline and its stages
# ------------------------------------------------------------------------------------------------------------------

def route_overrides(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split command-line overrides into the pipeline's own and each stage's ('common': keys of no stage).

    `name=`, `dir=`, `common=`, `min_success=`, `STAGE.recipe=`, `STAGE.overrides=` set the pipeline recipe;
    `STAGE.KEY=V` (or `datasets.STAGE.KEY=V`) goes to that stage's recipe; any other `KEY=V` to every stage.
    """
    own_fields = {f.name for f in dataclasses.fields(ReproduceRecipe)}
    own, stages = [], {"common": []}
    for text in overrides:
        parse_override(text)                     # KEY=VALUE with a YAML value, or a one-line error
        key, value = text.split("=", 1)
        parts = key.strip().split(".")
        if parts[0] == "datasets" and len(parts) > 1 and parts[1] in PIPELINE_DATASETS:
            parts = parts[1:]
        head = parts[0]
        if head in STAGES:
            if len(parts) == 1:
                raise RecipeError(f"override {text!r}: give a key of the {head} stage's recipe, e.g. {head}.seed=1")
            if len(parts) == 2 and parts[1] in ("recipe", "overrides"):
                prefix = "datasets." if head in PIPELINE_DATASETS else ""
                own.append(f"{prefix}{head}.{parts[1]}={value}")
            else:
                stages.setdefault(head, []).append(".".join(parts[1:]) + "=" + value)
        elif head in own_fields:
            own.append(text)
        else:
            stages["common"].append(text)
    return own, stages


@dataclasses.dataclass
class Pipeline:
    recipe: ReproduceRecipe
    extra: dict[str, list[str]]          # command-line overrides per stage ('common': every stage)

    @property
    def dir(self) -> Path:
        return Path(self.recipe.dir)

    def ref(self, stage: str):
        return self.recipe.datasets[stage] if stage in PIPELINE_DATASETS else getattr(self.recipe, stage)

    def overrides(self, stage: str, links: list[str]) -> list[str]:
        """common, then the stage's own, then the command line's, then the links the pipeline sets (last: they win)."""
        return [*self.recipe.common, *self.extra.get("common", []), *self.ref(stage).overrides,
                *self.extra.get(stage, []), *links]

    def checkpoint(self, stage: str) -> Path:
        return self.dir / "models" / f"{stage}.safetensors"

    def output(self, name: str) -> Path:
        return self.dir / "datasets" / name

    def train_recipe(self, stage: str) -> TrainRecipe:
        return self._load(stage, TrainRecipe, [f"checkpoint={self.checkpoint(stage)}"])

    def generate_recipe(self, name: str, checked: bool = True) -> GenerateRecipe:
        """The generation recipe linked to its source model's checkpoint. Before that checkpoint exists
        (`checked=False`, the up-front check of every stage), the model stage's recipe file stands in for it."""
        model = self.checkpoint(SOURCE_MODEL[name])
        if not checked:
            model = Path(self.ref(SOURCE_MODEL[name]).recipe)
        r = self._load(name, GenerateRecipe, [f"model={json.dumps({'checkpoint': str(model)})}",
                                              f"output.dir={self.output(name)}"])
        if r.dataset != name:
            raise PipelineError(f"datasets.{name}: {self.ref(name).recipe} makes {r.dataset!r}, not {name!r}; "
                                f"name a {name} generation recipe")
        return r

    def verify_recipe(self) -> VerifyRecipe:
        # each set's entry, and entries named `<set>_<anything>` (e.g. d_det_npy: the float copies, d_det_leak: a
        # leakage probe) that train on the same output
        raw = self._load("verify", VerifyRecipe, [])
        links = [f"datasets.{name}.path={self.output(s)}" for name in raw.datasets
                 if (s := set_of_entry(name)) is not None and raw.datasets[name].kind == "generated"]
        r = self._load("verify", VerifyRecipe, [*links, f"report_dir={self.dir / 'verify'}"])
        kinds = {n: e.kind for n, e in r.datasets.items()}
        want = {**{n: "generated" for n in PIPELINE_DATASETS}, "baseline_std": "baseline_std",
                "baseline_adv": "baseline_adv"}
        wrong = [n for n, k in want.items() if kinds.get(n) != k]
        if wrong:
            raise PipelineError(f"verify: {self.ref('verify').recipe} must have the entries "
                                f"{', '.join(f'{n} (kind {k})' for n, k in want.items())}; {wrong[0]!r} is "
                                f"{'missing' if wrong[0] not in kinds else 'of kind ' + repr(kinds[wrong[0]])}")
        return r

    def _load(self, stage: str, cls, links: list[str]):
        try:
            return load_recipe(self.ref(stage).recipe, cls, self.overrides(stage, links))
        except RecipeError as e:
            raise RecipeError(f"{stage}: {e}") from None


def set_of_entry(name: str) -> Optional[str]:
    """The generated set a verification entry trains on: its own name, or the set its name starts with + '_'."""
    return next((s for s in PIPELINE_DATASETS if name == s or name.startswith(s + "_")), None)


def load_pipeline(path, overrides=()) -> Pipeline:
    own, per_stage = route_overrides(list(overrides))
    recipe = load_recipe(path, ReproduceRecipe, own)
    p = Pipeline(recipe, per_stage)
    for stage in MODEL_STAGES:                 # every stage recipe is checked before anything runs
        p.train_recipe(stage)
    for name in PIPELINE_DATASETS:
        p.generate_recipe(name, checked=False)
    p.verify_recipe()
    return p


# ------------------------------------------------------------------------------------------------------------------
# Stage records: what a stage was made from, whether it finished, what it cost
# ------------------------------------------------------------------------------------------------------------------

def stage_key(p: "Pipeline", recipe_obj, upstream: dict) -> str:
    """sha256 of the resolved stage recipe (its non-default fields) and the hashes of its upstream artefacts.
    Paths under the pipeline's dir count relative to it, so a moved or copied run dir keeps its finished stages."""
    blob = json.dumps({"recipe": _key_fields(recipe_obj), "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(blob.replace(str(p.dir), "<dir>").encode()).hexdigest()


def _key_fields(recipe_obj) -> dict:
    """non_default(recipe). A generation recipe also names its attack's kind and target rule where the schema before
    `dataset` implied them did (kind 'inversion', targets 'rand'), so stages finished then keep their keys."""
    fields = non_default(recipe_obj)
    if isinstance(recipe_obj, GenerateRecipe):
        implied = {"kind": "inversion"} if recipe_obj.targets is None else (
            {"targets": "rand"} if TARGETS_OF[recipe_obj.dataset] == "rand" else {})
        if implied:
            fields["attack"] = {**fields.get("attack", {}), **implied}
    return fields


def rel(p: "Pipeline", path) -> str:
    return os.path.relpath(path, p.dir)


def record_path(p: Pipeline, stage: str) -> Path:
    return p.dir / "stages" / f"{stage}.json"


def read_record(p: Pipeline, stage: str) -> Optional[dict]:
    f = record_path(p, stage)
    try:
        rec = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("key"), str) else None


def write_record(p: Pipeline, stage: str, rec: dict) -> None:
    write_json(record_path(p, stage), json.loads(json.dumps(rec, default=str)))


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system): what a stage cost, load aside."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _machine_cpu_seconds() -> Optional[float]:
    """Busy CPU time of the whole machine so far (Linux /proc/stat: every process, other ranks and other jobs
    included), None elsewhere. Beside a stage's own CPU time it shows what else the machine was doing meanwhile."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq = ticks[:7]
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Stage:
    """Run `work` unless a finished record with the same key exists; record running/done, wall and CPU time."""

    def __init__(self, p: Pipeline, state, name: str, key: str, finished):
        self.p, self.state, self.name, self.key = p, state, name, key
        rec = read_record(p, name)
        self.cached = bool(rec and rec.get("status") == "done" and rec["key"] == key and finished(rec))
        self.stale = bool(rec and rec["key"] != key)       # made from other inputs: redo from scratch
        self.record = rec if self.cached else None
        state.wait_for_everyone()           # every rank decided from the same record before it changes

    def run(self, work, describe: dict) -> dict:
        if self.cached:
            if self.state.is_main_process:
                say(f"[{self.name}] done before ({self.record.get('seconds', 0):.0f} s then), inputs unchanged: "
                    "skipped")
            return self.record
        if self.state.is_main_process:
            say(f"[{self.name}] {'inputs changed: redoing' if self.stale else 'running'}")
            write_record(self.p, self.name, {"stage": self.name, "key": self.key, "status": "running",
                                              "started": _now(), **describe})
        self.state.wait_for_everyone()
        t0, c0, m0 = time.time(), _cpu_seconds(), _machine_cpu_seconds()
        outputs = work(self.stale)
        seconds, cpu, m1 = time.time() - t0, _cpu_seconds() - c0, _machine_cpu_seconds()
        rec = {"stage": self.name, "key": self.key, "status": "done", "finished": _now(),
               "seconds": round(seconds, 1), "cpu_seconds_rank0": round(cpu, 1),
               "machine_cpu_seconds": None if m0 is None or m1 is None else round(m1 - m0, 1),
               "machine_cores": os.cpu_count(),
               "world_size": self.state.num_processes, **describe, "outputs": outputs}
        if self.state.is_main_process:
            write_record(self.p, self.name, rec)
        self.state.wait_for_everyone()
        return rec


# ------------------------------------------------------------------------------------------------------------------
# The stages
# ------------------------------------------------------------------------------------------------------------------

def run_model_stage(p: Pipeline, state, stage: str) -> dict:
    from advgen.models.checkpoint import read_meta
    from advgen.models.train import train_model
    from advgen.writers.layout import sha256_file

    recipe = p.train_recipe(stage)
    ckpt = p.checkpoint(stage)

    def finished(rec):
        return ckpt.is_file() and sha256_file(ckpt) == rec.get("outputs", {}).get("sha256")

    def work(stale):
        if state.is_main_process:          # one rank trains; the others wait (long process-group timeout)
            train_model(recipe)
        state.wait_for_everyone()
        return {"checkpoint": rel(p, ckpt), "sha256": sha256_file(ckpt), "metrics": read_meta(ckpt).get("metrics", {})}

    return Stage(p, state, stage, stage_key(p, recipe, {}), finished).run(work, {"recipe": to_dict(recipe)})


def run_generate_stage(p: Pipeline, state, name: str, model_rec: dict) -> dict:
    from advgen.generate import generate

    recipe = p.generate_recipe(name)
    out = p.output(name)

    def finished(rec):
        return (out / MANIFEST).is_file() and json.loads((out / MANIFEST).read_text())[
            "checkpoint"]["sha256"] == model_rec["outputs"]["sha256"]

    def work(stale):
        generate(recipe, overwrite=stale and out.exists())
        m = json.loads((out / MANIFEST).read_text())
        return {"dir": rel(p, out), "manifest_sha256": manifest_sha256(out),
                "count": m["count"], "stats": m["stats"], "seconds": m["seconds"], "speed": m.get("speed")}

    key = stage_key(p, recipe, {SOURCE_MODEL[name]: model_rec["outputs"]["sha256"]})
    return Stage(p, state, name, key, finished).run(work, {"recipe": to_dict(recipe)})


def run_verify_stage(p: Pipeline, state, gen_recs: dict) -> dict:
    from advgen.verify import verify

    recipe = p.verify_recipe()
    report_file = recipe.out_dir / "report.json"

    def finished(rec):
        return report_file.is_file()

    def work(stale):
        verify(recipe)
        report = json.loads(report_file.read_text())
        return {"report": rel(p, report_file), "passed": report["passed"]}

    upstream = {n: r["outputs"]["manifest_sha256"] for n, r in gen_recs.items()}
    return Stage(p, state, "verify", stage_key(p, recipe, upstream), finished).run(work, {"recipe": to_dict(recipe)})


def reproduce(p: Pipeline) -> Optional[dict]:
    """Run (or resume) every stage, then write the report; returns it on the main process, None elsewhere."""
    import torch

    from advgen.generate import make_state, threads_per_rank

    state = make_state()
    torch.set_num_threads(threads_per_rank())
    t0 = time.time()
    if state.is_main_process:
        p.dir.mkdir(parents=True, exist_ok=True)
        (p.dir / "pipeline.yaml").write_text(_yaml({"recipe": to_dict(p.recipe), "overrides": p.extra}))
    recs = {}
    for stage in MODEL_STAGES:
        recs[stage] = run_model_stage(p, state, stage)
    for name in PIPELINE_DATASETS:
        recs[name] = run_generate_stage(p, state, name, recs[SOURCE_MODEL[name]])
    recs["verify"] = run_verify_stage(p, state, {n: recs[n] for n in PIPELINE_DATASETS})
    report = None
    if state.is_main_process:
        report = write_report(p, recs, time.time() - t0)
    state.wait_for_everyone()
    return report


def _yaml(obj) -> str:
    import yaml

    return yaml.safe_dump(json.loads(json.dumps(obj, default=str)), sort_keys=False, allow_unicode=True)


# ------------------------------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------------------------------

def source_model_rows(recs: dict) -> list[dict]:
    rows = []
    for stage in MODEL_STAGES:
        m = recs[stage]["outputs"].get("metrics", {})
        rows.append({"model": stage, "clean": m.get("test_acc"), "robust": m.get("robust_acc"),
                     "robust_eps": m.get("robust_eps"), "robust_at": m.get("robust_acc_at", {}),
                     "num_test": m.get("num_test"), "seconds": m.get("seconds")})
    return rows


def generation_rows(p: Pipeline, recs: dict) -> list[dict]:
    rows = []
    for name in PIPELINE_DATASETS:
        o = recs[name]["outputs"]
        s = o["stats"]
        row = {"dataset": name, "title": TITLES[name], "count": o["count"], "attack_seconds": o["seconds"]["attack"],
               "success": s.get("mean_success"), "l2": s.get("mean_l2"),
               "rel_dist_init": s.get("mean_rel_dist_init"), "rel_dist_final": s.get("mean_rel_dist_final"),
               "l2_to_source": s.get("mean_l2_to_source")}
        if row["success"] is not None:
            row["passed"] = row["success"] >= p.recipe.min_success
        rows.append(row)
    return rows


def entry_title(name: str, row: dict) -> str:
    if name in TITLES:
        return TITLES[name]
    base = TITLES.get(set_of_entry(name) or "", name)
    if row.get("use_npy"):
        return f"{base} (float copy)"
    if row["train"].get("adversarial"):
        return f"{base}, adversarial training (leakage probe)"
    return row.get("title") or name


def stage_rows(recs: dict) -> list[dict]:
    return [{"stage": s, **{k: recs[s].get(k) for k in ("seconds", "cpu_seconds_rank0", "machine_cpu_seconds",
                                                         "machine_cores", "world_size", "finished")}} for s in STAGES]


def write_report(p: Pipeline, recs: dict, seconds: float) -> dict:
    """Table 1 / Figure 2b and what made it, from the stage records and the verification report; written by
    advgen.report.write_pipeline_report."""
    vrep = json.loads((p.dir / recs["verify"]["outputs"]["report"]).read_text())
    by = {r["dataset"]: r for r in vrep["results"]}
    order = [n for n in (*BASELINES, *PIPELINE_DATASETS) if n in by] + [
        n for n in by if n not in (*BASELINES, *PIPELINE_DATASETS)]       # extra rows: float copies, probes
    gen = generation_rows(p, recs)
    success_ok = all(r.get("passed", True) for r in gen)
    report = {
        "name": p.recipe.name, "dir": str(p.dir), "finished": _now(),
        "passed": bool(vrep["passed"] and success_ok),
        "min_success": p.recipe.min_success,
        "source_models": source_model_rows(recs),
        "generation": gen,
        "table1": [{"title": entry_title(n, by[n])} | {k: by[n][k] for k in ("dataset", "std_acc", "std_acc_std", "robust_acc", "robust_acc_std",
                                           "robust_acc_at", "paper_std_acc", "paper_robust_acc", "passed", "seeds",
                                           "num_train", "seconds")} for n in order],
        "eval": vrep["eval"], "model": vrep["model"], "num_test": vrep["source"]["num_test"],
        "claims": vrep["orderings"],
        "stages": stage_rows(recs),
        "seconds_stages": round(sum(r["seconds"] or 0 for r in stage_rows(recs)), 1),
        "seconds_this_run": round(seconds, 1),
        "figures": {k: f"verify/{v}" for k, v in vrep.get("figures", {}).items()},
    }
    write_pipeline_report(report, p.dir)
    say(f"{p.recipe.name}: report -> {p.dir / 'report.md'}")
    return report


# ------------------------------------------------------------------------------------------------------------------
# --plan: FLOPs per stage and the time they imply
# ------------------------------------------------------------------------------------------------------------------

def forward_flops(model_cfg, shape, num_classes: int) -> float:
    """FLOPs (2 per multiply-add) of one forward pass of one image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from advgen.models.nets import build_classifier

    c = shape[0]
    mean = model_cfg.mean or [0.5] * c
    std = model_cfg.std or [0.25] * c
    m = build_classifier(model_cfg.arch, num_classes, c, mean * (c // len(mean)), std * (c // len(std)),
                         model_cfg.width, model_cfg.feature_dim).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(torch.rand(1, *shape))
    return float(fc.get_total_flops())


def split_size(cfg, split: str) -> tuple[int, tuple, int]:
    """(number of images, shape, classes) of a source split, after limits, without decoding every image."""
    from advgen.sources import load_source, open_hf_split, split_limit

    if cfg.kind == "hf":
        ds = open_hf_split(cfg, split)
        n = len(ds)
        limit = split_limit(cfg, split)
        img = ds.select_columns([cfg.image_column]).with_format("numpy")[0][cfg.image_column]
        shape = (img.shape[2] if img.ndim == 3 else 1, img.shape[0], img.shape[1])
        feat = ds.features[cfg.label_column]
        classes = len(feat.names) if hasattr(feat, "names") else 10
        return (min(n, limit) if limit else n), shape, classes
    src = load_source(cfg, split)
    return len(src), tuple(src.shape), src.num_classes


def arch_name(m) -> str:
    return f"{m.arch} w{m.width}" if m.arch in ("small_cnn", "airbench") else m.arch


def train_flops(f: float, n: int, cfg) -> float:
    """Standard training ~ 3 forward passes per image (forward + backward); PGD inside: 2 per attack step."""
    adv = cfg.adversarial
    return cfg.epochs * n * (3 * f + (2 * f * adv.steps if adv else 0))


def eval_flops(f: float, n_test: int, steps: int, radii: int) -> float:
    return n_test * f + radii * n_test * (2 * f * steps + f)


def plan(p: Pipeline, device: str) -> dict:
    rows = []
    fwd = {}
    for stage in MODEL_STAGES:
        r = p.train_recipe(stage)
        n, shape, classes = split_size(r.source, r.source.split)
        n_test, _, _ = split_size(r.source, r.source.test_split)
        fwd[stage] = f = forward_flops(r.model, shape, classes)
        radii = (1 if (r.train.eval_eps or r.train.adversarial) else 0) + len(r.train.eval_extra_eps)
        flops = train_flops(f, n, r.train) + eval_flops(f, n_test, r.train.eval_steps, radii)
        rows.append({"stage": stage, "images": n, "forward_mflop": f / 1e6, "flops": flops,
                     "what": f"{arch_name(r.model)}: {r.train.epochs} epochs"
                             + (f", PGD {r.train.adversarial.steps} steps" if r.train.adversarial else "")})
    for name in PIPELINE_DATASETS:
        r = p.generate_recipe(name, checked=False)
        n, _, _ = split_size(r.source, r.source.split)
        f = fwd[SOURCE_MODEL[name]]
        rows.append({"stage": name, "images": n, "forward_mflop": f / 1e6,
                     "flops": n * (2 * f * r.attack.steps + 3 * f),
                     "what": f"{'pgd' if r.targets else 'inversion'} {r.attack.steps} steps"})
    v = p.verify_recipe()
    n_src, shape, classes = split_size(v.source, v.source.split)
    n_test, _, _ = split_size(v.source, v.source.test_split)
    fv = forward_flops(v.model, shape, classes)
    total_v = 0.0
    for name, e in v.datasets.items():
        n = n_src if e.kind != "generated" else next(x["images"] for x in rows if x["stage"] == set_of_entry(name))
        cfg = v.train_config(e)
        total_v += len(v.seeds_of(e)) * (train_flops(fv, n, cfg) + eval_flops(fv, n_test, v.eval.steps,
                                                                        1 + len(v.eval.extra_eps)))
    rows.append({"stage": "verify", "images": n_src, "forward_mflop": fv / 1e6, "flops": total_v,
                 "what": f"{len(v.datasets)} sets, {sum(len(v.seeds_of(e)) for e in v.datasets.values())} models, "
                         f"{arch_name(v.model)}"})
    tflops = p.recipe.plan_tflops.get(device)
    if tflops is None:
        raise PipelineError(f"plan_tflops has no entry for device {device!r}; add one to the recipe")
    for row in rows:
        row["seconds"] = row["flops"] / (tflops * 1e12)
    total = sum(r["flops"] for r in rows)
    return {"name": p.recipe.name, "device": device, "assumed_tflops": tflops, "stages": rows, "total_flops": total,
            "total_seconds": total / (tflops * 1e12)}


def plan_table(pl: dict) -> str:
    lines = [f"{pl['name']}: FLOPs per stage (2 per multiply-add; training = 3 forward passes per image, an attack "
             f"step = 2), time at an assumed {pl['assumed_tflops']:g} TFLOP/s achieved on {pl['device']}:", "",
             "| stage | what | images | forward MFLOP/img | FLOP | implied time |", "|---|---|---|---|---|---|"]
    for r in pl["stages"]:
        lines.append(f"| {r['stage']} | {r['what']} | {r['images']:,} | {r['forward_mflop']:.1f} | "
                     f"{_si(r['flops'])} | {_dur(r['seconds'])} |")
    lines.append(f"| **total** | | | | **{_si(pl['total_flops'])}** | **{_dur(pl['total_seconds'])}** |")
    return "\n".join(lines)


def _si(x: float) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.3g}"


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")


# ------------------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = parser("advgen reproduce", description="Table 1 / Figure 2b in one command.")
    ap.add_argument("recipe", help="pipeline recipe (recipes/reproduce_{cpu,fast,paper}.yaml)")
    ap.add_argument("overrides", nargs="*", help="STAGE.KEY=VALUE for one stage, KEY=VALUE for every stage")
    ap.add_argument("--plan", action="store_true", help="print FLOPs and implied time per stage; run nothing")
    ap.add_argument("--device", choices=("cuda", "cpu"), default=None, help="with --plan: the device to price")
    ap.add_argument("--out", help="with --plan: also write the plan as JSON here")
    args = ap.parse_intermixed_args(argv)
    p = load_pipeline(args.recipe, args.overrides)
    if args.plan:
        import torch

        pl = plan(p, args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        print(plan_table(pl))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(pl, indent=2))
        return 0
    report = reproduce(p)
    if report is None:
        return 0
    print(pipeline_markdown(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(run("reproduce", main))
