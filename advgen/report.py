"""Reports: what the stages measured, as markdown tables and figures, and the README block built from them.

    advgen report                                  # every reports/*/report.json, table on stdout
    advgen report reports/verify_digits_study --readme README.md
    advgen report runs/digits_det runs/digits_rand reports/verify_digits_det --readme README.md

- `advgen report`: a path is a report (report dir or its report.json, from `advgen verify`), a generated output
  (output dir or its manifest.json, from `advgen generate`) or a benchmark JSON (`advgen bench`, `bench-e2e`):
  outputs give a "generated sets" table (count, targeted success, mean ||delta||_2, feature distance, attack and
  total seconds, the speed settings that ran), reports the verification table, benchmarks the speed table. The
  README block between `<!-- results:start -->` and `<!-- results:end -->` is replaced; every other byte of the
  README is left as it was, so its numbers are never typed by hand. Exit status 2 when a report cannot be read or
  the README lacks the markers.
- `write_verify_report`: what `advgen verify` writes to its report_dir (report.json, report.md, samples_<set>.png,
  accuracy.png as Figure 2b, robustness.png, figure2a.png) and the copy of report.json in OUT/verify/ of every
  output it verified, where `advgen card` finds it (each row names its output by `manifest_sha256`).
- `write_pipeline_report`: `advgen reproduce`'s DIR/report.md (Table 1 beside the paper, claims, source models,
  generated sets, stage times) with stage_times.png.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from advgen.errors import ReportError
from advgen.recipe import TARGETS_OF
from advgen.writers.layout import write_json


# ----------------------------------------------------------------------------------------------
# Tables and the README block (advgen report)
# ----------------------------------------------------------------------------------------------

def pct(v: Optional[float], spread: Optional[float] = None) -> str:
    """0.437 -> '43.7%'; with a spread: '43.7 ± 1.2%'; None -> '—'."""
    if v is None:
        return "—"
    return f"{100 * v:.1f} ± {100 * spread:.1f}%" if spread is not None else f"{100 * v:.1f}%"


def range_text(expected: dict) -> str:
    parts = []
    for key, label in (("std_acc", "std"), ("robust_acc", "robust")):
        r = expected.get(key)
        if r is not None:
            parts.append(f"{label} {100 * r[0]:g}–{100 * r[1]:g}%")
    return ", ".join(parts) or "—"


def display_name(r: dict) -> str:
    """The dataset key, marked when it was trained on the float (npy) copy and the key does not say so."""
    return r["dataset"] + (" (npy)" if r.get("use_npy") and "npy" not in r["dataset"] else "")


def markdown_table(results: list[dict], with_recipe: Optional[str] = None) -> str:
    head = ["dataset", "model", "std acc", "robust acc", "paper std", "paper robust", "expected range", "passed",
            "seconds"]
    if with_recipe is not None:
        head = ["recipe"] + head
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        robust = f"{pct(r['robust_acc'], r['robust_acc_std'])} (ε {r['eps']:g})"
        row = [display_name(r), r["model"], pct(r["std_acc"], r["std_acc_std"]),
               robust, pct(r["paper_std_acc"]), pct(r["paper_robust_acc"]), range_text(r["expected"]),
               "yes" if r["passed"] else "**NO**", f"{r['seconds']:.1f}"]
        if with_recipe is not None:
            row = [r.get("recipe", with_recipe)] + row
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


START, END = "<!-- results:start -->", "<!-- results:end -->"


def find_reports(paths: list[str]) -> list[Path]:
    """Report / manifest JSON files for report dirs, output dirs or files; none given = reports/*/report.json."""
    if not paths:
        found = sorted(Path("reports").glob("*/report.json"))
        if not found:
            raise ReportError("no reports/*/report.json; run `advgen verify RECIPE` first or name report dirs")
        return found
    out = []
    for p in map(Path, paths):
        f = next((p / n for n in ("report.json", "manifest.json") if (p / n).is_file()), p) if p.is_dir() else p
        if not f.is_file():
            raise ReportError(f"{p}: no report.json or manifest.json (run `advgen verify RECIPE` or "
                              "`advgen generate RECIPE` to write one)")
        out.append(f)
    return out


