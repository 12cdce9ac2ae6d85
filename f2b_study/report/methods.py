"""The report's methods as prose, one paragraph per topic, from facts the caller supplies (MethodsFacts), and the
formulas in a separate "Statistical definitions" list (the report puts it in a collapsible appendix).

Nothing here knows the study: every sentence is built from MethodsFacts (filled by the orchestration from the
resolved configuration and the training run) and from the evaluation's own settings (bootstrap replicates, seed,
level) and the constants the statistics code uses. A fact that is not given is left out, never guessed.

Two layers: sentences written straight from the objects that ran (``labelling_text``, ``qc_text``,
``model_config_text``: the centres' LabelRules, the QCThresholds, the checkpoint's configuration), and the report's
paragraphs by topic from MethodsFacts (``methods_paragraphs``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from f2b_study import CLASSES
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


def _check_words(qc: QCThresholds) -> dict[str, str]:
    """Each QC check and its rule in words, with the thresholds in force (docs/quality-control.md)."""
    return {
        "multiple_faces": f"a second face (detection score ≥ {qc.multiple_faces_min_score:g}) at least "
                          f"{100 * qc.multiple_faces_min_size:g}% of the main face's width, or more than "
                          f"{qc.max_other_faces} smaller ones",
        "low_confidence": f"a detection score below {qc.min_detection_score:g}",
        "face_too_small": f"fewer than {qc.min_interocular_px:g} px between the eye centres",
        "extreme_pose": f"|yaw| > {qc.max_yaw:g}°, |pitch| > {qc.max_pitch:g}° or |roll| > {qc.max_roll:g}°",
        "blurred": f"a Laplacian sharpness below {qc.min_sharpness:g}",
        "underexposed": f"median face brightness below {qc.min_luma:g} of 255",
        "overexposed": f"median face brightness above {qc.max_luma:g} of 255",
        "clipped_highlights": f"more than {100 * qc.max_clipped_fraction:g}% of the face clipped white",
        "low_contrast": f"a face brightness range below {qc.min_contrast:g}",
        "sunglasses": f"eyes darker than {qc.sunglasses_max_lens_ratio:g} of the cheeks' brightness",
        "eyeglasses": f"edges across the nose bridge at least {qc.eyeglasses_min_bridge_edges:g} of the cheeks'",
        "forehead_covered": f"at least {100 * qc.forehead_min_dark:g}% of the forehead much darker than the "
                            "cheeks, as under hair or a hat",
        "eyes_closed": f"both eyeBlink blendshapes ≥ {qc.eyes_closed_min_blink:g}",
        "non_neutral_expression": f"a smile, open-jaw, pucker or funnel blendshape ≥ {qc.expression_max:g}",
        "busy_background": f"background edge density at least {qc.busy_background_min_edges:g}",
        "other_face": "a smaller second face",
    }


def qc_text(qc: QCThresholds) -> str:
    """The photo quality-control rules in force: which findings excluded a photo and which were only recorded."""
    from f2b_study.faces.qc import ALWAYS_EXCLUDE, FLAGS

    words = _check_words(qc)
    always = ["the photo cannot be read or has no face"] + [words[n] for n in ALWAYS_EXCLUDE if n in words]
    chosen = [n for n in FLAGS if n in words and qc.excludes(n)]
    flagged = [n for n in FLAGS if n in words and not qc.excludes(n)]
    text = ("Faces were standardised with MediaPipe (face landmarker, 478 landmarks; the elliptical face region on "
            "black, eye line horizontal, 512 × 512 px). A photo was excluded when " + "; ".join(always) + ".")
    if chosen:
        text += (" The study also excluded photos for: "
                 + "; ".join(f"{n.replace('_', ' ')} ({words[n]})" for n in chosen) + ".")
    if flagged:
        text += (" Recorded as flags only, the photo kept: "
                 + "; ".join(f"{n.replace('_', ' ')} ({words[n]})" for n in flagged) + ".")
    return text + " A patient's prediction is the mean of the probabilities of its usable photos."


def _values(value: Any) -> str:
    """(24, 48, 96) -> "24/48/96"; 0.5 -> "0.5"; anything else as written."""
    if isinstance(value, list | tuple):
        return "/".join(_values(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def model_config_text(config: Mapping[str, Any]) -> str:
    """The checkpoint's model configuration in words, every key accounted for: the parts the registry's models
    share and Face2Bone's named settings in reading order, anything else as "key = value"."""
    c = dict(config)
    parts: list[str] = []
    if "input_size" in c:
        size = c.pop("input_size")
        parts.append(f"input {size} × {size} px")
    if "mean" in c or "std" in c:
        parts.append(f"normalised with mean ({_values(c.pop('mean', '?')).replace('/', ', ')}) and SD "
                     f"({_values(c.pop('std', '?')).replace('/', ', ')})")
    if "dims" in c:
        block = {"fsa": "FSA", "conv": "convolutional"}.get(str(c.get("block", "fsa")), str(c.get("block")))
        c.pop("block", None)
        stage = [f"channels {_values(c.pop('dims'))}"]
        stage += [f"{name} {_values(c.pop(key))}" for key, name in
                  (("depths", "blocks"), ("heads", "attention heads"), ("window", "HiLo window"),
                   ("alpha", "HiLo α"), ("ffn_ratio", "FFN ratio")) if key in c]
        parts.append(f"{block} image branch ({'; '.join(stage)})")
    pooling = c.pop("pooling", None)
    if pooling == "gap":
        parts.append("global average pooling, no FaceNet branch")
        for key in ("ssam_heads", "facenet_size", "facenet_trainable"):  # meaningless without FaceNet
            c.pop(key, None)
    elif pooling is not None or "facenet_size" in c or "ssam_heads" in c:
        heads = f" ({c.pop('ssam_heads')} heads)" if "ssam_heads" in c else ""
        trainable = {"frozen": "frozen ", "last": "last-block-trained ", "full": "fully trained "}.get(
            str(c.pop("facenet_trainable", "")), "")
        size = f" at {c.pop('facenet_size')} px" if "facenet_size" in c else ""
        parts.append(f"SSAM attention pooling{heads} supervised by a {trainable}FaceNet{size}")
    head = c.pop("head", None)
    if head is not None or "kan_hidden" in c:
        hidden = f"hidden {_values(c.pop('kan_hidden'))}" if "kan_hidden" in c else ""
        if head == "mlp":
            for key in ("kan_grid", "kan_order"):  # the KAN's settings; an MLP head has none
                c.pop(key, None)
            parts.append("MLP head" + (f" ({hidden})" if hidden else ""))
        else:
            spline = [hidden] + [f"{name} {c.pop(key)}" for key, name in (("kan_grid", "grid"),
                                                                          ("kan_order", "spline order")) if key in c]
            parts.append("KAN head (" + ", ".join(s for s in spline if s) + ")")
    if "num_classes" in c:
        parts.append(f"{c.pop('num_classes')} classes")
    parts += [f"{key} = {_values(value)}" for key, value in sorted(c.items())]
    return "; ".join(parts)


