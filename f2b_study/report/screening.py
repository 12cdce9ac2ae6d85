"""The screening report (DESIGN §9, issue 8): one self-contained HTML file of aggregates only.

Counts by predicted class and pathway step, why patients got no prediction, photo QC, the distribution of the
predicted probabilities, per-centre counts and the model's provenance. No faces, no patient IDs: nothing in it
identifies anyone.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from f2b_study import CLASSES, DISCLAIMER, __version__
from f2b_study.inference.pathway import PATHWAY
from f2b_study.report.figures import CLASS_COLOURS, _plt, to_svg

TEMPLATE = "screening.html.j2"


def probability_histogram_svg(patients: pl.DataFrame) -> str | None:
    scored = patients.filter(pl.col("predicted").is_not_null())
    if scored.height == 0:
        return None
    plt = _plt()
    figure, axes = plt.subplots(1, len(CLASSES), figsize=(9, 2.6), sharey=True)
    bins = np.linspace(0, 1, 21)
    for ax, name in zip(axes, CLASSES, strict=True):
        ax.hist(scored[f"p_{name}"].to_numpy(), bins=bins, color=CLASS_COLOURS[name], edgecolor="white")
        ax.set(title=f"p({name})", xlim=(0, 1), xlabel="predicted probability")
    axes[0].set_ylabel("patients")
    figure.tight_layout()
    return to_svg(figure, "hist")


def render_screening_report(patients: pl.DataFrame, images: pl.DataFrame, summary: dict[str, Any],
                            title: str | None = None) -> str:
    import jinja2
    from markupsafe import Markup

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    total = max(summary["patients"], 1)
    classes = [{"name": c, "n": summary["by_predicted_class"].get(c, 0),
                "pct": 100 * summary["by_predicted_class"].get(c, 0) / total, "pathway": PATHWAY[c],
                "colour": CLASS_COLOURS[c]} for c in CLASSES]
    histogram = probability_histogram_svg(patients)
    facenet = (summary["model"].get("facenet_weights") or {})
    context = {
        "title": title or "Screening report",
        "version": __version__,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "disclaimer": DISCLAIMER,
        "summary": summary,
        "classes": classes,
        "no_prediction": sorted(summary["no_prediction"].items(), key=lambda kv: -kv[1]),
        "qc": sorted(summary["photo_qc_exclusions"].items(), key=lambda kv: -kv[1]),
        "centres": summary["by_centre"],
        "centre_columns": [*CLASSES, "no prediction"],
        "histogram": Markup(histogram) if histogram else None,
        "random_facenet": facenet.get("source") == "random-init",
        "facenet": facenet,
    }
    return environment.get_template(TEMPLATE).render(**context)


def write_screening_report(result: Any, out: Path, title: str | None = None) -> Path:
    """``out/screening_report.html`` for a screening result (its patients, images and summary)."""
    from f2b_study.atomic import write_text

    path = out / "screening_report.html"
    write_text(path, render_screening_report(result.patients, result.images, result.summary, title=title))
    result.files["report"] = path
    return path
