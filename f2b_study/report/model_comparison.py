"""The paper's Table 2 / Table 5 for several runs trained on the same split (`train --arch a,b,c`): each run's
validation figures from its evaluation.json, and, for bone-status runs, paired DeLong tests and net-benefit
differences of every model against the first (`stats.compare`, as `evaluate --compare` computes them)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import polars as pl

from f2b_study.atomic import write_text
from f2b_study.present.format import interval, number
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
        text = number(value, 3) + (f"<br><small>{html.escape(interval(ci))}</small>" if ci else "")
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
    paired_comparison(out, runs)
    return target


def paired_comparison(out: Path, runs: dict[str, Path], replicates: int = 2000, seed: int = 42) -> dict | None:
    """model_comparison.json/.csv/.svg: every run against the first on the same validation patients (paired
    DeLong per class and macro, net-benefit differences); None for runs of another target."""
    from f2b_study.errors import InputError
    from f2b_study.jsonutil import dumps
    from f2b_study.report.clinical_figures import model_comparison_svg
    from f2b_study.stats.compare import align, compare_models, comparison_rows
    from f2b_study.stats.predictions import read_predictions

    try:
        sets = [read_predictions(folder / "val_predictions.csv") for folder in runs.values()]
        _ids, y, probas = align(sets)
    except InputError:  # not bone-status predictions (e.g. --target sex), or runs that lost different patients
        return None
    comparison = compare_models(list(runs), y, probas, replicates=replicates, seed=seed)
    write_text(out / "model_comparison.json", dumps(comparison))
    write_csv(pl.DataFrame(comparison_rows(comparison), infer_schema_length=None), out / "model_comparison.csv")
    write_text(out / "model_comparison.svg", model_comparison_svg(comparison, "cmp") + "\n")
    return comparison