# -- the report's paragraphs by topic, from MethodsFacts ------------------------------------------------------

@dataclasses.dataclass
class CentreFacts:
    """One centre (cohort) of the study.

    name: the centre's name as in the report. eligibility: its eligibility rule in words (e.g. "postmenopausal
    women and men aged over 50; at least one spine and one hip T-score"), None to use the study-wide rule.
    records: rows in its cohort table. setting: free text (e.g. "secondary care, Ningbo, 2019–2023"), when known.
    """

    name: str
    eligibility: str | None = None
    records: int | None = None
    setting: str | None = None


@dataclasses.dataclass
class MethodsFacts:
    """What the methods paragraphs say; every field is optional (a missing fact is left out of the prose).

    centres: the centres, in report order.
    labelling: the reference-standard and eligibility rule in words (e.g. cohort.label.METHODS_TEXT formatted with
      the config's LabelRules).
    simulated_labels: the bone-status labels are simulated (the demo): said in the first paragraph.
    split: "column" (the cohort's own split column decided training and validation) or "stratified" (a
      patient-level split stratified by bone status); split_ratio ("8:2") and split_seed (e.g. 42) complete it.
    photo_qc: the quality-control thresholds in force, e.g. dataclasses.asdict(faces.qc.QCThresholds(...)):
      known keys are written as words, unknown ones as "key = value".
    face_pipeline: the face standardisation's version string (the checkpoint's preprocessing_version).
    arch: the registry name of the model; model_config: its keyword arguments ({} = the default configuration).
    training: the training settings, any of: epochs, batch_size, patience, seed, loss, optimizer, schedule,
      early_stopping, augment, epochs_run, best_epoch (1-based), device.
    facenet_weights: the FaceNet branch's weights: {"source": "vggface2" | "random-init" | a file name,
      "sha256": ...} as the checkpoint records them, a plain string, or None when the model has no FaceNet branch.
    """

    centres: list[CentreFacts] = dataclasses.field(default_factory=list)
    labelling: str | None = None
    simulated_labels: bool = False
    split: str | None = None
    split_ratio: str = "8:2"
    split_seed: int | None = None
    photo_qc: dict[str, Any] = dataclasses.field(default_factory=dict)
    face_pipeline: str | None = None
    arch: str | None = None
    model_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    facenet_weights: dict[str, Any] | str | None = None


