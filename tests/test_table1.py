"""Table 1 (docs/methods.md, Statistics) against scipy on constructed data and against the paper's own Table 1."""

from __future__ import annotations

import html
import json

import numpy as np
import polars as pl
import pytest
from scipy import stats

from f2b_study.cli import main
from f2b_study.errors import InputError
from f2b_study.stats.table1 import OVERALL, footnote, summary_rules, table1, to_html


def paper_split_table() -> pl.DataFrame:
    """The paper's Table 1 counts: 832 train / 208 validation by sex and bone status."""
    sex = ["M"] * 222 + ["F"] * 610 + ["M"] * 64 + ["F"] * 144
    status = (["normal"] * 294 + ["osteopenia"] * 345 + ["osteoporosis"] * 193
              + ["normal"] * 76 + ["osteopenia"] * 89 + ["osteoporosis"] * 43)
    split = ["train"] * 832 + ["validation"] * 208
    return pl.DataFrame({"split": split, "sex": sex, "bone_status": status})


def rows_of(result, variable):
    return [r for r in result.rows if r.variable == variable]


def test_paper_table1_p_values() -> None:
    result = table1(paper_split_table(), "split")
    sex = rows_of(result, "sex")
    status = rows_of(result, "bone_status")
    assert round(sex[0].p, 3) == 0.274 and sex[0].test == "Chi-square test (Yates' correction)"
    assert round(status[0].p, 3) == 0.739 and status[0].test == "Chi-square test"
    assert sex[0].groups == {OVERALL: "286 (27.5)", "train": "222 (26.7)", "validation": "64 (30.8)"}
    assert [r.level for r in status] == ["normal", "osteopenia", "osteoporosis"]
    assert result.rows[0].groups == {OVERALL: "1040", "train": "832", "validation": "208"}


def test_normal_data_two_groups_uses_student_t() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(65, 10, 300), rng.normal(67, 10, 200)
    frame = pl.DataFrame({"g": ["a"] * 300 + ["b"] * 200, "age_years": np.concatenate([a, b])})
    row = rows_of(table1(frame, "g"), "age_years")[0]
    assert row.test == "Student's t-test"
    assert row.p == pytest.approx(stats.ttest_ind(a, b).pvalue)
    assert row.groups["a"] == f"{a.mean():.2f} ± {a.std(ddof=1):.2f}"


