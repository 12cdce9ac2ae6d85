"""Table 1 (DESIGN §10) against scipy on constructed data and against the paper's own Table 1."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from scipy import stats

from f2b_study.cli import main
from f2b_study.stats.table1 import OVERALL, table1


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
    assert all(set(r) == {"variable", "level", "groups", "p", "test"} for r in rows)
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
