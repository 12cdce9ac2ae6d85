"""Methods sentences written from what actually ran: every centre's eligibility rules, the split rule, the photo
quality-control thresholds and the model configuration. Nothing here is typed by hand about a particular study."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from f2b_study.cohort.centre import LabelRules
from f2b_study.cohort.label import NORMAL_T, OSTEOPOROSIS_T
from f2b_study.faces.qc import QCThresholds


def _t(value: float) -> str:
    return f"{value:g}".replace("-", "−")


def labelling_text(centres: Sequence[tuple[str, LabelRules]]) -> str:
    """The WHO/ISCD rule and who was eligible, centre by centre when their rules differ."""
    text = ("Bone status follows the WHO criteria on the lowest T-score among lumbar spine L1–L4, femoral neck and "
            f"total hip (ISCD lowest-T-score rule): osteoporosis T ≤ {_t(OSTEOPOROSIS_T)}; osteopenia "
            f"{_t(OSTEOPOROSIS_T)} < T < {_t(NORMAL_T)}; normal T ≥ {_t(NORMAL_T)}. The WHO wording puts "
            f"T = {_t(NORMAL_T)} in the normal class; the Face2Bone paper's text says \"> {_t(NORMAL_T)}\": this "
            "tool follows WHO. Records need at least one spine and one hip T-score.")
    distinct = {rules for _, rules in centres}
    if len(distinct) == 1:
        (rules,) = distinct
        where = "" if len(centres) == 1 else " (every centre)"
        return f"{text} Eligible{where}: {rules.describe()}."
    per_centre = "; ".join(f"{name}: {rules.describe()}" for name, rules in centres)
    return f"{text} Eligibility differed between centres — {per_centre}."


def qc_text(qc: QCThresholds) -> str:
    """The photo quality-control rules in force, with their thresholds."""
    parts = [f"detection score ≥ {qc.min_detection_score:g}",
             f"at least {qc.min_interocular_px:g} px between the eye centres",
             f"|yaw| ≤ {qc.max_yaw:g}°, |pitch| ≤ {qc.max_pitch:g}°, |roll| ≤ {qc.max_roll:g}°",
             f"no second face of score ≥ {qc.multiple_faces_min_score:g} and at least "
             f"{100 * qc.multiple_faces_min_size:g}% of the main face's width"]
    excluding = [name for name in ("eyes_closed", "non_neutral_expression")
                 if getattr(qc, f"exclude_{name}", False)]
    flagged = [name for name in ("eyes_closed", "non_neutral_expression") if name not in excluding]
    text = ("Faces were standardised with MediaPipe (face landmarker, 478 landmarks; the elliptical face region on "
            "black, eye line horizontal, 512 × 512 px). A photo was usable with " + "; ".join(parts) + ".")
    if excluding:
        text += f" Excluding as well: {', '.join(n.replace('_', ' ') for n in excluding)}."
    if flagged:
        text += (f" Recorded as flags only (the photo kept): {', '.join(n.replace('_', ' ') for n in flagged)} "
                 f"(eyes closed: both eyeBlink blendshapes ≥ {qc.eyes_closed_min_blink:g}; expression: a smile, "
                 f"open-jaw or pucker blendshape ≥ {qc.expression_max:g}).")
    return text + " A patient's prediction is the mean of the probabilities of its usable photos."


def training_text(*, arch: str, model_config: Mapping[str, Any], settings: Mapping[str, Any], split: str,
                  facenet: str | None, epochs_run: int | None, best_epoch: int | None) -> str:
    """The model and the recipe as they ran (the checkpoint's full configuration)."""
    config = json.dumps(dict(model_config), sort_keys=True)
    augment = settings.get("augment")
    augment_text = ("HorizontalFlip, VerticalFlip, Affine and CLAHE" if augment is None
                    else ", ".join(a for a in augment if a != "none") or "none")
    text = (f"Model {arch} with the configuration {config}. Trained with cross-entropy, Adam and OneCycleLR (max "
            f"learning rate {settings.get('lr'):g}, {100 * settings.get('warmup_fraction', 0.3):g}% warm-up, "
            f"annealed to {settings.get('final_lr'):g}), batch {settings.get('batch_size')}, up to "
            f"{settings.get('epochs')} epochs, early stopping on the validation patients' accuracy (patience "
            f"{settings.get('patience')}, counted from the end of the warm-up; equal accuracy with a lower "
            f"validation loss counts as better), seed {settings.get('seed')}; augmentations: {augment_text}. "
            f"Patients were split by {split}.")
    if epochs_run is not None:
        text += f" The run stopped after {epochs_run} epochs; the best epoch was {(best_epoch or 0) + 1}."
    if facenet:
        text += f" FaceNet weights: {facenet}."
    return text
