"""docs/methods.md, Labelling labelling rules at every boundary."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from f2b_study.cohort.centre import CohortConfig, LabelRules
from f2b_study.cohort.label import (
    DXA_INCOMPLETE,
    MENOPAUSE_UNKNOWN,
    PREMENOPAUSAL,
    Z_BELOW,
    Z_MISSING,
    Z_WITHIN,
    label,
)
from f2b_study.cohort.schema import validate

BASE = {"patient_id": "p", "sex": "F", "age_years": "65", "menopausal_status": "post",
        "t_spine_l1_l4": "0.5", "t_femoral_neck": "0.5", "t_total_hip": "0.5"}


def run(records: list[dict], rules: LabelRules | None = None) -> pl.DataFrame:
    rows = [{**BASE, "patient_id": f"p{i}", **r} for i, r in enumerate(records)]
    raw = pl.DataFrame(rows).with_columns(pl.all().cast(pl.String))
    config = CohortConfig(name="test", table=Path("cohort.csv"), rules=rules or LabelRules())
    return label(validate(raw, config))


@pytest.mark.parametrize(("t", "expected"), [
    ("-1.0", "normal"), ("-0.99", "normal"), ("-1.01", "osteopenia"), ("-2.49", "osteopenia"),
    ("-2.5", "osteoporosis"), ("-2.51", "osteoporosis"), ("2.0", "normal"), ("-10", "osteoporosis"),
])
def test_who_class_boundaries(t: str, expected: str) -> None:
    out = run([{"t_spine_l1_l4": t, "t_femoral_neck": t, "t_total_hip": t}])
    assert out["bone_status"][0] == expected
    assert out["lowest_t_score"][0] == pytest.approx(float(t))


def test_lowest_t_rule_picks_lowest_site() -> None:
    out = run([
        {"t_spine_l1_l4": "-0.5", "t_femoral_neck": "-2.6", "t_total_hip": "-1.2"},
        {"t_spine_l1_l4": "-1.5", "t_femoral_neck": "-0.1", "t_total_hip": "-1.6"},
        {"t_spine_l1_l4": "-3.0", "t_femoral_neck": "-0.1", "t_total_hip": None},
    ])
    assert out["lowest_t_site"].to_list() == ["femoral_neck", "total_hip", "spine_l1_l4"]
    assert out["bone_status"].to_list() == ["osteoporosis", "osteopenia", "osteoporosis"]


def test_tie_goes_to_the_first_site_in_design_order() -> None:
    out = run([{"t_spine_l1_l4": "-1.5", "t_femoral_neck": "-1.5", "t_total_hip": "-1.5"}])
    assert out["lowest_t_site"][0] == "spine_l1_l4"


@pytest.mark.parametrize(("age", "eligible"), [("50", False), ("50.5", True), ("51", True), ("49", False)])
def test_men_must_be_older_than_50(age: str, eligible: bool) -> None:
    out = run([{"sex": "M", "menopausal_status": None, "age_years": age}])
    assert out["eligible"][0] is eligible
    assert out["exclusion_reason"][0] == (None if eligible else "man aged 50 or younger")
    assert (out["bone_status"][0] is None) is (not eligible)


def test_menopausal_status() -> None:
    out = run([{"menopausal_status": "pre"}, {"menopausal_status": "Postmenopausal"},
               {"menopausal_status": None}, {"menopausal_status": "PRE", "age_years": "70"}])
    assert out["exclusion_reason"].to_list() == [PREMENOPAUSAL, None, MENOPAUSE_UNKNOWN, PREMENOPAUSAL]
    assert out["eligible"].to_list() == [False, True, False, False]


def test_menopause_age_rule_fills_missing_status_only() -> None:
    rules = LabelRules(menopause_age=52)
    out = run([{"menopausal_status": None, "age_years": "52"}, {"menopausal_status": None, "age_years": "51"},
               {"menopausal_status": "pre", "age_years": "60"}], rules)
    assert out["exclusion_reason"].to_list() == [None, PREMENOPAUSAL, PREMENOPAUSAL]


@pytest.mark.parametrize(("spine", "neck", "hip", "complete"), [
    ("-1", None, None, False),  # spine only
    (None, "-1", "-1", False),  # hip only
    ("-1", "-1", None, True),
    ("-1", None, "-1", True),
    (None, None, None, False),
])
def test_dxa_completeness(spine, neck, hip, complete) -> None:
    out = run([{"t_spine_l1_l4": spine, "t_femoral_neck": neck, "t_total_hip": hip}])
    assert out["eligible"][0] is complete
    assert out["exclusion_reason"][0] == (None if complete else DXA_INCOMPLETE)


def test_exclusion_order_consent_then_flags_then_population_then_dxa() -> None:
    out = run([
        {"consent": "no", "bedridden": "yes", "sex": "M", "menopausal_status": None, "age_years": "40",
         "t_total_hip": None, "t_femoral_neck": None},
        {"consent": "yes", "bedridden": "yes", "sex": "M", "menopausal_status": None, "age_years": "40"},
        {"consent": "yes", "bedridden": "no", "sex": "M", "menopausal_status": None, "age_years": "40",
         "t_spine_l1_l4": None},
        {"consent": None, "facial_surgery": "1", "t_spine_l1_l4": None},
        {"consent": "true", "t_spine_l1_l4": None},
    ])
    assert out["exclusion_reason"].to_list() == [
        "no consent", "bedridden", "man aged 50 or younger", "facial surgery", DXA_INCOMPLETE]


def test_z_population_when_included() -> None:
    rules = LabelRules(include_premenopausal=True, include_younger_men=True)
    out = run([
        {"menopausal_status": "pre", "age_years": "40", "z_spine_l1_l4": "-2.0", "z_femoral_neck": "-1"},
        {"menopausal_status": "pre", "age_years": "40", "z_spine_l1_l4": "-1.99"},
        {"sex": "M", "menopausal_status": None, "age_years": "45", "z_total_hip": "-2.5",
         "t_spine_l1_l4": "-3"},
        {"sex": "M", "menopausal_status": None, "age_years": "45"},
    ], rules)
    assert out["bone_status"].to_list() == [Z_BELOW, Z_WITHIN, Z_BELOW, None]
    assert out["exclusion_reason"].to_list() == [None, None, None, Z_MISSING]
    # the Z population never gets a WHO class, even with a low T-score
    assert "osteoporosis" not in out["bone_status"].to_list()


def test_every_row_and_extra_column_kept_with_label_columns_added() -> None:
    out = run([{"notes": "a,b"}, {"notes": "ü", "sex": "M", "age_years": "30", "menopausal_status": None}])
    assert out.height == 2
    assert out["notes"].to_list() == ["a,b", "ü"]
    assert out.columns[-5:] == ["bone_status", "lowest_t_score", "lowest_t_site", "eligible", "exclusion_reason"]
    # optional columns the input did not have do not appear
    assert "z_spine_l1_l4" not in out.columns and "consent" not in out.columns
