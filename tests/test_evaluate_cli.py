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
           "f1_weighted", "auc_macro_ovr", "kappa", "ece", "brier"}
PER_CLASS = {"accuracy", "precision", "recall", "f1", "auc", "auc_ci", "kappa", "brier", "hosmer_lemeshow"}
TOP = {"n", "classes", "overall", "per_class", "hosmer_lemeshow_multinomial", "confusion_matrix", "ci", "subgroups",
       "notes"}


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
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
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
    assert no_nan((out / "r" / "evaluation.json").read_text()) == doc
    assert (out / "r" / "report.html").exists()
    comparators = no_nan((out / "r" / "comparators.json").read_text())
    assert set(comparators) == {"osta", "clinical_logit"}
    assert comparators["clinical_logit"]["evaluation"]["n"] == doc["n"]


def test_subgroup_missing_a_class_is_null_with_reason(evaluated, capsys):
    path, out = evaluated
    assert main(["evaluate", str(path), "--out", str(out / "s"), "--json", "--by", "sex", "--bootstrap", "0",
                 "--no-report"]) == 0
    doc = no_nan(capsys.readouterr().out)
    men = doc["subgroups"]["sex"]["M"]["overall"]
    assert men["auc_macro_ovr"] is not None  # over the two classes men have
    assert "osteoporosis" in doc["notes"]["subgroups.sex.M.overall.auc_macro_ovr"]
    assert "absent" in doc["notes"]["subgroups.sex.M.overall.recall_macro"]


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
    without = no_nan((tmp_path / "r" / "comparators.json").read_text())
    assert without["clinical_logit"]["evaluation"] is None and "no training rows" in without["clinical_logit"]["reason"]
    assert main(["evaluate", str(tmp_path / "pred.csv"), "--out", str(tmp_path / "r"), "--bootstrap", "0",
                 "--no-report", "--train", str(tmp_path / "train.csv")]) == 0
    with_train = no_nan((tmp_path / "r" / "comparators.json").read_text())
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
    assert "Rows in the predictions file" in (tmp_path / "r" / "report.html").read_text()


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