def kind_of(obj) -> Optional[str]:
    """"report" (advgen verify), "manifest" (advgen generate), "bench" (advgen bench / bench-e2e) or None."""
    if not isinstance(obj, dict):
        return None
    if "results" in obj:
        return "report"
    if {"shards", "stats", "dataset"} <= set(obj):
        return "manifest"
    if "methods" in obj and ("config" in obj or "recipe" in obj):
        return "bench"
    return None


def load_all(files: list[Path]) -> dict[str, list]:
    """Each file read once: {"rows": verification rows, "manifests": [...], "benches": [...]}."""
    out: dict[str, list] = {"rows": [], "manifests": [], "benches": []}
    for f in files:
        try:
            obj = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ReportError(f"{f}: not JSON ({type(e).__name__}); name a report, manifest or benchmark "
                              "JSON") from None
        kind = kind_of(obj)
        if kind is None:
            raise ReportError(f"{f}: not a verification report, generation manifest or benchmark JSON")
        if kind == "manifest":
            out["manifests"].append(obj)
        elif kind == "bench":
            out["benches"].append(dict(obj, file=f.name))
        else:
            if not isinstance(obj["results"], list):
                raise ReportError(f"{f}: 'results' is not a list; not a verification report")
            name = obj.get("name", f.parent.name)     # the report's folder when it is not the default reports/<name>
            own_folder = f.name == "report.json" and f.parent.name not in (name, "verify")   # DIR/verify: a pipeline's
            label = f.parent.name if own_folder else name
            out["rows"] += [dict(r, recipe=label, report_seeds=obj.get("seeds"), report_eval=obj.get("eval", {}),
                                 setting=setting_of(obj)) for r in obj["results"]]
    return out


def setting_of(report: dict) -> str:
    """Which setting a verification report measured, read off its recipe: the paper's, `fast`, the `cpu` scale of
    the same pipeline, or a stand-in (another dataset, another model, a subset)."""
    recipe = report.get("recipe") or {}
    src, model = recipe.get("source") or report.get("source") or {}, recipe.get("model") or {}
    arch, limit = model.get("arch"), src.get("limit")
    if src.get("kind") == "digits":
        return "stand-in: scikit-learn digits, not the paper's dataset"
    if "cifar" not in str(src.get("path", "")).lower():
        return "other data"
    subset = f"the first {limit:,} CIFAR-10 training images" if limit else "all of CIFAR-10"
    if arch == "resnet50" and not limit:
        return "the paper's setting (ResNet-50, all of CIFAR-10)"
    if arch == "airbench" and not limit:
        return f"`fast` scale (airbench w{model.get('width')}, all of CIFAR-10)"
    if arch == "airbench" and (model.get("width") or 64) < 64:
        return f"`cpu` scale: the fast pipeline at width {model.get('width')} on {subset}"
    if arch == "airbench":
        return f"`fast` on a subset (`fast10k`): the fast pipeline at width {model.get('width')} on {subset}"
    return f"stand-in: {arch} on {subset}"


def bench_table(benches: list[dict]) -> str:
    """`advgen bench` (one attack batch) and `advgen bench-e2e` (whole generate) results, one row per method."""
    lines = ["| benchmark | method | throughput | vs reference | success / mean ‖δ‖₂ | run |", "|---|---|---|---|---|---|"]
    for b in benches:
        if "config" in b:         # advgen bench
            c = b["config"]
            what = f"`{b['file']}`: {c['model']}, batch {c['batch']}, {c['steps']} steps"
            run = f"{b['device']} ({b.get('cpu_capability', '')}), {c['threads']} threads, median of {c['repeats']}"
            for name, e in b["methods"].items():
                if "skipped" in e:
                    continue
                ratio = e.get("ratio_vs_torchattacks")
                acc = (f"{pct(e['targeted_success'])} / {e['mean_l2']:.4f}" if "targeted_success" in e else "—")
                lines.append(f"| {what} | {name} | {e['images_steps_per_s']:.1f} img·steps/s | "
                             f"{'—' if ratio is None else f'{ratio:.2f}× torchattacks'} | {acc} | {run} |")
        else:                     # advgen bench-e2e
            what = f"`{b['file']}`: {Path(b['recipe']).stem}, {b['images']} images"
            run = f"{b['device']}, {b['cores']} cores, median of {b['repeats']}"
            for name, e in b["methods"].items():
                lines.append(f"| {what} | {name} | {e['seconds']:.1f} s, {e['images_per_s']:.1f} img/s | "
                             f"{e['ratio_vs_attack_only']:.2f}× attack alone | — | {run} |")
    return "\n".join(lines)


