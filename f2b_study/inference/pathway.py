"""The paper's stratified screening pathway (Discussion): what each predicted class leads to."""

from __future__ import annotations

PATHWAY = {
    "normal": "Bone-health education and regular follow-up.",
    "osteopenia": "DXA to confirm; lifestyle intervention (calcium and vitamin D, exercise); consider preventive "
                  "treatment by overall risk and FRAX.",
    "osteoporosis": "DXA to confirm and referral to a specialist for evaluation and treatment.",
}
NO_PREDICTION = "No prediction (no usable photo): take a new photo or refer for DXA by clinical criteria."


def recommendation(predicted: str | None) -> str:
    """The pathway step for a predicted class (None -> no usable photo)."""
    if predicted is None:
        return NO_PREDICTION
    return PATHWAY[predicted]


def pathway_class(probabilities: dict[str, float], predicted: str | None, *, osteoporosis_threshold: float | None,
                  low_bone_mass_threshold: float | None) -> tuple[str | None, str]:
    """(the class whose pathway applies, the rule that chose it). With pre-specified thresholds the referral
    follows them (p_osteoporosis ≥ its threshold -> the osteoporosis pathway; else 1 − p_normal ≥ its threshold
    -> the osteopenia pathway's DXA confirmation; else the normal pathway); without, the predicted class."""
    if predicted is None:
        return None, "no usable photo"
    if osteoporosis_threshold is None and low_bone_mass_threshold is None:
        return predicted, "predicted class"
    if osteoporosis_threshold is not None and probabilities["osteoporosis"] >= osteoporosis_threshold:
        return "osteoporosis", f"p_osteoporosis ≥ {osteoporosis_threshold:g} (pre-specified)"
    if low_bone_mass_threshold is not None and 1 - probabilities["normal"] >= low_bone_mass_threshold:
        return "osteopenia", f"1 − p_normal ≥ {low_bone_mass_threshold:g} (pre-specified)"
    return "normal", "below the pre-specified thresholds"
