"""A sample two-centre study for the report tests (and the browser test's screenshot): hostile centre names and
patient IDs, a full participant flow, Table 1, a random-init FaceNet provenance, simulated labels."""

from __future__ import annotations

import numpy as np
import polars as pl

from f2b_study import CLASSES

HOSTILE_CENTRE = "<script>alert('centre')</script> Ningbo & Co"
HOSTILE_ID = "<script>alert('id')</script>"


def predictions(n: int, seed: int, centre: str, id_prefix: str) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.35, 0.45, 0.2])
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.6
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    sex = rng.choice(["F", "M"], n, p=[0.75, 0.25])
    y = np.where((sex == "M") & (y == 2), 1, y)  # no osteoporosis among men: a subgroup missing a class
    return pl.DataFrame({
        "patient_id": [f"{id_prefix}{i}" for i in range(n)],
        "bone_status": [CLASSES[k] for k in y],
        "p_normal": p[:, 0], "p_osteopenia": p[:, 1], "p_osteoporosis": p[:, 2],
        "sex": sex,
        "age_years": rng.uniform(52, 88, n).round(1),
        "weight_kg": (68 - 5 * y + rng.normal(0, 8, n)).round(1),
        "height_cm": rng.normal(160, 7, n).round(1),
        "center": [centre] * n,
        "split": rng.choice(["train", "validation"], n, p=[0.6, 0.4]),
    })


def sample_study(replicates: int = 200, include_faces: bool = False):
    from f2b_study.report.figures import reliability_svg
    from f2b_study.report.stard import ReportSection, StudyReportInput
    from f2b_study.stats.evaluation import evaluate_predictions
    from f2b_study.stats.meta import multicentre_summary
    from f2b_study.stats.predictions import predictions_from_frame
    from f2b_study.stats.table1 import table1

    frames = {"Centre A": predictions(260, 1, "Centre A", HOSTILE_ID),
              HOSTILE_CENTRE: predictions(200, 2, HOSTILE_CENTRE, "B-")}
    multi = multicentre_summary(frames, by=("sex", "center", "age_band"), replicates=replicates)
    pooled = predictions_from_frame(pl.concat(list(frames.values())), source="pooled")
    evaluation = evaluate_predictions(pooled, by=("sex", "center", "age_band"), replicates=replicates)
    all_rows = pl.concat(list(frames.values()))
    flow = {"enrolled": 620, "excluded": {"premenopausal": 70, "DXA incomplete": 31, HOSTILE_CENTRE: 1},
            "eligible": 518, "eligible_by_class": {"normal": 180, "osteopenia": 240, "osteoporosis": 98},
            "no_photo": 22, "photo_qc_excluded": {"no_face": 9, "eyes_closed": 27},
            "analysed": 460, "analysed_by_class": dict(all_rows.group_by("bone_status").len().iter_rows()),
            "split": {"train": pooled.train.height, "validation": pooled.evaluated.height},
            "by_class": {"train": dict(pooled.train.group_by("bone_status").len().iter_rows()),
                         "validation": dict(pooled.evaluated.group_by("bone_status").len().iter_rows())}}
    explanation = ReportSection(
        title="Region Shapley values <by class>",
        html="<p>Mean region attributions (sample fragment built with escaping).</p>",
        tables=[{"caption": "Table 6 <sample>", "columns": ["Region", "normal"], "rows": [["<b>jawline</b>", 0.12]]}],
        figures=[reliability_svg(evaluation["curves"]["reliability"], CLASSES, "expl")],
        contains_faces=True)
    return StudyReportInput(
        title="Face2Bone validation <sample> & test",
        evaluation=evaluation,
        cohorts=list(frames),
        flow=flow,
        table1=[("By split", table1(all_rows, "split", ["bone_status", "sex", "age_years", "bmi"])),
                ("By bone status", table1(all_rows, "bone_status", ["sex", "age_years", "weight_kg", "bmi"]))],
        multicentre=multi,
        provenance={"arch": "face2bone", "facenet_weights": "random-init (no VGGFace2 file given)",
                    "training_cohort_sha256": "0" * 64, "package_version": "0.1.0"},
        explanations=[explanation],
        simulated_labels=True,
        include_faces=include_faces,
        pseudonym_key=b"k" * 16,
        generated="2025-01-01",
    )
