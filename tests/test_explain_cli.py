"""`f2b-study explain` end to end on real standardised faces and a tiny saved model: outputs, the recorded baseline,
FaceNet mode and split, bad input, and the report sections."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import polars as pl
import pytest
import torch
from faces_support import sample_photos

from f2b_study import CLASSES
from f2b_study.cli import main

torch.set_num_threads(1)
pytestmark = pytest.mark.slow  # real face standardisation (MediaPipe) once per module, then small models

T_SCORES = {"normal": (-0.2, 0.1), "osteopenia": (-1.6, -1.2), "osteoporosis": (-2.9, -2.7)}
N_PATIENTS = 12


@pytest.fixture(scope="module")
def study(module_tmp) -> dict[str, Path]:
    """12 patients (4 per class) with a real portrait each; a run folder with a tiny Face2Bone, split 8 train /
    4 validation (one patient left out of split.csv: an 'external' patient), its preprocess.csv and the cache."""
    from f2b_study.cohort.photos import join_photos
    from f2b_study.faces.preprocess import preprocess_photos
    from f2b_study.models import create_model, save_checkpoint

    root = module_tmp("explain")
    photos = root / "photos"
    photos.mkdir()
    lines = ["patient_id,sex,age_years,menopausal_status,t_spine_l1_l4,t_femoral_neck,t_total_hip"]
    split_rows = []
    for i, source in enumerate(sample_photos(40)[:N_PATIENTS]):
        pid = f"P{i:02d}"
        shutil.copy(source, photos / f"{pid}.jpg")
        cls = CLASSES[i % 3]
        spine, hip = T_SCORES[cls]
        sex = "F" if i % 2 == 0 else "M"
        lines.append(f"{pid},{sex},{60 + i},{'post' if sex == 'F' else ''},{spine},{hip},{hip}")
        if i < 11:
            split_rows.append({"patient_id": pid, "bone_status": cls, "sex": sex,
                               "split": "train" if i < 8 else "validation"})
    cohort = root / "cohort.csv"
    cohort.write_text("\n".join(lines) + "\n")
    run = root / "run"
    run.mkdir()
    cache = root / "cache"
    joined = join_photos(pl.DataFrame({"patient_id": [f"P{i:02d}" for i in range(N_PATIENTS)]}), photos,
                         table=cohort)
    frame = preprocess_photos(joined.photos, run, cache_dir=cache, progress=False).frame
    assert (frame["status"] == "ok").sum() >= 10, frame.select("photo", "status", "reason")
    pl.DataFrame(split_rows).write_csv(run / "split.csv")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("face2bone", dims=(8, 8, 16, 16), depths=(1, 1, 1, 1), heads=(1, 1, 2, 2),
                             ssam_heads=2, kan_hidden=(4,), input_size=48, facenet_size=80)
    save_checkpoint(model, run / "best", metadata={"target": "bone_status", "run": "run"})
    return {"cohort": cohort, "photos": photos, "run": run, "cache": cache, "root": root}


def _explain(capsys, study: dict[str, Path], out: Path, *extra: str) -> dict:
    code = main(["explain", str(study["cohort"]), "--photos", str(study["photos"]), "--model", str(study["run"]),
                 "--out", str(out), "--cache", str(study["cache"]), "--json", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_explain_writes_tables_figures_and_the_baseline_it_used(study, capsys) -> None:
    out = study["root"] / "all"
    doc = _explain(capsys, study, out, "--split", "all", "--n-concepts", "3")
    n_ok = pl.read_csv(study["run"] / "preprocess.csv").filter(pl.col("status") == "ok").height
    assert doc["n_images"] == n_ok and doc["settings"]["split"] == "all"
    assert doc["baseline"]["kind"] == "mean" and doc["baseline"]["n_faces"] >= 7  # the 8 training faces (ok ones)
    assert "mean of" in doc["baseline"]["description"]
    shap = doc["region_shapley"]
    assert shap["coalitions"] == 32 and shap["facenet_input"] == "masked" and shap["efficiency_max_abs_gap"] < 1e-9
    for name in ("table6.csv", "table7.csv", "table8.csv", "explain.json",
                 "region_shapley.svg", "pixel_maps.svg", "craft_importance.svg", "craft_maps.svg"):
        assert (out / "shareable" / name).is_file(), name
    rows = pl.read_csv(out / "private" / "region_shapley.csv")  # one row per photo, with IDs: private
    assert rows.height == n_ok and set(rows["split"]) == {"train", "validation", "external"}
    assert {"patient_id", "photo", "sex", "bone_status", "predicted", "f_all_normal", "f_none_osteoporosis",
            "shap_periorbital_osteopenia", "shap_jawline_normal"} <= set(rows.columns)
    # efficiency, row by row, from the CSV
    for cls in CLASSES:
        total = sum(rows[f"shap_{r}_{cls}"] for r in ("forehead", "periorbital", "midface", "nasolabial", "jawline"))
        assert ((total - (rows[f"f_all_{cls}"] - rows[f"f_none_{cls}"])).abs() < 1e-9).all()
    assert len(doc["table6"]) == 4 * 3 * 5 and doc["table7"][-1]["analysis"] == "intra vs inter"
    assert [r["comparison"] for r in doc["table8"]] == ["normal–osteopenia", "normal–osteoporosis",
                                                        "osteopenia–osteoporosis"]
    assert doc["craft"]["adapter"].startswith("face2bone") and doc["craft"]["classes"][0]["n_concepts"] <= 3
    saved = json.loads((out / "shareable" / "explain.json").read_text())
    assert saved["baseline"] == doc["baseline"]
    assert saved["mean_face_shown"] == (n_ok >= 10)  # fewer faces: the maps are drawn on the outline only
    shared = "".join(p.read_text() for p in (out / "shareable").rglob("*") if p.suffix in (".json", ".csv"))
    assert "P0" not in shared  # no patient ID outside the private region_shapley.csv


def test_blur_baseline_unmasked_facenet_and_the_default_split_are_recorded(study, capsys) -> None:
    out = study["root"] / "blur"
    doc = _explain(capsys, study, out, "--baseline", "blur", "--facenet-input", "original", "--no-craft",
                   "--no-pixel-maps")
    assert doc["baseline"]["kind"] == "blur" and doc["baseline"]["sigma_px"] == 3.0  # 48 / 16
    assert doc["settings"]["facenet_input"] == "original" and doc["region_shapley"]["facenet_input"] == "original"
    rows = pl.read_csv(out / "private" / "region_shapley.csv")
    assert set(rows["split"]) <= {"validation", "external"} and rows.height >= 3  # validation + never-seen patient
    assert set(rows["baseline"]) == {"blur"} and set(rows["facenet_input"]) == {"original"}
    assert doc["craft"] is None and not (out / "shareable" / "craft_maps.svg").exists()
    capped = _explain(capsys, study, study["root"] / "capped", "--split", "all", "--max-images", "5", "--no-craft",
                      "--no-pixel-maps")
    assert capped["n_images"] == 5 and set(capped["patients_by_class"].values()) >= {1}


def test_bad_input_is_one_line_and_exit_2(study, capsys, tmp_path) -> None:
    base = ["explain", str(study["cohort"]), "--photos", str(study["photos"]), "--out", str(tmp_path / "x"),
            "--cache", str(study["cache"])]
    assert main([*base, "--model", str(tmp_path / "missing")]) == 2
    assert "run folder" in capsys.readouterr().err
    assert main([*base, "--model", str(study["run"]), "--max-images", "0"]) == 2
    assert "max_images" in capsys.readouterr().err
    config = tmp_path / "c.toml"
    config.write_text(f'name = "c"\ncsv = "{study["cohort"]}"\nphotos = "{study["photos"]}"\n[explain]\nbaseline = 3\n')
    assert main(["explain", str(config), "--model", str(study["run"]), "--out", str(tmp_path / "y")]) == 2
    assert "explain.baseline" in capsys.readouterr().err


def test_report_sections_render_in_the_stard_report(study, capsys) -> None:
    from report_sample import predictions

    from f2b_study.explain.section import sections_from_folder
    from f2b_study.report.stard import StudyReportInput, render_stard_report
    from f2b_study.stats.evaluation import evaluate_predictions
    from f2b_study.stats.predictions import predictions_from_frame

    out = study["root"] / "all"
    if not (out / "shareable" / "explain.json").exists():
        _explain(capsys, study, out, "--split", "all", "--n-concepts", "3")
    sections = sections_from_folder(out / "shareable")
    assert [s.title for s in sections] == ["Explainability: facial regions (exact Shapley values)",
                                           "Explainability: concepts (CRAFT)"]
    assert not any(s.contains_faces for s in sections)
    assert sections[0].tables[0]["caption"].startswith("Table 6.") and len(sections[0].figures) == 2
    assert any(t["caption"].startswith("Table 8.") for t in sections[1].tables)
    evaluation = evaluate_predictions(predictions_from_frame(predictions(90, 1, "A", "P"), source="sample"),
                                      replicates=20)
    html = render_stard_report(StudyReportInput(title="t", evaluation=evaluation, explanations=sections))
    assert "Table 7. Cosine similarity" in html and "Jensen–Shannon" in html and "exact Shapley values" in html


def test_config_section_sets_defaults_and_refuses_unknown_keys() -> None:
    from f2b_study.errors import InputError
    from f2b_study.explain.settings import ExplainSettings
    from f2b_study.sections import parse_section

    def parse(values: dict) -> ExplainSettings:
        return parse_section(ExplainSettings, values, source="c.toml", section="explain")

    settings = parse({"baseline": "blur", "max_images": 50, "n_concepts": 8, "output": "logit"})
    assert (settings.baseline, settings.max_images, settings.craft_config().n_concepts, settings.output) == \
        ("blur", 50, 8, "logit")
    assert parse({"n_concepts": 8, "craft": False}).craft_config() is None
    for section, message in (({"baselines": "mean"}, "explain.baselines"), ({"max_images": "10"}, "a whole number"),
                             ({"pixel_maps": 1}, "true or false"),
                             ({"split": "test"}, "'validation', 'train', 'all'"), ({"max_images": 0}, "≥ 1")):
        with pytest.raises(InputError, match=message):
            parse(section)
