"""Rebuild the results table from verification reports, and put it in the README between markers.

    advgen report                                  # every reports/*/report.json, table on stdout
    advgen report reports/verify_digits_study --readme README.md

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
    """Report dirs or report.json files; none given = every reports/*/report.json, sorted."""
    if not paths:
        found = sorted(Path("reports").glob("*/report.json"))
        if not found:
            raise ReportError("no reports/*/report.json; run `advgen verify RECIPE` first or name report dirs")
        return found
    out = []
    for p in map(Path, paths):
        f = p / "report.json" if p.is_dir() else p
        if not f.is_file():
            raise ReportError(f"{p}: no report.json (run `advgen verify RECIPE` to write one)")
        out.append(f)
    return out


def load_results(files: list[Path]) -> list[dict]:
    rows = []
    for f in files:
        try:
            report = json.loads(f.read_text())
            results = report["results"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ReportError(f"{f}: not a verification report ({type(e).__name__}: {e})") from None
        for r in results:
            rows.append(dict(r, recipe=report.get("name", f.parent.name), report_seeds=report.get("seeds"),
                             report_eval=report.get("eval", {})))
    return rows


def build_table(rows: list[dict]) -> str:
    """The README block: one row per trained set, with the recipe, then how the numbers were measured."""
    notes = sorted({f"`{r['recipe']}`: {r['model']}, robust = {r['report_eval'].get('norm', r.get('norm'))} PGD "
                    f"ε {r['eps']:g}, {r['report_eval'].get('steps', r.get('eval_steps'))} steps, "
                    f"seeds {r['report_seeds']}" for r in rows})
    lines = [markdown_table(rows, with_recipe=""), "",
             "Mean ± std over seeds; seconds per model (train + evaluate). Paper columns: CIFAR-10 / ResNet-50 "
             "(Table 1, Figure 2b, PAPER_NOTES), where the paper has a number. Rebuilt by `advgen report`; "
             "do not edit by hand.", ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


def replace_block(text: str, block: str, where: str = "README") -> str:
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ReportError(f"{where}: needs exactly one '{START}' followed by one '{END}'")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}\n{END}{tail}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="advgen report", description="Rebuild the results table from report JSONs.")
    p.add_argument("reports", nargs="*", help="report dirs or report.json files (default: reports/*/report.json)")
    p.add_argument("--readme", help="replace the block between the results markers in this file")
    args = p.parse_args(argv)
    try:
        table = build_table(load_results(find_reports(args.reports)))
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