def speed_text(sp: dict, world_size: int = 1) -> str:
    """How a generation ran, as words: "2 proc, cpu, bfloat16, BN folded, NHWC, batch 250"."""
    return ", ".join(filter(None, [f"{world_size} proc", sp.get("device"), sp.get("autocast"),
                                   "BN folded" if sp.get("fuse_bn") else "", "NHWC" if sp.get("channels_last")
                                   else "", "compiled" if sp.get("compile") else "",
                                   f"batch {sp['batch_size']}" if "batch_size" in sp else ""]))


def generation_table(manifests: list[dict]) -> str:
    """One row per generated output: what was made, how well the attack did, what it cost, how it ran."""
    head = ["output", "set", "samples", "targeted success", "mean ‖δ‖₂", "feature dist. (start → end)",
            "attack s", "total s", "ran as"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in manifests:
        s, a, sec = m["stats"], m["recipe"]["attack"], m.get("seconds", {})
        targets = TARGETS_OF.get(m["dataset"])            # the dataset decides the attack (PGD sets have targets)
        what = (f"PGD {a['norm']} ε {a['eps']:g}, {a['steps']} steps, targets {targets}" if targets
                else f"inversion, {a['steps']} steps of {a['step_size']:g}, x0 {a['x0']}")
        ran = speed_text(m.get("speed") or {}, m.get("world_size", 1))
        dist = (f"{s['mean_rel_dist_init']:.3f} → {s['mean_rel_dist_final']:.4f}"
                if "mean_rel_dist_final" in s else "—")
        lines.append("| " + " | ".join([
            f"`{m['name']}`", f"{m['dataset']} ({what})", f"{m['count']:,}",
            pct(s["mean_success"]) if "mean_success" in s else "—",
            f"{s['mean_l2']:.3f}" if "mean_l2" in s else (f"{s['mean_l2_to_source']:.3f} (to x)"
                                                          if "mean_l2_to_source" in s else "—"),
            dist, f"{sec.get('attack', 0):.1f}", f"{sec.get('total_last_run', 0):.1f}", ran]) + " |")
    return "\n".join(lines)


def build_table(rows: list[dict], manifests: Optional[list[dict]] = None, benches: Optional[list[dict]] = None) -> str:
    """The README block: the generated sets (if any), one row per trained set with how it was measured, the
    benchmarks (if any)."""
    lines = []
    if manifests:
        lines += ["Generated sets (from each output's manifest.json; success and ‖δ‖₂ measured on the stored uint8 "
                  "images, seconds on the machine that ran it):", "", generation_table(manifests), ""]
    if rows:
        notes = sorted({f"`{r['recipe']}` ({r['setting']}): {r['model']}, robust = "
                        f"{r['report_eval'].get('norm', r.get('norm'))} PGD ε {r['eps']:g}, "
                        f"{r['report_eval'].get('steps', r.get('eval_steps'))} steps, seeds {r['report_seeds']}"
                        for r in rows})
        lines += [markdown_table(rows, with_recipe=""), "",
                  "Mean ± std over seeds; seconds per model (train + evaluate). Paper columns: CIFAR-10 / ResNet-50 "
                  "(Table 1, Figure 2b, PAPER_NOTES), where the paper has a number. \"passed\" means the mean lies "
                  "inside the recipe's own expected range (set from earlier runs of that recipe), not that it "
                  "matches the paper. Which setting each recipe measured (the paper's, `fast`, the `cpu` scale, or a "
                  "stand-in):", ""]
        lines += [f"- {n}" for n in notes] + [""]
    if benches:
        lines += ["Speed (`advgen bench`: one batch of targeted l2 PGD; `advgen bench-e2e`: a whole `generate` "
                  "against the attack alone):", "", bench_table(benches), ""]
    lines.append("Rebuilt by `advgen report`; do not edit by hand.")
    return "\n".join(lines)


def replace_block(text: str, block: str, where: str = "README") -> str:
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ReportError(f"{where}: needs exactly one '{START}' followed by one '{END}'")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}\n{END}{tail}"


