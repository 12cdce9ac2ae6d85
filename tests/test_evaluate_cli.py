"""`f2b-study evaluate`: the exact JSON shape, NaN-free output, subgroups missing a class, bad input -> exit 2."""

import json
import math

import numpy as np
import polars as pl
import pytest

from f2b_study import CLASSES
from f2b_study.cli import main
from f2b_study.stats.evaluation import evaluate_arrays

OVERALL = {"accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted",
           "f1_weighted", "auc_macro_ovr", "kappa", "kappa_linear", "kappa_quadratic", "ece", "brier"}
PER_CLASS = {"accuracy", "precision", "recall", "f1", "auc", "auc_ci", "kappa", "brier", "hosmer_lemeshow",
             "calibration_intercept", "calibration_intercept_ci", "calibration_slope", "calibration_slope_ci",
             "sensitivity", "sensitivity_ci", "specificity", "specificity_ci", "ppv", "ppv_ci", "npv", "npv_ci"}
TOP = {"n", "classes", "overall", "per_class", "hosmer_lemeshow_multinomial", "confusion_matrix", "ci", "subgroups",
       "notes", "decision_curves", "decision_curves_comparators", "operating_points", "subgroup_tests"}
DECISIONS = {"osteoporosis", "low_bone_mass"}
POINT = {"basis", "target_sensitivity", "threshold", "sensitivity", "sensitivity_ci", "specificity", "specificity_ci",
         "ppv", "ppv_ci", "npv", "npv_ci", "n", "referred", "missed", "referrals_per_1000", "missed_per_1000",
         "scans_avoided_per_1000"}


def frame(n=240, seed=0, men_osteoporosis=False):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.35, 0.45, 0.2])
    sex = rng.choice(["F", "M"], n, p=[0.7, 0.3])
    if not men_osteoporosis:
        y = np.where((sex == "M") & (y == 2), 1, y)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.5
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return pl.DataFrame({
        "patient_id": [f"P{i:04d}" for i in range(n)], "bone_status": [CLASSES[k] for k in y],
        "p_normal": p[:, 0].round(6), "p_osteopenia": p[:, 1].round(6),
        "p_osteoporosis": (1 - p[:, 0].round(6) - p[:, 1].round(6)).round(6),
        "sex": sex, "age_years": rng.uniform(51, 90, n).round(1),
        "weight_kg": (68 - 5 * y + rng.normal(0, 8, n)).round(1),
        "height_cm": rng.normal(160, 7, n).round(1), "center": rng.choice(["A", "B"], n),
        "split": rng.choice(["train", "validation"], n, p=[0.5, 0.5]),
    })