def _join(items: list[str], word: str = "and") -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?")) else text + "."


def participants(facts: MethodsFacts) -> str:
    parts: list[str] = []
    if facts.centres:
        described = []
        for c in facts.centres:
            extra = [x for x in (c.setting, f"{c.records} records" if c.records is not None else None,
                                 f"eligible: {c.eligibility}" if c.eligibility else None) if x]
            described.append(f"{c.name} ({'; '.join(extra)})" if extra else c.name)
        word = "centre" if len(facts.centres) == 1 else f"{len(facts.centres)} centres"
        parts.append(f"Patients came from {'one ' if len(facts.centres) == 1 else ''}{word}: {_join(described)}.")
    if facts.labelling:
        parts.append(_sentence(facts.labelling))
    if facts.simulated_labels:
        parts.append("The bone-status labels of this cohort are simulated: they reach the face only through age and "
                     "sex, so the results test the pipeline, not the face as a marker of bone health.")
    if facts.split == "column":
        parts.append("Training and validation patients were those named by the cohort's own split column.")
    elif facts.split == "stratified":
        seed = f", seed {facts.split_seed}" if facts.split_seed is not None else ""
        parts.append(f"Patients were split into training and validation sets {facts.split_ratio}, stratified by bone "
                     f"status, at the patient level (all photos of a patient in one set{seed}).")
    elif facts.split:
        parts.append(_sentence(f"Split: {facts.split}"))
    return " ".join(parts)


def photos(facts: MethodsFacts) -> str:
    """Face standardisation and photo QC in one wording (``qc_text``), from the thresholds in force; settings
    that are not QCThresholds fields are listed as they are."""
    known = {f.name for f in dataclasses.fields(QCThresholds)}
    given = dict(facts.photo_qc or {})
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if k in known}
    text = qc_text(QCThresholds(**values)) if given else (
        "Faces were standardised with MediaPipe (face landmarker, 478 landmarks; the elliptical face region on "
        "black, eye line horizontal). A patient's prediction is the mean of the probabilities of its usable photos.")
    if facts.face_pipeline:
        text += f" Face pipeline version: {facts.face_pipeline}."
    other = {k: v for k, v in given.items() if k not in known}
    if other:
        text += " Other quality-control settings: " + ", ".join(f"{k} = {v}" for k, v in other.items()) + "."
    return text


def _facenet(weights: dict[str, Any] | str | None) -> str:
    if weights is None:
        return "The model has no FaceNet branch."
    if isinstance(weights, str):
        source, sha = weights, None
    else:
        source, sha = str(weights.get("source") or "not recorded"), weights.get("sha256")
    if "random" in source.lower():
        return ("The FaceNet branch was randomly initialised (no VGGFace2 weights were given), so the face "
                "embedding that supervises the attention is meaningless; results are not comparable with the "
                "Face2Bone paper's.")
    return f"The FaceNet branch was initialised from {source}" + (f" (sha256 {sha})." if sha else ".")