# ----------------------------------------------------------------------------------------------
# advgen verify's report
# ----------------------------------------------------------------------------------------------

def write_verify_report(recipe, report: dict, original, sets: dict, outputs: list[Path]) -> None:
    """`advgen verify`'s report_dir: the figures (their names go into report["figures"]), report.json, report.md; and
    a copy of report.json in OUT/verify/<recipe name>.json of every advgen output in `outputs`, where the output's
    dataset card finds it. `sets`: every generated set of the recipe (advgen.writers.reader.TrainSet)."""
    out = recipe.out_dir
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    for name, entry in recipe.datasets.items():
        if entry.kind != "generated":
            continue
        ts = sets[name]
        if ts.source_index is not None:
            f = out / f"samples_{name}.png"
            if sample_grid(ts, original, recipe.samples, f, entry.title or name):
                figures[name] = f.name
    accuracy_chart(report, out / "accuracy.png")
    report["figures"] = {"accuracy": "accuracy.png"}
    if recipe.eval.extra_eps:
        robustness_curve(report, out / "robustness.png")
        report["figures"]["robustness"] = "robustness.png"
    report["figures"].update({f"samples_{k}": v for k, v in figures.items()})
    if recipe.grid:
        grid_sets = {recipe.datasets[k].title or k: sets[k] for k in recipe.grid}
        if figure2a(original, grid_sets, recipe.samples, out / "figure2a.png"):
            report["figures"]["figure2a"] = "figure2a.png"
    write_json(out / "report.json", report)
    for output in outputs:          # the card of each output finds its reports there
        write_json(output / "verify" / f"{recipe.name}.json", report)
    (out / "report.md").write_text(verify_markdown(report, recipe.trainer, figures))