def no_nan(text):
    def refuse(constant):
        raise AssertionError(f"{constant} in JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def evaluated(module_tmp):
    out = module_tmp("eval")
    path = out / "predictions.csv"
    frame().write_csv(path)
    return path, out


def test_json_shape_exact_and_nan_free(evaluated, capsys):
    path, out = evaluated
    assert main(["evaluate", str(path), "--out", str(out / "r"), "--json", "--bootstrap", "200"]) == 0
    doc = no_nan(capsys.readouterr().out)
    assert set(doc) == TOP
    assert doc["classes"] == list(CLASSES)
    assert set(doc["overall"]) == OVERALL
    assert set(doc["per_class"]) == set(CLASSES)
    for entry in doc["per_class"].values():
        assert set(entry) == PER_CLASS
        assert set(entry["hosmer_lemeshow"]) == {"statistic", "df", "p"}
        assert len(entry["auc_ci"]) == 2 and entry["auc_ci"][0] <= entry["auc"] <= entry["auc_ci"][1]
    assert set(doc["hosmer_lemeshow_multinomial"]) == {"statistic", "df", "p"}
    cm = np.array(doc["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == doc["n"]
    for key, interval in doc["ci"].items():
        assert interval is None or (len(interval) == 2 and interval[0] <= interval[1]), key
    assert set(doc["subgroups"]) == {"sex", "center", "age_band"}
    for levels in doc["subgroups"].values():
        for sub in levels.values():
            assert set(sub) == {"n", "overall"} and set(sub["overall"]) == OVERALL
    # the file on disk is the same document; the report and the comparators are written beside it
    assert no_nan((out / "r" / "shareable" / "evaluation.json").read_text()) == doc
    assert (out / "r" / "shareable" / "report.html").exists()
    for figure in ("decision_curves.svg", "calibration_curves.svg"):
        assert (out / "r" / "shareable" / figure).read_text().startswith("<svg")
    comparators = no_nan((out / "r" / "shareable" / "comparators.json").read_text())
    assert set(comparators) == {"osta", "clinical_logit"}
    assert comparators["clinical_logit"]["evaluation"]["n"] == doc["n"]
    # issue 15's keys
    assert set(doc["decision_curves"]) == DECISIONS
    for points in doc["decision_curves"].values():
        assert len(points) == 99 and all(set(p) == {"threshold", "net_benefit", "net_benefit_all"} for p in points)
    assert set(doc["decision_curves_comparators"]) == {"osta", "clinical_logit"}
    for curves in doc["decision_curves_comparators"].values():
        assert set(curves) == DECISIONS and all(len(c) == 99 for c in curves.values())
    assert "fixed referral rule" in doc["notes"]["decision_curves_comparators.osta"]
    assert set(doc["operating_points"]) == DECISIONS
    for points in doc["operating_points"].values():
        assert [p["target_sensitivity"] for p in points] == [0.9, 0.95]
        assert all(set(p) == POINT and p["basis"] == "data-derived" for p in points)
    for name, entry in doc["per_class"].items():
        assert entry["calibration_slope_ci"][0] < entry["calibration_slope"] < entry["calibration_slope_ci"][1]
        assert entry["sensitivity"] == entry["recall"], name
    assert doc["ci"]["kappa_quadratic"][0] <= doc["overall"]["kappa_quadratic"] <= doc["ci"]["kappa_quadratic"][1]
    sex = doc["subgroup_tests"]["sex"]
    assert sex["levels"] == ["F", "M"] and sex["difference"] == "F − M"
    for name in CLASSES:
        test = sex[name]
        if test is None:
            assert doc["notes"][f"subgroup_tests.sex.{name}"]
            continue
        assert {"auc_difference", "z", "p"} <= set(test)
    assert set(doc["subgroup_tests"]) == {"sex", "center", "age_band"}


def test_subgroup_missing_a_class_is_null_with_reason(evaluated, capsys):
    path, out = evaluated
    assert main(["evaluate", str(path), "--out", str(out / "s"), "--json", "--by", "sex", "--bootstrap", "0",
                 "--no-report"]) == 0
    doc = no_nan(capsys.readouterr().out)
    men = doc["subgroups"]["sex"]["M"]["overall"]
    assert men["auc_macro_ovr"] is not None  # over the two classes men have
    assert "osteoporosis" in doc["notes"]["subgroups.sex.M.overall.auc_macro_ovr"]
    assert "absent" in doc["notes"]["subgroups.sex.M.overall.recall_macro"]
    # the sex test of the osteoporosis AUC needs osteoporotic men: null with the reason
    assert doc["subgroup_tests"]["sex"]["osteoporosis"] is None
    assert "M: no osteoporosis patients" in doc["notes"]["subgroup_tests.sex.osteoporosis"]
    assert doc["subgroup_tests"]["sex"]["normal"]["p"] is not None


def test_missing_class_at_array_level_nulls_with_reasons():
    y = np.array([0, 0, 1, 1, 1, 0])
    proba = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.1, 0.8, 0.1],
                      [0.5, 0.4, 0.1]])
    full = evaluate_arrays(y, proba=proba, replicates=50)
    per = full["per_class"]["osteoporosis"]
    assert per["recall"] is None and per["auc"] is None and per["auc_ci"] is None
    assert "no osteoporosis patients" in full["notes"]["per_class.osteoporosis.recall"]
    assert "no osteoporosis patients" in full["notes"]["per_class.osteoporosis.auc"]
    assert per["precision"] == 0.0  # predicted once, wrongly
    json.dumps(full, allow_nan=False, default=float)  # raises on a NaN anywhere in the full evaluation
    assert full["ci"]["accuracy"] is not None


