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
