"""WHO / ISCD labelling (docs/methods.md): eligibility, DXA completeness, the lowest-T-score rule, WHO classes.

Every row is kept. An excluded row carries the first reason that applies, in this order: consent, clinical
exclusion flags (the paper's exclusion criteria), population (sex / age / menopause), DXA completeness.
"""

from __future__ import annotations

from typing import TypeVar

import polars as pl

from f2b_study.cohort.centre import LabelRules
from f2b_study.cohort.columns import EXCLUSION_FLAGS, HIP_T, SITES, SPINE_T, T_COLUMNS, Z_COLUMNS
from f2b_study.cohort.schema import Cohort

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)

OSTEOPOROSIS_T = -2.5  # T <= -2.5
NORMAL_T = -1.0  # T >= -1.0 (WHO's wording; the paper's text says > -1.0)
LOW_Z = -2.0  # Z <= -2.0: below the expected range for age (ISCD)

Z_BELOW = "below expected range for age"
Z_WITHIN = "within expected range for age"

FLAG_REASONS = {
    "prior_spine_hip_surgery": "prior spine/hip surgery",
    "ankylosing_spondylitis": "ankylosing spondylitis",
    "bedridden": "bedridden",
    "cognitive_impairment": "cognitive impairment",
    "facial_surgery": "facial surgery",
    "facial_skin_disease": "facial skin disease",
}
NO_CONSENT = "no consent"
AGE_MISSING = "age missing"
PREMENOPAUSAL = "premenopausal"
MENOPAUSE_UNKNOWN = "menopausal status unknown"
DXA_INCOMPLETE = "DXA incomplete"
Z_MISSING = "Z-score missing"

LABEL_COLUMNS = ("bone_status", "lowest_t_score", "lowest_t_site", "eligible", "exclusion_reason")

def young_men_reason(rules: LabelRules) -> str:
    return f"man aged {rules.men_min_age:g} or younger"


def label(cohort: Cohort) -> pl.DataFrame:
    """The cohort's frame with bone_status, lowest_t_score, lowest_t_site, eligible, exclusion_reason added."""
    return label_frame(cohort.frame, cohort.config.rules)


def label_frame(frame: FrameT, rules: LabelRules) -> FrameT:
    """The labelling expressions on a DataFrame, or on a LazyFrame (a table labelled as it streams)."""
    names = frame.collect_schema().names()
    added = [c for c in (*T_COLUMNS, *Z_COLUMNS, *EXCLUSION_FLAGS) if c not in names]
    frame = frame.with_columns(
        pl.lit(None, dtype=pl.Boolean if c in EXCLUSION_FLAGS else pl.Float64).alias(c) for c in added)
    lowest_t = pl.min_horizontal(*T_COLUMNS)
    site = pl.lit(None, dtype=pl.String)
    for column, name in reversed(list(zip(T_COLUMNS, SITES, strict=True))):
        # reversed so that on ties the first site in the documented order (spine, neck, hip) wins
        site = pl.when(pl.col(column) == lowest_t).then(pl.lit(name)).otherwise(site)
    who_class = (
        pl.when(lowest_t <= OSTEOPOROSIS_T).then(pl.lit("osteoporosis"))
        .when(lowest_t < NORMAL_T).then(pl.lit("osteopenia"))
        .when(lowest_t.is_not_null()).then(pl.lit("normal"))
    )
    lowest_z = pl.min_horizontal(*Z_COLUMNS)
    z_class = pl.when(lowest_z <= LOW_Z).then(pl.lit(Z_BELOW)).when(lowest_z.is_not_null()).then(pl.lit(Z_WITHIN))

    woman, man, age = pl.col("sex") == "F", pl.col("sex") == "M", pl.col("age_years")
    status = pl.col("menopausal_status")
    if rules.menopause_age is not None:
        status = status.fill_null(pl.when(age >= rules.menopause_age).then(pl.lit("post"))
                                  .when(age.is_not_null()).then(pl.lit("pre")))
    who_population = (woman & (status == "post")) | (man & (age > rules.men_min_age))
    z_population = (woman & (status == "pre")) | (man & (age <= rules.men_min_age))
    complete = pl.any_horizontal(pl.col(c).is_not_null() for c in SPINE_T) & pl.any_horizontal(
        pl.col(c).is_not_null() for c in HIP_T)

    reason = pl.lit(None, dtype=pl.String)
    # built last-to-first so that the earliest reason in the documented order wins
    reason = pl.when(z_population & lowest_z.is_null()).then(pl.lit(Z_MISSING)).otherwise(reason)
    reason = pl.when(~complete).then(pl.lit(DXA_INCOMPLETE)).otherwise(reason)
    reason = pl.when(woman & status.is_null()).then(pl.lit(MENOPAUSE_UNKNOWN)).otherwise(reason)
    if not rules.include_premenopausal:
        reason = pl.when(woman & (status == "pre")).then(pl.lit(PREMENOPAUSAL)).otherwise(reason)
    if not rules.include_younger_men:
        reason = pl.when(man & (age <= rules.men_min_age)).then(pl.lit(young_men_reason(rules))).otherwise(reason)
    reason = pl.when(man & age.is_null()).then(pl.lit(AGE_MISSING)).otherwise(reason)
    for flag in reversed(EXCLUSION_FLAGS[1:]):
        reason = pl.when(pl.col(flag).fill_null(False)).then(pl.lit(FLAG_REASONS[flag])).otherwise(reason)
    reason = pl.when(pl.col("consent") == False).then(pl.lit(NO_CONSENT)).otherwise(reason)  # noqa: E712

    eligible = reason.is_null()
    bone_status = (pl.when(eligible & who_population).then(who_class)
                   .when(eligible & z_population).then(z_class))
    out = frame.with_columns(
        lowest_t.alias("lowest_t_score"),
        site.alias("lowest_t_site"),
        reason.alias("exclusion_reason"),
    ).with_columns(
        pl.col("exclusion_reason").is_null().alias("eligible"),
        pl.when(pl.col("exclusion_reason").is_null()).then(bone_status).alias("bone_status"),
    )
    out = out.select([c for c in out.collect_schema().names() if c not in LABEL_COLUMNS] + list(LABEL_COLUMNS))
    return out.drop(added)  # absent optional columns behaved as empty; they do not appear in the output