def verify_markdown(report: dict, trainer: str, figures: dict[str, str]) -> str:
    """report.md of `advgen verify`: the table beside the paper, failures, claims, other radii, shifted labels,
    leakage probes, the figures."""
    ev = report["eval"]
    md = [f"# Verification: {report['name']}", "",
          f"Each model ({report['model']['name']}, trainer {trainer}) is trained from scratch on the "
          f"set named in the first column and evaluated on the original {report['source']['kind']} "
          f"{report['source']['test_split']} split ({report['source']['num_test']} images). Robust accuracy: "
          f"untargeted {ev['norm']} PGD, ε {ev['eps']:g}, {ev['steps']} steps of {ev['step_size']:.4g}, no random "
          f"start. Mean ± std over seeds {report['seeds']}; seconds = train + evaluate, per model, on "
          f"{report['device']}. Paper numbers: CIFAR-10 / ResNet-50 (PAPER_NOTES), where the paper has one.", "",
          markdown_table(report["results"]), ""]
    for r in report["results"]:
        if r["failures"]:
            md.append(f"- **{r['dataset']}** outside its expected range: {'; '.join(r['failures'])}")
    if report["orderings"]:
        md += ["", "| claim | left | right | gap | holds |", "|---|---|---|---|---|"]
        for o in report["orderings"]:
            md.append(f"| {o['claim']} | {pct(o['left'], o['left_std'])} | {pct(o['right'], o['right_std'])} | "
                      f"{100 * o['gap']:+.1f} pts | {'yes' if o['holds'] else '**NO**'} |")
    extra = [e for r in report["results"] for e in r["robust_acc_at"]]
    if extra:
        eps_list = list(dict.fromkeys(extra))
        md += ["", "Robust accuracy at other radii (same attack, not checked):", "",
               "| dataset | " + " | ".join(f"ε {e}" for e in eps_list) + " |", "|---|" + "---|" * len(eps_list)]
        for r in report["results"]:
            cells = [pct(r["robust_acc_at"][e]["mean"], r["robust_acc_at"][e]["std"]) if e in r["robust_acc_at"]
                     else "—" for e in eps_list]
            md.append(f"| {r['dataset']} | " + " | ".join(cells) + " |")
    shifted = [r for r in report["results"] if "shifted_acc" in r]
    if shifted:
        md += ["", "Accuracy against the shifted test labels (y + 1) mod C (Appendix D: a D̂det model that learned the "
               "robust features of y under the label y + 1 scores here):", "", "| dataset | shifted-label acc |",
               "|---|---|"] + [f"| {r['dataset']} | {pct(r['shifted_acc'], r['shifted_acc_std'])} |" for r in shifted]
    leak = [r for r in report["results"] if r["kind"] == "generated" and r["train"]["adversarial"]]
    if leak:
        md += ["", "Robust-feature leakage: models trained ADVERSARIALLY on a generated set cannot use the non-robust "
               "features that carry its labels, so their accuracy on the original test set is what robust features "
               "leaking through the perturbation carry (chance: 1 / classes):", "",
               "| dataset | adversarial training | std acc | robust acc |", "|---|---|---|---|"]
        for r in leak:
            a = r["train"]["adversarial"]
            md.append(f"| {r['dataset']} | {a['norm']} ε {a['eps']:g}, {a['steps']} steps | "
                      f"{pct(r['std_acc'], r['std_acc_std'])} | {pct(r['robust_acc'], r['robust_acc_std'])} |")
    md += ["", "![accuracy per training set](accuracy.png)", ""]
    if "robustness" in report["figures"]:
        md += ["![robust accuracy against the attack radius](robustness.png)", ""]
    if "figure2a" in report["figures"]:
        md += ["![the same source images in D and the generated sets (Figure 2a)](figure2a.png)", ""]
    for name, f in figures.items():
        md += [f"![{name}: originals (top) and generated images (bottom)]({f})", ""]
    return "\n".join(md)


# ----------------------------------------------------------------------------------------------
# advgen reproduce's report
# ----------------------------------------------------------------------------------------------

def write_pipeline_report(report: dict, out: Path) -> None:
    """`advgen reproduce`'s DIR/report.json, report.md and stage_times.png (its name goes into report["figures"])."""
    stage_chart(report, out / "stage_times.png")
    report["figures"]["stage_times"] = "stage_times.png"
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(pipeline_markdown(report))