def model(facts: MethodsFacts) -> str:
    parts: list[str] = []
    if facts.arch:
        config = model_config_text(facts.model_config) if facts.model_config else "its default configuration"
        parts.append(f"The index test is the {facts.arch} model: {config}.")
    t = facts.training
    if t:
        how = _join([str(t[k]) for k in ("loss", "optimizer", "schedule") if t.get(k)])
        sentence = "It was trained" + (f" with {how}" if how else "")
        sentence += f", in batches of {t['batch_size']}" if t.get("batch_size") else ""
        sentence += f", for up to {t['epochs']} epochs" if t.get("epochs") else ""
        sentence += f" (seed {t['seed']})" if t.get("seed") is not None else ""
        parts.append(_sentence(sentence))
        if t.get("early_stopping") or t.get("patience"):
            parts.append(_sentence(str(t.get("early_stopping") or
                                       f"Early stopping on validation accuracy, patience {t['patience']} epochs")))
        if t.get("augment"):
            parts.append(_sentence(f"Augmentation: {t['augment']}"))
        if t.get("epochs_run") is not None:
            best = f"; the checkpoint is epoch {t['best_epoch']}" if t.get("best_epoch") is not None else ""
            parts.append(f"Training ran {t['epochs_run']} epochs{best}.")
        if t.get("device"):
            parts.append(f"Device: {t['device']}.")
    if facts.arch or facts.facenet_weights is not None:
        parts.append(_facenet(facts.facenet_weights))
    return " ".join(parts)


def statistics_summary(ev: Mapping[str, Any]) -> str:
    boot = ev.get("bootstrap", {})
    level = round(100 * boot.get("level", 0.95))
    replicates = boot.get("replicates", 0)
    boot_text = (f"every other interval from a patient-level bootstrap ({replicates:,} replicates, seed "
                 f"{boot.get('seed')}, percentile intervals)" if replicates else
                 "no bootstrap intervals (0 replicates were asked for)")
    return (f"The index test's result is the most probable class. Diagnostic accuracy is reported as accuracy, "
            f"precision, recall and F1 (per class one-vs-rest, and their macro and support-weighted means), the "
            f"area under the ROC curve and Cohen's κ, each with a {level}% confidence interval: DeLong's interval for "
            f"AUCs, {boot_text}. Calibration is described by the expected calibration error, the Brier score and "
            "Hosmer–Lemeshow tests, discrimination across pre-specified subgroups (sex, centre, age band) in the "
            "same terms, and the model is compared with clinical comparators on the same patients by DeLong's test. "
            "Exact definitions are in the appendix \"Statistical definitions\".")


