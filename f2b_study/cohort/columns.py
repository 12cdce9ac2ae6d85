"""The canonical cohort column names (see docs/methods.md, "Cohort table"): what a centre's columns map onto."""

from __future__ import annotations

T_COLUMNS = ("t_spine_l1_l4", "t_femoral_neck", "t_total_hip")
Z_COLUMNS = ("z_spine_l1_l4", "z_femoral_neck", "z_total_hip")
SITES = ("spine_l1_l4", "femoral_neck", "total_hip")
SPINE_T = ("t_spine_l1_l4",)
HIP_T = ("t_femoral_neck", "t_total_hip")
EXCLUSION_FLAGS = (
    "consent",
    "prior_spine_hip_surgery",
    "ankylosing_spondylitis",
    "bedridden",
    "cognitive_impairment",
    "facial_surgery",
    "facial_skin_disease",
)
CANONICAL_COLUMNS = (
    "patient_id", "center", "sex", "age_years", "menopausal_status", "height_cm", "weight_kg", "bmi",
    *T_COLUMNS, *Z_COLUMNS, "photo", "split", *EXCLUSION_FLAGS,
)
REQUIRED = ("patient_id", "sex", "age_years")