def pipeline_markdown(r: dict) -> str:
    """Table 1 / Figure 2b beside the paper, the claims, source models, generated sets and the time of each stage."""
    ev = r["eval"]
    lines = [f"# {r['name']}: Table 1 / Figure 2b", "",
             f"Every model below is {r['model']['name']}, trained from scratch on the set in the first column and tested "
             f"on {r['num_test']} images of the original test split. Robust accuracy: untargeted {ev['norm']} PGD, "
             f"ε {ev['eps']:g}, {ev['steps']} steps of {ev['step_size']:.4g}. Mean ± std over seeds. Paper: CIFAR-10, "
             "ResNet-50 (Table 1, Figure 2b; PAPER_NOTES).", "",
             "| training set | std acc | robust acc | paper std | paper robust | in expected range | seeds |",
             "|---|---|---|---|---|---|---|"]
    for t in r["table1"]:
        lines.append(f"| {t['title']} | {pct(t['std_acc'], t['std_acc_std'])} | {pct(t['robust_acc'], t['robust_acc_std'])}"
                     f" | {pct(t['paper_std_acc'])} | {pct(t['paper_robust_acc'])} | {'yes' if t['passed'] else '**no**'}"
                     f" | {len(t['seeds'])} |")
    lines += ["", "Claims (checked on the means; gap in points, spread = the seeds' std):", "",
              "| claim | left | right | gap | holds |", "|---|---|---|---|---|"]
    for c in r["claims"]:
        lines.append(f"| `{c['claim']}` | {pct(c['left'], c['left_std'])} | {pct(c['right'], c['right_std'])} | "
                     f"{100 * c['gap']:+.1f} | {'yes' if c['holds'] else '**NO**'} |")
    lines += ["", "Source models (on the same test images):", "",
              "| model | clean | robust (eval ε) | other radii | train + eval s |", "|---|---|---|---|---|"]
    for m in r["source_models"]:
        other = ", ".join(f"{pct(v)} at ε {e}" for e, v in m["robust_at"].items()) or "—"
        rob = f"{pct(m['robust'])} at ε {m['robust_eps']:g}" if m["robust"] is not None else "—"
        lines.append(f"| {m['model']} | {pct(m['clean'])} | {rob} | {other} | {m['seconds'] or 0:.0f} |")
    lines += ["", f"Generated sets (targeted success must reach {pct(r['min_success'])}):", "",
              "| set | samples | targeted success | mean ‖δ‖₂ | feature distance (start → end) | ‖x_r − x‖₂ | attack s |",
              "|---|---|---|---|---|---|---|"]
    for g in r["generation"]:
        succ = "—" if g["success"] is None else pct(g["success"]) + ("" if g["passed"] else " **below**")
        dist = "—" if g["rel_dist_init"] is None else f"{g['rel_dist_init']:.3f} → {g['rel_dist_final']:.4f}"
        l2 = "—" if g["l2"] is None else f"{g['l2']:.3f}"
        l2s = "—" if g["l2_to_source"] is None else f"{g['l2_to_source']:.2f}"
        lines.append(f"| {g['title']} | {g['count']:,} | {succ} | {l2} | {dist} | {l2s} | {g['attack_seconds']:.0f} |")
    cores = next((s["machine_cores"] for s in r["stages"] if s.get("machine_cores")), None)
    lines += ["", "Stages (wall seconds of the run that made each; CPU seconds of rank 0; machine CPU seconds: what "
              f"the whole machine{f' ({cores} cores)' if cores else ''} was busy meanwhile, so machine ≫ rank 0 "
              "with one process means other jobs shared it):", "",
              "| stage | wall s | CPU s | machine CPU s | processes | finished |", "|---|---|---|---|---|---|"]
    for s in r["stages"]:
        machine = "—" if s.get("machine_cpu_seconds") is None else f"{s['machine_cpu_seconds']:.0f}"
        lines.append(f"| {s['stage']} | {s['seconds'] or 0:.0f} | {s['cpu_seconds_rank0'] or 0:.0f} | {machine} | "
                     f"{s['world_size']} | {s['finished']} |")
    lines += [f"| **all stages** | **{r['seconds_stages']:.0f}** | | | | |", ""]
    for key, caption in (("accuracy", "Figure 2b: standard and robust accuracy per training set, ours beside the paper"),
                         ("figure2a", "Figure 2a: the same source images in D, D̂R and D̂NR"),
                         ("robustness", "Accuracy against the attack radius ε"),
                         ("stage_times", "Time per stage")):
        if key in r["figures"]:
            lines += [f"![{caption}]({r['figures'][key]})", ""]
    lines.append(f"Overall: {'PASSED' if r['passed'] else 'NOT PASSED'} (claims, expected ranges and targeted success).")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------