def statistical_definitions(ev: Mapping[str, Any]) -> list[str]:
    """The formulas, generated from the constants the statistics code uses."""
    from f2b_study.stats.calibration import ECE_BINS, HL_GROUPS, RELIABILITY_BINS
    from f2b_study.stats.predictions import SUM_TOLERANCE
    from f2b_study.stats.subgroups import AGE_BAND_ORDER

    boot = ev.get("bootstrap", {})
    level = round(100 * boot.get("level", 0.95))
    classes = ", ".join(CLASSES)
    return [
        f"Index test result: the class with the highest predicted probability (pre-specified; a tie goes to the "
        f"first class in the order {classes}); probabilities must sum to 1 ± {SUM_TOLERANCE:g}.",
        "Accuracy = correct predictions / N. Per class, one-vs-rest (OvR): precision = TP/(TP+FP), recall "
        "(sensitivity) = TP/(TP+FN), F1 = 2TP/(2TP+FP+FN), OvR accuracy = (TP+TN)/N and Cohen's κ of the OvR 2×2 "
        "table. Macro = unweighted mean over the classes present in the reference standard; weighted = mean "
        "weighted by each class's number of reference-standard patients (so weighted recall equals accuracy); a "
        "class present but never predicted counts with precision 0. Overall Cohen's κ on the 3×3 table.",
        "AUC: per class OvR, the Mann–Whitney statistic (ties count ½), higher probability = that class; "
        f"{level}% CI = AUC ± {_z(level):.2f}·SE with DeLong's variance, clipped to [0, 1] (as R pROC's "
        "ci.auc(method = \"delong\")). Macro AUC = mean of the per-class AUCs, its CI from DeLong's covariance of "
        "the three. AUCs of two models on the same patients are compared by DeLong's test for correlated AUCs.",
        f"All other intervals: patient-level nonparametric bootstrap, {boot.get('replicates', 0)} replicates "
        f"(seed {boot.get('seed')}), percentile {level}% intervals; patients, not rows, are resampled. An interval "
        "whose limits are equal (every replicate gave the same value) is shown as “—”.",
        f"Calibration: expected calibration error (ECE) over {ECE_BINS} equal-width bins [k/{ECE_BINS}, "
        f"(k+1)/{ECE_BINS}) of the top-label confidence (1.0 in the last bin), Σ (n_b/N)·|accuracy_b − "
        "confidence_b|; multiclass Brier score = mean over patients of Σ_k (p_k − y_k)², per class the mean of "
        f"(p_k − y_k)². Hosmer–Lemeshow test per class (OvR on p_k) with R ResourceSelection's grouping: breaks = "
        f"unique quantiles of p at 0, 1/{HL_GROUPS}, …, 1; groups (a, b], the first [a, b]; χ² = Σ (O − E)²/E over "
        f"groups and both outcomes; df = G − 2 with G the non-empty groups. Multinomial Hosmer–Lemeshow (Fagerland "
        f"& Hosmer 2008): the same grouping on 1 − p(normal), χ² over groups and all {len(CLASSES)} classes, "
        f"df = (G − 2)({len(CLASSES)} − 1). Reliability diagrams: the ECE's bins for the top label, "
        f"{RELIABILITY_BINS} equal-width bins per class.",
        f"Subgroups (pre-specified): sex, centre, and age bands {', '.join(AGE_BAND_ORDER)} years; a subgroup of "
        "fewer than 10 patients is marked (its estimates are unstable).",
    ]


def _z(level: int) -> float:
    from scipy import stats

    return float(stats.norm.ppf(0.5 + level / 200))


def comparators(ev: Mapping[str, Any]) -> list[str]:
    lines = []
    for comp in (ev.get("comparators") or {}).values():
        text = f"{comp['label']}: {comp.get('description') or 'not fitted'}"
        if comp.get("reason"):
            text += f" ({comp['reason']})"
        lines.append(_sentence(text))
    if lines:
        lines.append("OSTA gives categories, not probabilities, and no ranking of the middle class: its calibration "
                     "measures and osteopenia AUC are not defined; its macro AUC averages normal and osteoporosis "
                     "only.")
    return lines


def methods_paragraphs(facts: MethodsFacts | None, ev: Mapping[str, Any], *, labelling: str | None = None,
                       extra: list[str] | None = None) -> list[dict[str, Any]]:
    """[{"id", "title", "paragraphs": [str]}] in reading order. Without MethodsFacts (a report from a predictions
    file), the labelling text and extra lines given are used as they are."""
    topics: list[dict[str, Any]] = []
    if facts is not None:
        first = participants(dataclasses.replace(facts, labelling=facts.labelling or labelling))
        if first:
            topics.append({"id": "methods-participants", "title": "Participants and reference standard",
                           "paragraphs": [first]})
        topics.append({"id": "methods-photos", "title": "Photos and quality control", "paragraphs": [photos(facts)]})
        text = model(facts)
        if text:
            topics.append({"id": "methods-model", "title": "Model and training", "paragraphs": [text]})
        if extra:
            topics[-1]["paragraphs"] += list(extra)
    else:
        if labelling:
            topics.append({"id": "methods-participants", "title": "Participants and reference standard",
                           "paragraphs": [labelling]})
        if extra:
            topics.append({"id": "methods-model", "title": "Photos, model and training", "paragraphs": list(extra)})
    topics.append({"id": "methods-statistics", "title": "Statistics", "paragraphs": [statistics_summary(ev)]})
    return topics
