"""The paper's Table 2 / Table 5 for several runs on the same split, computed by the statistics module."""

from __future__ import annotations

import html
import json
from pathlib import Path

import polars as pl

from f2b_study.atomic import write_text
from f2b_study.tables import write_csv

BONE_COLUMNS = (("accuracy", "Accuracy"), ("precision_macro", "Precision (macro)"), ("recall_macro", "Recall (macro)"),
                ("f1_macro", "F1 (macro)"), ("auc_macro_ovr", "AUC (macro OvR)"), ("kappa", "Kappa"))
OTHER_COLUMNS = (("accuracy", "Accuracy"), ("f1_macro", "F1 (macro)"), ("auc", "AUC"),
                 ("auc_macro_ovr", "AUC (macro OvR)"))


def comparison_rows(runs: dict[str, Path]) -> tuple[list[dict[str, object]], tuple[tuple[str, str], ...]]:
    rows = []
    columns = BONE_COLUMNS
    for arch, folder in runs.items():
        evaluation = json.loads((folder / "evaluation.json").read_text())
        if "overall" in evaluation:
            values, ci = evaluation["overall"], evaluation.get("ci", {})
        else:
            columns = OTHER_COLUMNS
            values, ci = evaluation["summary"], {"auc": evaluation["summary"].get("auc_ci")}
        row: dict[str, object] = {"method": arch}
        for key, _ in columns:
            row[key] = values.get(key)
            row[f"{key}_ci"] = ci.get(key)
        rows.append(row)
    columns = tuple(c for c in columns if any(r.get(c[0]) is not None for r in rows))
    return rows, columns


def write_comparison(out: Path, runs: dict[str, Path]) -> Path:
    """comparison.csv and comparison.html under ``out``; returns the HTML path."""
    rows, columns = comparison_rows(runs)
    flat = [{"method": r["method"], **{key: r[key] for key, _ in columns},
             **{f"{key}_ci_low": (r[f"{key}_ci"] or [None, None])[0] for key, _ in columns},
             **{f"{key}_ci_high": (r[f"{key}_ci"] or [None, None])[1] for key, _ in columns}} for r in rows]
    write_csv(pl.DataFrame(flat), out / "comparison.csv")
    best = {key: max((r[key] for r in rows if r[key] is not None), default=None) for key, _ in columns}

    def cell(row: dict[str, object], key: str) -> str:
        value = row[key]
        if value is None:
            return "<td>–</td>"
        ci = row[f"{key}_ci"]
        text = f"{value:.4f}" + (f"<br><small>({ci[0]:.3f}–{ci[1]:.3f})</small>" if ci else "")
        return f"<td><b>{text}</b></td>" if value == best[key] else f"<td>{text}</td>"

    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    body = "".join(f"<tr><td>{html.escape(str(r['method']))}</td>{''.join(cell(r, k) for k, _ in columns)}</tr>"
                   for r in rows)
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>Model comparison</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2em}td,th{padding:4px 10px;border-bottom:1px solid #ddd}"
            "</style></head><body><table><caption>Validation set, 95% CIs (AUC: DeLong; others: patient bootstrap)"
            f"; bold = best</caption><thead><tr><th>Method</th>{head}</tr></thead><tbody>{body}</tbody></table>"
            "</body></html>")
    target = out / "comparison.html"
    write_text(target, page)
    return target