def test_single_patient_subgroup_does_not_crash():
    full = evaluate_arrays(np.array([2]), proba=np.array([[0.1, 0.2, 0.7]]), replicates=20)
    assert full["overall"]["accuracy"] == 1.0
    assert full["overall"]["kappa"] is None and "single class" in full["notes"]["overall.kappa"]
    assert full["per_class"]["osteoporosis"]["hosmer_lemeshow"]["statistic"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in full["overall"].values())


def test_training_split_feeds_the_comparator_and_train_file(tmp_path, capsys):
    data = frame(seed=3)
    train = data.filter(pl.col("split") == "train").drop("p_normal", "p_osteopenia", "p_osteoporosis", "split")
    evaluated_only = data.filter(pl.col("split") == "validation")
    evaluated_only.write_csv(tmp_path / "pred.csv")
    train.write_csv(tmp_path / "train.csv")
    assert main(["evaluate", str(tmp_path / "pred.csv"), "--out", str(tmp_path / "r"), "--bootstrap", "0",
                 "--no-report", "--by", ""]) == 0
    without = no_nan((tmp_path / "r" / "shareable" / "comparators.json").read_text())
    assert without["clinical_logit"]["evaluation"] is None and "no training rows" in without["clinical_logit"]["reason"]
    assert main(["evaluate", str(tmp_path / "pred.csv"), "--out", str(tmp_path / "r"), "--bootstrap", "0",
                 "--no-report", "--train", str(tmp_path / "train.csv")]) == 0
    with_train = no_nan((tmp_path / "r" / "shareable" / "comparators.json").read_text())
    assert with_train["clinical_logit"]["evaluation"]["n"] == evaluated_only.height
    assert with_train["osta"]["evaluation"]["per_class"]["osteopenia"]["auc"] is None
    capsys.readouterr()


def test_screen_rows_without_prediction_or_who_class_are_left_out_and_counted(tmp_path, capsys):
    data = frame(n=60, seed=2).with_columns(pl.lit(None, dtype=pl.String).alias("reason"),
                                            pl.lit("validation").alias("split"))
    proba = ["p_normal", "p_osteopenia", "p_osteoporosis"]
    unscored = pl.int_range(pl.len()) < 4
    data = data.with_columns(
        *[pl.when(unscored).then(None).otherwise(pl.col(c)).alias(c) for c in proba],
        pl.when(unscored).then(pl.lit("no usable photo (no_face)")).otherwise(pl.col("reason")).alias("reason"),
        pl.when(pl.int_range(pl.len()).is_between(4, 5)).then(pl.lit("below expected range for age"))
        .when(pl.int_range(pl.len()) == 6).then(None).otherwise(pl.col("bone_status")).alias("bone_status"))
    data.write_csv(tmp_path / "screened.csv")
    assert main(["evaluate", str(tmp_path / "screened.csv"), "--out", str(tmp_path / "r"), "--json",
                 "--bootstrap", "0"]) == 0
    doc = no_nan(capsys.readouterr().out)
    assert doc["n"] == 60 - 7
    note = doc["notes"]["n"]
    assert "no prediction (no usable photo (no_face)): 4" in note
    assert "not a WHO class (below expected range for age): 2" in note and "no reference-standard class: 1" in note
    assert "Rows in the predictions file" in (tmp_path / "r" / "shareable" / "report.html").read_text()


