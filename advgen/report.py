"""Rebuild the results tables from verification reports (and generation manifests), and put them in the README.

    advgen report                                  # every reports/*/report.json, table on stdout
    advgen report reports/verify_digits_study --readme README.md
    advgen report runs/digits_det runs/digits_rand reports/verify_digits_det --readme README.md

A path is a report (report dir or its report.json, from `advgen verify`) or a generated output (output dir or
its manifest.json, from `advgen generate`): outputs give a "generated sets" table (count, targeted success,
mean ||delta||_2, feature distance, attack and total seconds, the speed settings that ran), reports the
verification table.

The README block between `<!-- results:start -->` and `<!-- results:end -->` is replaced; every other
byte of the README is left as it was, so its numbers are never typed by hand. Exit status 2 when a
report cannot be read or the README lacks the markers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional


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


class ReportError(ValueError):
    pass


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
            label = f.parent.name if f.name == "report.json" and f.parent.name != name else name
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
    if arch == "airbench":
        return f"`cpu` scale: the fast pipeline at width {model.get('width')} on {subset}"
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


def generation_table(manifests: list[dict]) -> str:
    """One row per generated output: what was made, how well the attack did, what it cost, how it ran."""
    head = ["output", "set", "samples", "targeted success", "mean ‖δ‖₂", "feature dist. (start → end)",
            "attack s", "total s", "ran as"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in manifests:
        s, a, sec = m["stats"], m["recipe"]["attack"], m.get("seconds", {})
        what = (f"PGD {a['norm']} ε {a['eps']:g}, {a['steps']} steps, targets {a['targets']}" if a["kind"] == "pgd"
                else f"inversion, {a['steps']} steps of {a['step_size']:g}, x0 {a['x0']}")
        sp = m.get("speed") or {}
        ran = ", ".join(filter(None, [f"{m.get('world_size', 1)} proc", sp.get("device"), sp.get("autocast"),
                                      "BN folded" if sp.get("fuse_bn") else "", "NHWC" if sp.get("channels_last")
                                      else "", "compiled" if sp.get("compile") else "",
                                      f"batch {sp['batch_size']}" if "batch_size" in sp else ""]))
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="advgen report", description="Rebuild the results table from report JSONs.")
    p.add_argument("reports", nargs="*", help="report dirs / report.json files of `advgen verify`, output dirs / "
                                              "manifest.json files of `advgen generate` (default: "
                                              "reports/*/report.json)")
    p.add_argument("--readme", help="replace the block between the results markers in this file")
    args = p.parse_args(argv)
    try:
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
    except ReportError as e:
        print(f"advgen report: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
