"""The screening report (docs/methods.md, Screening, issue 8): one self-contained HTML file of aggregates only.

Counts by predicted class and pathway step, why patients got no prediction, photo QC, the distribution of the
predicted probabilities, per-centre counts and the model's provenance. No faces, no patient IDs: nothing in it
identifies anyone. Patients and photos are counted separately, from the tables themselves: a patient without
any photo is a patient without a prediction, not a usable photo.

Loud banners at the top: simulated labels (the checkpoint's provenance, passed as ``simulated_labels`` or found in
the summary), one predicted class for nearly everyone (report.degenerate), a randomly initialised FaceNet.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from f2b_study import CLASSES, DISCLAIMER, __version__
from f2b_study.inference.pathway import PATHWAY
from f2b_study.present.format import number
from f2b_study.present.labels import column_label
from f2b_study.present.style import CLASS_COLOURS, SvgFigure, figure_style, new_figure, to_svg
from f2b_study.report.degenerate import ONE_CLASS_SHARE

TEMPLATE = "screening.html.j2"


def probability_histogram_svg(patients: pl.DataFrame) -> SvgFigure | None:
    scored = patients.filter(pl.col("predicted").is_not_null())
    if scored.height == 0:
        return None
    bins = np.linspace(0, 1, 21)
    with figure_style():
        figure, axes = new_figure((9.6, 3.1), 1, len(CLASSES), sharey=True)
        for ax, name in zip(axes, CLASSES, strict=True):
            ax.hist(scored[f"p_{name}"].to_numpy(), bins=bins, color=CLASS_COLOURS[name], edgecolor="white")
            ax.set(title=f"p({name})", xlim=(0, 1), xlabel="predicted probability")
        axes[0].set_ylabel("patients")
        figure.tight_layout()
        return to_svg(figure, "hist")


def counts(patients: pl.DataFrame, images: pl.DataFrame) -> dict[str, int]:
    """Patients and photos, each counted from its own table."""
    used = patients["n_photos_used"].fill_null(0) if "n_photos_used" in patients.columns else None
    total = patients["n_photos"].fill_null(0) if "n_photos" in patients.columns else None
    usable_photos = int((images["qc_status"] == "ok").sum()) if "qc_status" in images.columns else 0
    with_usable = int((used > 0).sum()) if used is not None else int(patients["predicted"].is_not_null().sum())
    without_photo = int((total == 0).sum()) if total is not None else 0
    return {
        "patients": patients.height,
        "patients_with_usable_photo": with_usable,
        "patients_without_photo": without_photo,
        "patients_no_usable_photo": patients.height - with_usable - without_photo,
        "patients_predicted": int(patients["predicted"].is_not_null().sum()),
        "photos": images.height,
        "photos_usable": usable_photos,
        "photos_excluded": images.height - usable_photos,
    }


def labels_simulated(summary: dict[str, Any], flag: bool | None = None) -> bool | None:
    """Whether the model's training labels were simulated: the flag when given, else what the summary records
    (``simulated_labels`` at the top or under ``model``); None when nothing says."""
    if flag is not None:
        return bool(flag)
    model = summary.get("model") or {}
    for value in (summary.get("simulated_labels"), model.get("simulated_labels")):
        if value is not None:
            return bool(value)
    return None


def one_class_warning(by_class: dict[str, int]) -> str | None:
    """A sentence when one predicted class covers ≥ ONE_CLASS_SHARE of the patients with a prediction."""
    total = sum(by_class.values())
    if not total:
        return None
    top = max(by_class, key=lambda c: by_class[c])
    share = by_class[top] / total
    if share < ONE_CLASS_SHARE:
        return None
    return (f"The model predicted {top} for {by_class[top]} of {total} patients ({number(100 * share, 1)}%): it "
            "hardly separates the classes, so these predictions say little about any one patient.")


def render_screening_report(patients: pl.DataFrame, images: pl.DataFrame, summary: dict[str, Any],
                            title: str | None = None, simulated_labels: bool | None = None) -> str:
    """The report as one HTML string. ``simulated_labels``: the model was trained on simulated labels (from the
    checkpoint's provenance); None reads ``summary["simulated_labels"]`` or ``summary["model"]["simulated_labels"]``."""
    import jinja2
    from markupsafe import Markup

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    numbers = counts(patients, images)
    total = max(numbers["patients"], 1)
    by_class = {c: int(summary["by_predicted_class"].get(c, 0)) for c in CLASSES}
    classes = [{"name": c, "n": by_class[c], "pct": number(100 * by_class[c] / total, 1), "pathway": PATHWAY[c],
                "colour": CLASS_COLOURS[c]} for c in CLASSES]
    no_prediction = [{"reason": reason, "n": n, "pct": number(100 * n / total, 1)}
                     for reason, n in sorted(summary["no_prediction"].items(), key=lambda kv: -kv[1])]
    histogram = probability_histogram_svg(patients)
    facenet = (summary["model"].get("facenet_weights") or {})
    centre_columns = [*CLASSES, "no prediction"]
    context = {
        "title": title or "Screening report",
        "version": __version__,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "disclaimer": DISCLAIMER,
        "summary": summary,
        "counts": numbers,
        "classes": classes,
        "no_prediction": no_prediction,
        "qc": sorted(summary["photo_qc_exclusions"].items(), key=lambda kv: -kv[1]),
        "centres": summary["by_centre"],
        "centre_label": column_label("center"),
        "centre_columns": centre_columns,
        "histogram": Markup(histogram) if histogram else None,
        "random_facenet": facenet.get("source") == "random-init",
        "facenet": facenet,
        "simulated": labels_simulated(summary, simulated_labels),
        "one_class": one_class_warning(by_class),
        "css": Markup(stylesheet()),
    }
    return environment.get_template(TEMPLATE).render(**context)


def stylesheet() -> str:
    """The CSS every report shares (screen and print)."""
    return (Path(__file__).parent / "templates" / "report.css").read_text(encoding="utf-8")


def write_screening_report(result: Any, out: Path, title: str | None = None,
                           simulated_labels: bool | None = None) -> Path:
    """``out/screening_report.html`` for a screening result (its patients, images and summary).
    ``simulated_labels``: the checkpoint's provenance says its training labels were simulated (a banner)."""
    from f2b_study.atomic import write_text

    path = out / "screening_report.html"
    write_text(path, render_screening_report(result.patients, result.images, result.summary, title=title,
                                             simulated_labels=simulated_labels))
    result.files["report"] = path
    return path
