"""f2b-study: opportunistic osteoporosis screening from face photos (Face2Bone) and its study analysis."""

__version__ = "0.1.0"

# Reference-standard classes in their fixed order (docs/methods.md): every probability column, confusion matrix and
# table uses this order.
CLASSES: tuple[str, ...] = ("normal", "osteopenia", "osteoporosis")

DISCLAIMER = (
    "Research use only. f2b-study is a research tool, not a diagnostic device: its output does not replace a DXA "
    "examination or a clinician's judgement."
)