def _bad(tmp_path, capsys, data, expect):
    path = tmp_path / "bad.csv"
    data.write_csv(path)
    assert main(["evaluate", str(path), "--out", str(tmp_path / "o"), "--bootstrap", "0", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for part in expect:
        assert part in err, err


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    good = frame(n=30, seed=1).with_columns(pl.col(c).cast(pl.String) for c in ("p_normal", "p_osteopenia",
                                                                                   "p_osteoporosis"))
    _bad(tmp_path, capsys, good.drop("p_osteopenia"), ["column 'p_osteopenia'"])
    first = good["split"].to_list().index("validation")  # train rows' probabilities are not read
    _bad(tmp_path, capsys, good.with_columns(pl.when(pl.int_range(pl.len()) == first).then(pl.lit("high"))
                                             .otherwise(pl.col("p_normal")).alias("p_normal")),
         [f"row {first + 2}", "column 'p_normal'", "'high'"])
    _bad(tmp_path, capsys, good.with_columns(pl.lit("1.5").alias("p_osteopenia")), [f"row {first + 2}",
                                                                                    "from 0 to 1"])
    _bad(tmp_path, capsys, good.with_columns(pl.lit("0.5").alias("p_normal"), pl.lit("0.5").alias("p_osteopenia"),
                                             pl.lit("0.5").alias("p_osteoporosis")), ["summing to 1"])
    _bad(tmp_path, capsys, good.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("osteopaenia"))
                                             .otherwise(pl.col("bone_status")).alias("bone_status")),
         ["row 2", "column 'bone_status'", "'osteopaenia'"])
    _bad(tmp_path, capsys, good.with_columns(pl.lit("holdout").alias("split")), ["column 'split'", "'holdout'"])
    _bad(tmp_path, capsys, good.with_columns(pl.lit("X").alias("sex")), ["column 'sex'"])
    _bad(tmp_path, capsys, good.with_columns(pl.lit("train").alias("split")), ["at least one row to evaluate"])


def test_unknown_by_column_is_an_input_error(evaluated, capsys):
    path, out = evaluated
    assert main(["evaluate", str(path), "--out", str(out / "x"), "--by", "ethnicity", "--no-report"]) == 2
    assert "ethnicity" in capsys.readouterr().err


def test_decision_without_events_is_null_with_reason(tmp_path, capsys):
    data = frame(n=120, seed=4).with_columns(
        pl.when(pl.col("bone_status") == "osteoporosis").then(pl.lit("osteopenia")).otherwise(pl.col("bone_status"))
        .alias("bone_status"))
    data.write_csv(tmp_path / "p.csv")
    assert main(["evaluate", str(tmp_path / "p.csv"), "--out", str(tmp_path / "r"), "--json", "--bootstrap", "0",
                 "--no-report", "--by", ""]) == 0
    doc = no_nan(capsys.readouterr().out)
    assert doc["decision_curves"]["osteoporosis"] is None and doc["operating_points"]["osteoporosis"] is None
    assert "no patients with osteoporosis" in doc["notes"]["decision_curves.osteoporosis"]
    assert "no patients with osteoporosis" in doc["notes"]["operating_points.osteoporosis"]
    assert doc["decision_curves"]["low_bone_mass"] is not None
    assert doc["per_class"]["osteoporosis"]["calibration_slope"] is None
    assert "no events" in doc["notes"]["per_class.osteoporosis.calibration_slope"]