def test_skewed_data_uses_mann_whitney_and_median_iqr() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.lognormal(4, 0.6, 150), rng.lognormal(4.2, 0.6, 150)
    frame = pl.DataFrame({"g": ["a"] * 150 + ["b"] * 150, "weight_kg": np.concatenate([a, b])})
    row = rows_of(table1(frame, "g"), "weight_kg")[0]
    assert row.test == "Mann–Whitney U test"
    assert row.p == pytest.approx(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    q1, med, q3 = np.percentile(b, [25, 50, 75])
    assert row.groups["b"] == f"{med:.1f} ({q1:.1f}–{q3:.1f})"


def test_one_non_normal_group_switches_the_whole_row() -> None:
    rng = np.random.default_rng(3)
    groups = [rng.normal(0, 1, 200), rng.normal(0.3, 1, 200), rng.exponential(1, 200)]
    frame = pl.DataFrame({"g": ["x"] * 200 + ["y"] * 200 + ["z"] * 200, "bmi": np.concatenate(groups) + 25})
    row = rows_of(table1(frame, "g"), "bmi")[0]
    assert row.test == "Kruskal–Wallis test"
    assert row.p == pytest.approx(stats.kruskal(*[g + 25 for g in groups]).pvalue)
    normal = pl.DataFrame({"g": ["x"] * 200 + ["y"] * 200, "bmi": np.concatenate(groups[:2]) + 25})
    frame3 = normal.vstack(pl.DataFrame({"g": ["z"] * 200, "bmi": rng.normal(25, 1, 200)}))
    row3 = rows_of(table1(frame3, "g"), "bmi")[0]
    assert row3.test == "One-way ANOVA"
    values = [frame3.filter(pl.col("g") == g)["bmi"].to_numpy() for g in "xyz"]
    assert row3.p == pytest.approx(stats.f_oneway(*values).pvalue)


def test_small_expected_counts_use_fisher() -> None:
    frame = pl.DataFrame({"g": ["a"] * 10 + ["b"] * 10, "sex": ["F"] * 9 + ["M"] + ["F"] * 3 + ["M"] * 7})
    row = rows_of(table1(frame, "g"), "sex")[0]
    assert row.test == "Fisher's exact test"
    assert row.p == pytest.approx(stats.fisher_exact([[1, 7], [9, 3]]).pvalue)


def test_small_expected_counts_on_larger_table_use_seeded_monte_carlo_fisher() -> None:
    frame = pl.DataFrame({"g": ["a"] * 12 + ["b"] * 12,
                          "bone_status": ["normal"] * 8 + ["osteopenia"] * 3 + ["osteoporosis"]
                          + ["normal"] * 2 + ["osteopenia"] * 5 + ["osteoporosis"] * 5})
    first = rows_of(table1(frame, "g"), "bone_status")[0]
    again = rows_of(table1(frame, "g"), "bone_status")[0]
    assert first.test.startswith("Fisher's exact test (Monte Carlo")
    assert first.p == again.p and 0 < first.p < 0.2


def test_missing_values_are_counted_not_tested() -> None:
    frame = pl.DataFrame({"g": ["a", "a", "b", "b", None], "sex": ["F", None, "M", "F", "F"],
                          "age_years": [60.0, None, 70.0, 71.0, 50.0]})
    result = table1(frame, "g")
    assert "1 row(s) with no 'g' value are left out" in result.notes
    missing = next(r for r in rows_of(result, "sex") if r.level == "missing")
    assert missing.groups == {OVERALL: "1", "a": "1", "b": "0"}
    assert "[missing 1]" in rows_of(result, "age_years")[0].groups["a"]


def test_cli_json_shape_and_outputs(tmp_path, capsys) -> None:
    path = tmp_path / "split.csv"
    paper_split_table().write_csv(path)
    html_out = tmp_path / "t1.html"
    assert main(["table1", str(path), "--by", "split", "--json", "--out", str(html_out)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(set(r) == {"variable", "level", "groups", "p", "test", "summary", "rule"} for r in rows)
    sex = [r for r in rows if r["variable"] == "sex"]
    assert sex[0]["level"] == "F" or sex[0]["level"] == "M"
    assert round(sex[0]["p"], 3) == 0.274
    assert "<table" in html_out.read_text() and "0.274" in html_out.read_text()
    csv_out = tmp_path / "t1.csv"
    assert main(["table1", str(path), "--by", "split", "--out", str(csv_out)]) == 0
    assert pl.read_csv(csv_out).columns[:3] == ["variable", "level", OVERALL]


def test_cli_errors(tmp_path, capsys) -> None:
    path = tmp_path / "t.csv"
    paper_split_table().write_csv(path)
    assert main(["table1", str(path), "--by", "centre"]) == 2
    assert "'centre'" in capsys.readouterr().err
    assert main(["table1", str(path), "--by", "split", "--vars", "height"]) == 2
    assert "'height'" in capsys.readouterr().err


def test_eligible_rows_only_by_default(tmp_path, capsys) -> None:
    path = tmp_path / "labelled.csv"
    pl.DataFrame({"sex": ["F", "M", "M"], "bone_status": ["normal", "osteopenia", None],
                  "eligible": [True, True, False], "age_years": [60, 70, 40]}).write_csv(path)
    assert main(["table1", str(path), "--by", "sex", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["groups"] == {OVERALL: "2", "M": "1", "F": "1"}
    assert main(["table1", str(path), "--by", "sex", "--json", "--all-rows"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["groups"][OVERALL] == "3"


def test_binary_and_two_level_numeric_columns_are_categorical_with_their_rule() -> None:
    rng = np.random.default_rng(4)
    n = 200
    frame = pl.DataFrame({"g": rng.choice(["a", "b"], n), "smoker": rng.choice([0, 1], n),
                          "grade": rng.choice(["1", "2"], n), "age_years": rng.normal(70, 8, n),
                          "weight_kg": rng.lognormal(4.2, 0.4, n)})
    result = table1(frame, "g", ["smoker", "grade", "age_years", "weight_kg"])
    smoker = rows_of(result, "smoker")
    assert [r.level for r in smoker] == ["0", "1"] and smoker[0].summary == "n (%)"
    assert smoker[0].rule == "0/1-coded: categorical"
    assert smoker[0].test.startswith("Chi-square")
    assert rows_of(result, "grade")[0].rule == "two distinct values: categorical"
    age, weight = rows_of(result, "age_years")[0], rows_of(result, "weight_kg")[0]
    assert age.summary == "mean ± SD" and age.rule == "Shapiro–Wilk P ≥ 0.01 in every group"
    assert weight.summary == "median (IQR)" and weight.rule.startswith("Shapiro–Wilk P < 0.01 in ")
    rules = summary_rules(result)
    assert [r["variable"] for r in rules] == ["smoker", "grade", "age_years", "weight_kg"]
    note = footnote(result)
    assert "mean ± SD: Age (years)" in note and "median (IQR): Weight (kg) (Shapiro–Wilk P < 0.01 in" in note
    assert "(smoker, grade)" in note
    assert html.escape(note) in to_html(result)


def test_constant_or_tiny_groups_say_why_median() -> None:
    frame = pl.DataFrame({"g": ["a", "a", "b", "b", "b", "b"], "bmi": [20.0, 21.0, 22.0, 25.0, 23.0, 30.0]})
    row = rows_of(table1(frame, "g"), "bmi")[0]
    assert row.summary == "median (IQR)" and "fewer than 3 values or all equal in a" in row.rule


def _cli_error(tmp_path, capsys, frame, args, expect):
    path = tmp_path / "t.csv"
    frame.write_csv(path)
    assert main(["table1", str(path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for part in expect:
        assert part in err, err


def test_refusals_name_row_and_value(tmp_path, capsys) -> None:
    n = 120
    base = pl.DataFrame({"patient_id": [f"P{i:04d}" for i in range(n)], "sex": ["F", "M"] * (n // 2),
                         "age_years": [str(50 + i % 40) for i in range(n)],
                         "bmd": [f"{0.8 + i / 1000:.3f}" for i in range(n)]})
    _cli_error(tmp_path, capsys, base, ["--by", "sex", "--vars", "patient_id"],
               ["column 'patient_id'", "row 52", "'P0050'", "120 distinct values", "identifier"])
    many = base.with_columns(pl.Series("comment", [f"note {i % 60}" for i in range(n)]))
    _cli_error(tmp_path, capsys, many, ["--by", "sex", "--vars", "comment"],
               ["column 'comment'", "row 52", "'note 50'", "at most 50 levels"])
    typo = base.with_columns(pl.when(pl.int_range(pl.len()) == 6).then(pl.lit("7four")).otherwise(pl.col("age_years"))
                             .alias("age_years"))
    _cli_error(tmp_path, capsys, typo, ["--by", "sex", "--vars", "age_years"],
               ["row 8", "column 'age_years'", "'7four'", "a number (an age in years"])
    other = base.with_columns(pl.when(pl.int_range(pl.len()) == 9).then(pl.lit("0,9x")).otherwise(pl.col("bmd"))
                              .alias("bmd"))
    _cli_error(tmp_path, capsys, other, ["--by", "sex", "--vars", "bmd"],
               ["row 11", "column 'bmd'", "'0,9x'", "the other values of this column are numbers"])
    negative = base.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("-61")).otherwise(
        pl.col("age_years")).alias("age_years"))
    _cli_error(tmp_path, capsys, negative, ["--by", "sex", "--vars", "age_years"],
               ["row 5", "column 'age_years'", "'-61'", "from 0 to 130"])
    duplicated = pl.concat([base, base.slice(10, 1)])
    _cli_error(tmp_path, capsys, duplicated, ["--by", "sex", "--vars", "age_years"],
               [f"row {n + 2}", "column 'patient_id'", "'P0010'", "also on row 12", "twice"])


def test_rows_keep_their_file_numbers_after_the_eligible_filter(tmp_path, capsys) -> None:
    frame = pl.DataFrame({"sex": ["F", "M", "F", "M"], "eligible": [False, True, True, True],
                          "age_years": ["60", "70", "seventy", "65"]})
    _cli_error(tmp_path, capsys, frame, ["--by", "sex", "--vars", "age_years"], ["row 4", "'seventy'"])


def test_text_column_with_few_levels_stays_categorical() -> None:
    frame = pl.DataFrame({"g": ["a", "b"] * 10, "site": ["1", "2", "3", "unknown"] * 5})
    rows = rows_of(table1(frame, "g", ["site"]), "site")
    assert [r.level for r in rows] == ["1", "2", "3", "unknown"] and rows[0].rule == "text column"
    ids = pl.DataFrame({"g": ["a", "b"] * 10, "patient_id": [f"ID{i}" for i in range(20)]})
    with pytest.raises(InputError, match=r"row 2, column 'patient_id': value 'ID0'.*20 distinct values.*identifier"):
        table1(ids, "g", ["patient_id"], source="ids.csv")
    with pytest.raises(InputError, match="one row per patient"):
        table1(pl.DataFrame({"g": ["a", "b"], "patient_id": ["X", "X"]}), "g", [])


def test_sparse_table_beyond_two_by_two_gets_fishers_monte_carlo_p() -> None:
    import polars as pl

    from f2b_study.stats.table1 import table1

    frame = pl.DataFrame({"sex": ["F", "M", "F", "M"], "site": ["a", "b", "c", "d"]})
    result = table1(frame, "sex", ["site"])
    row = next(r for r in result.rows if r.variable == "site")
    assert row.test.startswith("Fisher's exact test (Monte Carlo") and 0 <= row.p <= 1
