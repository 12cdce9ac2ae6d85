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


def sample_methods():
    """MethodsFacts as the orchestration fills them (two centres, QC thresholds, the training settings)."""
    import dataclasses

    from f2b_study.faces.qc import QCThresholds
    from f2b_study.report.methods import CentreFacts, MethodsFacts

    return MethodsFacts(
        centres=[CentreFacts("Centre A", records=300), CentreFacts(HOSTILE_CENTRE, records=320,
                                                                   eligibility="postmenopausal women only")],
        simulated_labels=True, split="stratified", split_seed=42,
        photo_qc=dataclasses.asdict(QCThresholds()), face_pipeline="faces-1",
        arch="face2bone", model_config={"input_size": 112, "dims": [24, 48, 96, 192]},
        training={"epochs": 80, "batch_size": 32, "patience": 10, "seed": 42, "loss": "cross-entropy",
                  "optimizer": "Adam", "schedule": "OneCycleLR (max lr 1e-3, 30% warm-up)", "epochs_run": 12,
                  "best_epoch": 2, "class_imbalance": "none (unweighted cross-entropy, no resampling)"},
        facenet_weights={"source": "random-init"})


def degenerate_study(replicates: int = 50):
    """A model that names osteopenia for everyone (the demo's first impression): accuracy = prevalence, κ = 0."""
    from f2b_study.report.stard import StudyReportInput
    from f2b_study.stats.evaluation import evaluate_predictions
    from f2b_study.stats.predictions import predictions_from_frame

    frame = predictions(120, 5, "Centre A", "D-")
    rng = np.random.default_rng(5)
    p_osteopenia = rng.uniform(0.5, 0.6, frame.height)
    p_normal = (1 - p_osteopenia) * rng.uniform(0.3, 0.7, frame.height)
    frame = frame.with_columns(pl.Series("p_osteopenia", p_osteopenia), pl.Series("p_normal", p_normal),
                               pl.Series("p_osteoporosis", 1 - p_osteopenia - p_normal))
    evaluation = evaluate_predictions(predictions_from_frame(frame, source="degenerate"), by=("sex",),
                                      replicates=replicates)
    return StudyReportInput(title="Degenerate model", evaluation=evaluation, generated="2025-01-01",
                            pseudonym_key=b"d" * 16)


def evaluation_report_study(replicates: int = 50):
    """What `f2b-study evaluate` builds from a predictions file: no provenance, a source note, a short flow."""
    from f2b_study.report.stard import StudyReportInput
    from f2b_study.stats.evaluation import evaluate_predictions
    from f2b_study.stats.predictions import predictions_from_frame
    from f2b_study.stats.table1 import table1

    frame = predictions(150, 7, "Centre A", "E-")
    ps = predictions_from_frame(frame, source="predictions.csv")
    evaluation = evaluate_predictions(ps, by=("sex", "age_band"), replicates=replicates)
    return StudyReportInput(
        title="Diagnostic accuracy of predictions.csv", evaluation=evaluation,
        flow={"split": {"train": ps.train.height, "validation": ps.evaluated.height}},
        table1=[("Evaluated patients by bone status",
                 table1(ps.evaluated, "bone_status", ["sex", "age_years", "weight_kg"]))],
        pseudonym_key=b"e" * 16, generated="2025-01-01",
        source_note="Evaluated from the predictions file predictions.csv by f2b-study evaluate.")


def screening_sample():
    """(patients, images, summary) as `screen` writes them: one patient without any photo, one whose only photo
    failed QC, one with two photos; two centres (one hostile name)."""
    from f2b_study.inference.pathway import recommendation

    rng = np.random.default_rng(3)
    n = 12
    ids = [f"P{i:02d}" for i in range(n)]
    photos = {pid: 1 for pid in ids}
    photos[ids[0]] = 0  # no photo at all
    photos[ids[2]] = 2
    image_rows = []
    for pid in ids:
        for k in range(photos[pid]):
            failed = pid == ids[1]
            proba = rng.dirichlet([2, 3, 1])
            image_rows.append({"patient_id": pid, "photo": f"{pid}_{k}.jpg", "qc_status": "fail" if failed else "ok",
                               "qc_reason": "no_face" if failed else None,
                               **{f"p_{c}": None if failed else float(proba[j]) for j, c in enumerate(CLASSES)}})
    images = pl.DataFrame(image_rows, infer_schema_length=None)
    scored = images.filter(pl.col("qc_status") == "ok").group_by("patient_id").agg(
        *[pl.col(f"p_{c}").mean() for c in CLASSES], pl.len().alias("n_photos_used"))
    patients = pl.DataFrame({"patient_id": ids, "n_photos": [photos[p] for p in ids],
                             "center": ["Centre A" if i % 2 else HOSTILE_CENTRE for i in range(n)]})
    patients = patients.join(scored, on="patient_id", how="left").with_columns(pl.col("n_photos_used").fill_null(0))
    proba = patients.select([f"p_{c}" for c in CLASSES]).to_numpy()
    has = ~np.isnan(proba).any(axis=1)
    predicted = [CLASSES[int(np.nanargmax(row))] if ok else None for row, ok in zip(proba, has, strict=True)]
    patients = patients.with_columns(pl.Series("predicted", predicted, dtype=pl.String))
    patients = patients.with_columns(pl.col("predicted").map_elements(recommendation, return_dtype=pl.String,
                                                                      skip_nulls=False).alias("recommendation"))
    by_class = {c: predicted.count(c) for c in CLASSES}
    by_centre: dict[str, dict[str, int]] = {}
    for centre, klass in zip(patients["center"], predicted, strict=True):
        key = klass or "no prediction"
        by_centre.setdefault(centre, {}).setdefault(key, 0)
        by_centre[centre][key] += 1
    summary = {
        "patients": n, "photos": images.height, "photos_used": int((images["qc_status"] == "ok").sum()),
        "by_predicted_class": by_class,
        "no_prediction": {"no photo": 1, "no usable photo (no_face)": 1},
        "photo_qc_exclusions": {"no_face": 1},
        "by_centre": by_centre,
        "model": {"path": "runs/x/best", "arch": "face2bone", "created": "2025-01-01T00:00:00",
                  "training_cohort_hash": "ab" * 32, "facenet_weights": {"source": "random-init"},
                  "preprocessing_version": "faces-1", "package_version": "0.1.0"},
        "unmatched": 3,
    }
    return patients, images, summary