def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _image_cell(ax, img, class_names: list[str], label: int, **title_kw) -> None:
    """One image of a grid (uint8 or float [0,1], CHW), titled with its class name."""
    img = img.cpu()
    x = img.float() / 255.0 if not img.dtype.is_floating_point else img.float()
    arr = x.clamp(0, 1).permute(1, 2, 0).numpy()
    ax.imshow(arr[..., 0] if arr.shape[2] == 1 else arr, cmap="gray" if arr.shape[2] == 1 else None,
              vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(class_names[label] if label < len(class_names) else str(label), **title_kw)
    ax.set_xticks([])
    ax.set_yticks([])


def sample_grid(ts, original, n: int, path: Path, title: str) -> bool:
    """Figure 2a: the first n samples, original image (top, its label) above the generated one (its label)."""
    plt = _pyplot()

    pos_of = {int(i): p for p, i in enumerate(original.indices.tolist())}
    picks = [j for j in range(len(ts.labels)) if int(ts.source_index[j]) in pos_of][:n]
    if not picks:
        return False
    fig, axes = plt.subplots(2, len(picks), figsize=(1.3 * len(picks) + 0.6, 3.5), squeeze=False)
    for col, j in enumerate(picks):
        p = pos_of[int(ts.source_index[j])]
        for row, (img, label) in enumerate(((original.images([p])[0], int(original.labels[p])),
                                             (ts.images[j], int(ts.labels[j])))):
            _image_cell(axes[row][col], img, original.class_names, label, fontsize=9)
        axes[0][0].set_ylabel("original", fontsize=9)
        axes[1][0].set_ylabel(title, fontsize=9)
    fig.suptitle(f"{title}: originals (top, true label) and training images (bottom, training label)", fontsize=9)
    fig.tight_layout(h_pad=1.2)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def figure2a(original, sets: dict, n: int, path: Path) -> bool:
    """Figure 2a: the same n source images as the original D (top row) and in each generated set (one row each),
    every cell titled with its training label; False when the sets share no source image with the original."""
    plt = _pyplot()

    pos_of = {int(i): p for p, i in enumerate(original.indices.tolist())}
    rows_of = {}
    for title, ts in sets.items():
        if ts.source_index is None:
            return False
        rows_of[title] = {int(i): j for j, i in enumerate(ts.source_index.tolist())}
    common = [i for i in original.indices.tolist() if all(i in r for r in rows_of.values())][:n]
    if not common:
        return False
    names = original.class_names
    fig, axes = plt.subplots(1 + len(sets), len(common), figsize=(1.2 * len(common) + 1.0, 1.45 * (1 + len(sets))),
                             squeeze=False)
    rows = [("D (original)", lambda i: (original.images([pos_of[i]])[0], int(original.labels[pos_of[i]])))]
    for title, ts in sets.items():
        rows.append((title, lambda i, ts=ts, r=rows_of[title]: (ts.images[r[i]], int(ts.labels[r[i]]))))
    for row, (title, get) in enumerate(rows):
        for col, i in enumerate(common):
            img, label = get(i)
            _image_cell(axes[row][col], img, names, label, fontsize=8, pad=2)
        axes[row][0].set_ylabel(title, fontsize=9)
    fig.suptitle("The same source images in D and in each generated set (titles: training labels)", fontsize=9)
    fig.tight_layout(h_pad=0.6)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def accuracy_series(report: dict) -> list[tuple]:
    """The bars of Figure 2b, in order: clean accuracy (ours, paper), then robust accuracy by increasing ε (the
    report's own ε with the paper's beside it, then the extra radii); (label, values, errors, color, hatch), series
    with no value left out."""
    results, ev = report["results"], report["eval"]

    def ours(key):
        return [r[key] for r in results], [r[key + "_std"] for r in results]

    def at(eps: float):        # robust accuracy of each set at an extra radius (None where it was not measured)
        cells = [next((v for k, v in (r.get("robust_acc_at") or {}).items() if float(k) == eps), None) for r in results]
        return [c and c["mean"] for c in cells], [c["std"] if c else 0.0 for c in cells]

    series = [("std (ours)", *ours("std_acc"), "#1f77b4", None),
              ("std (paper)", [r["paper_std_acc"] for r in results], None, "#aec7e8", "//")]
    extra = sorted({float(k) for r in results for k in (r.get("robust_acc_at") or {})} - {float(ev["eps"])})
    shades = ["#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
    for i, eps in enumerate(sorted([float(ev["eps"])] + extra)):       # the bars go by ε, clean first
        color = shades[i % len(shades)]
        if eps == float(ev["eps"]):
            series += [(f"robust ε {eps:g} (ours)", *ours("robust_acc"), color, None),
                       (f"robust ε {eps:g} (paper)", [r["paper_robust_acc"] for r in results], None, "#ffbb78", "//")]
        else:
            series.append((f"robust ε {eps:g} (ours)", *at(eps), color, None))
    return [s for s in series if any(v is not None for v in s[1])]


def accuracy_chart(report: dict, path: Path):
    """Figure 2b: standard and robust test accuracy per training set, ours (error bar = std over seeds) beside the
    paper's (hatched) where it has a number, the bars in order of ε (accuracy_series)."""
    plt = _pyplot()

    results, ev = report["results"], report["eval"]
    series = accuracy_series(report)
    x = np.arange(len(results))
    w = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(series) * len(results) + 2.0), 4.4))
    for i, (label, vals, err, color, hatch) in enumerate(series):
        heights = [100 * (v if v is not None else 0.0) for v in vals]
        ax.bar(x + (i - (len(series) - 1) / 2) * w, heights, w, label=label, color=color, hatch=hatch,
               yerr=None if err is None else [100 * e for e in err], capsize=2, edgecolor="black", linewidth=0.4)
    ax.set_xticks(x)
    ax.set_xticklabels([r["title"] + (" (npy)" if r.get("use_npy") and "npy" not in r["title"] else "")
                        for r in results], fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"{report['name']}: {report['model']['name']}, {len(report['seeds'])} seed(s)\n"
                 f"robust = untargeted {ev['norm']} PGD, {ev['steps']} steps, on the original test set", fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.09), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def robustness_curve(report: dict, path: Path):
    """Test accuracy against the PGD radius (0 = clean), one line per training set, error bars = std over seeds."""
    plt = _pyplot()

    ev = report["eval"]
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for r in report["results"]:
        pts = {0.0: (r["std_acc"], r["std_acc_std"]), float(r["eps"]): (r["robust_acc"], r["robust_acc_std"])}
        pts.update({float(e): (v["mean"], v["std"]) for e, v in r["robust_acc_at"].items()})
        eps = sorted(pts)
        ax.errorbar(eps, [100 * pts[e][0] for e in eps], yerr=[100 * pts[e][1] for e in eps], marker="o",
                    markersize=3, capsize=2, label=r["title"])
    ax.set_xlabel(f"{ev['norm']} radius ε of the untargeted PGD attack ({ev['steps']} steps)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{report['name']}: accuracy under attack, {len(report['seeds'])} seed(s)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def stage_chart(report: dict, path: Path) -> None:
    plt = _pyplot()

    rows = report["stages"]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    y = range(len(rows))
    ax.barh(list(y), [(r["seconds"] or 0) / 60 for r in rows], color="#1f77b4", label="wall")
    cores = next((r["machine_cores"] for r in rows if r.get("machine_cores")), 2)     # records before: 2 cores
    ax.barh(list(y), [(r["cpu_seconds_rank0"] or 0) / 60 / cores for r in rows], height=0.3, color="#ff7f0e",
            label=f"CPU of rank 0 ÷ {cores} cores")
    if any(r.get("machine_cpu_seconds") is not None for r in rows):
        ax.barh([i + 0.25 for i in y], [(r.get("machine_cpu_seconds") or 0) / 60 / cores for r in rows], height=0.15,
                color="#7f7f7f", label=f"whole machine's busy CPU ÷ {cores} cores")
    ax.set_yticks(list(y))
    ax.set_yticklabels([r["stage"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("minutes")
    ax.set_title(f"{report['name']}: {report['seconds_stages'] / 60:.1f} min in all stages", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    from advgen.cli import parser

    p = parser("advgen report", description="Rebuild the results table from report JSONs.")
    p.add_argument("reports", nargs="*", help="report dirs / report.json files of `advgen verify`, output dirs / "
                                              "manifest.json files of `advgen generate` (default: "
                                              "reports/*/report.json)")
    p.add_argument("--readme", help="replace the block between the results markers in this file")
    args = p.parse_args(argv)
    found = load_all(find_reports(args.reports))
    table = build_table(found["rows"], found["manifests"], found["benches"])
    if args.readme:
        readme = Path(args.readme)
        if not readme.is_file():
            raise ReportError(f"{readme}: no such file")
        text = readme.read_text()
        new = replace_block(text, table, str(readme))
        if new != text:
            readme.write_text(new)
        print(f"advgen report: {readme}: results block {'updated' if new != text else 'unchanged'}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    from advgen.cli import run

    sys.exit(run("report", main))