def test_prespecified_threshold_from_the_command_line(evaluated, capsys):
    path, out = evaluated
    assert main(["evaluate", str(path), "--out", str(out / "t"), "--json", "--bootstrap", "0", "--no-report",
                 "--by", "", "--threshold", "low_bone_mass=0.4"]) == 0
    doc = no_nan(capsys.readouterr().out)
    first = doc["operating_points"]["low_bone_mass"][0]
    assert first["basis"] == "pre-specified" and first["threshold"] == 0.4
    assert doc["operating_points"]["osteoporosis"][0]["basis"] == "data-derived"
    for bad in ("fracture=0.2", "osteoporosis=high", "osteoporosis=1.2"):
        assert main(["evaluate", str(path), "--out", str(out / "t"), "--no-report", "--threshold", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--threshold" in err


def _other_model(data: pl.DataFrame, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    p = data.select("p_normal", "p_osteopenia", "p_osteoporosis").to_numpy()
    q = (0.5 * p + 0.5 * rng.dirichlet([1, 1, 1], size=p.shape[0])).round(6)
    q[:, 2] = (1 - q[:, 0] - q[:, 1]).round(6)
    return data.with_columns(pl.Series("p_normal", q[:, 0]), pl.Series("p_osteopenia", q[:, 1]),
                             pl.Series("p_osteoporosis", q[:, 2]))


def test_compare_writes_table_json_and_figure(tmp_path, capsys):
    data = frame(n=300, seed=6, men_osteoporosis=True)
    for arch in ("resnet34", "vit"):
        (tmp_path / arch).mkdir()
    data.write_csv(tmp_path / "resnet34" / "val_predictions.csv")
    # the same patients in another order
    _other_model(data, 1).reverse().write_csv(tmp_path / "vit" / "val_predictions.csv")
    out = tmp_path / "cmp"
    assert main(["evaluate", str(tmp_path / "resnet34" / "val_predictions.csv"), "--compare",
                 str(tmp_path / "vit" / "val_predictions.csv"), "--out", str(out), "--bootstrap", "100",
                 "--no-report", "--by", ""]) == 0
    printed = capsys.readouterr().out
    assert "compared 2 models" in printed and "resnet34/val_predictions − vit/val_predictions" in printed
    comparison = no_nan((out / "shareable" / "comparison.json").read_text())
    assert comparison["reference"] == "resnet34/val_predictions"
    versus = comparison["versus"]["vit/val_predictions"]
    assert set(versus["delong_paired"]) == {*CLASSES, "macro"}
    assert versus["delong_paired"]["macro"]["p"] is not None
    nb = versus["net_benefit_difference"]["osteoporosis"]
    assert len(nb) == 99 and nb[4]["threshold"] == 0.05 and nb[4]["ci"] is not None and nb[5]["ci"] is None
    table = pl.read_csv(out / "shareable" / "comparison.csv")
    assert table["model"].to_list() == ["resnet34/val_predictions", "vit/val_predictions"]
    assert table["auc_macro_p_vs_reference"][0] is None and table["auc_macro_p_vs_reference"][1] is not None
    assert "net_benefit_difference_low_bone_mass_t0.30_ci_low" in table.columns
    svg = (out / "shareable" / "comparison.svg").read_text()
    assert svg.startswith("<svg") and "Net benefit" in svg


def test_compare_refuses_other_patients_or_classes_naming_the_file(tmp_path, capsys):
    data = frame(n=80, seed=7).with_columns(pl.lit("validation").alias("split"))
    data.write_csv(tmp_path / "a.csv")
    other_class = "normal" if data["bone_status"][5] != "normal" else "osteopenia"
    cases = {
        "fewer.csv": (data.head(70), ["fewer.csv", "10 of", "missing"]),
        "extra.csv": (pl.concat([data, data.head(1).with_columns(pl.lit("NEW1").alias("patient_id"))]),
                      ["extra.csv", "not in", "NEW1"]),
        "classes.csv": (data.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(pl.lit(other_class))
                                          .otherwise(pl.col("bone_status")).alias("bone_status")),
                        ["classes.csv", "row 7", "bone_status", "P0005"]),
        "twice.csv": (pl.concat([data, data.tail(1)]), ["twice.csv", "one row per patient"]),
    }
    for name, (other, expect) in cases.items():
        other.write_csv(tmp_path / name)
        assert main(["evaluate", str(tmp_path / "a.csv"), "--compare", str(tmp_path / name), "--out",
                     str(tmp_path / "o"), "--bootstrap", "0", "--no-report"]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        for part in expect:
            assert part in err, (name, err)
    assert not (tmp_path / "o" / "shareable" / "evaluation.json").exists()  # refused before any work
