"""Quality-control rules on measured records (no models): every reason and flag reachable, the most basic first,
all of them kept, exclusions from [qc] exclude."""

from __future__ import annotations

import pytest

from f2b_study.errors import InputError
from f2b_study.faces.qc import ALWAYS_EXCLUDE, FLAGS, REASONS, QCThresholds, count_faces, evaluate

DEFAULTS = QCThresholds()
GOOD_MEASURES = {"sharpness": 100.0, "luma_median": 140.0, "contrast": 110.0, "clipped_fraction": 0.0,
                 "dark_fraction": 0.0, "lens_luma_ratio": 0.8, "bridge_edges": 0.3, "forehead_dark": 0.0,
                 "background_edges": 0.0}


def _record(measures: dict | None = None, **changes) -> dict:
    record = {
        "detections": [[0.95, 100.0, 100.0, 160.0, 160.0]], "landmarks": True, "score": 0.95,
        "interocular_px": 60.0, "yaw": 2.0, "pitch": -3.0, "roll": 1.0, "pose_source": "matrix",
        "blendshapes": {"eyeBlinkLeft": 0.1, "eyeBlinkRight": 0.1, "mouthSmileLeft": 0.1, "mouthSmileRight": 0.1,
                        "jawOpen": 0.05},
        "measures": {**GOOD_MEASURES, **(measures or {})},
    }
    record.update(changes)
    return record


def test_a_good_photo_passes() -> None:
    result = evaluate(_record(), DEFAULTS)
    assert (result.status, result.reason, result.flags, result.n_faces, result.reasons) == ("ok", None, (), 1, ())
    assert result.detail is None


@pytest.mark.parametrize(("changes", "reason", "detail"), [
    ({"error": "unreadable", "detail": "empty file (0 bytes)"}, "unreadable", "0 bytes"),
    ({"detections": [], "landmarks": False}, "no_face", "no detector"),
    ({"landmarks": False}, "no_face", "no landmark mesh"),
    ({"detections": [[0.95, 0, 0, 160, 160], [0.9, 300, 0, 150, 150]]}, "multiple_faces", "2 faces"),
    ({"score": 0.45}, "low_confidence", "0.45"),
    ({"interocular_px": 12.0}, "face_too_small", "12.0 px"),
    ({"yaw": -41.0}, "extreme_pose", "yaw -41.0"),
    ({"pitch": 30.0, "roll": 50.0}, "extreme_pose", "pitch +30.0° (limit ±25°); roll +50.0°"),
    ({"measures": {**GOOD_MEASURES, "sharpness": 20.0}}, "blurred", "sharpness 20.0"),
    ({"measures": {**GOOD_MEASURES, "lens_luma_ratio": 0.2}}, "sunglasses", "0.20 of the cheeks"),
])
def test_each_reason(changes: dict, reason: str, detail: str) -> None:
    result = evaluate(_record(**changes), DEFAULTS)
    assert (result.status, result.reason) == ("excluded", reason)
    assert detail in result.detail
    assert reason in REASONS and result.reasons[0] == reason


@pytest.mark.parametrize(("measures", "flag", "detail"), [
    ({"luma_median": 20.0}, "underexposed", "luma 20"),
    ({"luma_median": 240.0}, "overexposed", "luma 240"),
    ({"clipped_fraction": 0.2}, "clipped_highlights", "20% of the face clipped"),
    ({"contrast": 15.0}, "low_contrast", "range 15"),
    ({"bridge_edges": 1.2}, "eyeglasses", "nose-bridge edges 1.20"),
    ({"forehead_dark": 0.5}, "forehead_covered", "50% of the forehead"),
    ({"background_edges": 0.08}, "busy_background", "0.080"),
])
def test_each_flag_is_recorded_and_excludes_only_when_asked(measures: dict, flag: str, detail: str) -> None:
    result = evaluate(_record(measures), DEFAULTS)
    assert (result.status, result.flags) == ("ok", (flag,)) and detail in result.detail
    strict = QCThresholds(exclude=(flag,))
    result = evaluate(_record(measures), strict)
    assert (result.status, result.reason, result.flags) == ("excluded", flag, ())


def test_defaults_exclude_blurred_and_sunglasses_and_can_turn_them_into_flags() -> None:
    assert DEFAULTS.exclude == ("blurred", "sunglasses")
    record = _record({"sharpness": 20.0, "lens_luma_ratio": 0.2})
    assert evaluate(record, DEFAULTS).reasons == ("blurred", "sunglasses")
    lenient = QCThresholds.from_mapping({"exclude": []})
    result = evaluate(record, lenient)
    assert (result.status, result.flags) == ("ok", ("blurred", "sunglasses"))


def test_sunglasses_are_not_also_reported_as_eyeglasses() -> None:
    result = evaluate(_record({"lens_luma_ratio": 0.2, "bridge_edges": 1.5}), DEFAULTS)
    assert result.reasons == ("sunglasses",) and "eyeglasses" not in result.flags
    assert evaluate(_record({"bridge_edges": 1.5}), DEFAULTS).flags == ("eyeglasses",)


def test_every_reason_is_kept_most_basic_first() -> None:
    record = _record({"sharpness": 10.0, "luma_median": 15.0}, score=0.4, interocular_px=10.0, yaw=60.0)
    result = evaluate(record, DEFAULTS)
    assert result.reason == "low_confidence"
    assert result.reasons == ("low_confidence", "face_too_small", "blurred", "extreme_pose")
    assert result.flags == ("underexposed",)
    for name in result.reasons:
        assert f"{name}:" in result.detail
    # the small face in a full-length shot: too small comes before the pose
    small = evaluate(_record(interocular_px=14.0, yaw=-34.8), DEFAULTS)
    assert small.reasons == ("face_too_small", "extreme_pose")
    assert list(REASONS[: len(ALWAYS_EXCLUDE) - 1]) == list(ALWAYS_EXCLUDE[:-1])


def test_a_check_that_cannot_be_computed_is_named() -> None:
    missing = _record({"sharpness": None, "bridge_edges": None})
    result = evaluate(missing, DEFAULTS)
    assert (result.status, result.reason) == ("excluded", "not_measurable")  # sharpness excludes by default
    assert "blurred: sharpness could not be measured" in result.detail
    assert result.flags == ("not_measurable",)  # the eyeglasses check only flags
    assert evaluate(missing, QCThresholds(exclude=())).status == "ok"
    broken = _record(measures={"why_not": "LinAlgError: singular matrix"})
    broken["measures"] = {"why_not": "LinAlgError: singular matrix"}
    result = evaluate(broken, DEFAULTS)
    assert result.reason == "not_measurable" and "singular matrix" in result.detail
    # no background in a tight crop is not a failure
    assert evaluate(_record({"background_edges": None}), DEFAULTS).flags == ()


def test_entries_without_measurements_still_get_the_other_checks() -> None:
    record = _record()
    del record["measures"]
    assert evaluate(record, DEFAULTS).status == "ok"


def test_second_faces_are_never_ignored() -> None:
    main = [0.95, 0, 0, 200, 200]
    assert count_faces([main, [0.45, 300, 0, 200, 200]], DEFAULTS) == 1  # not confident enough: not a face
    small = evaluate(_record(detections=[main, [0.9, 300, 0, 30, 30]]), DEFAULTS)
    assert (small.status, small.flags, small.n_faces, small.other_face_ratio) == ("ok", ("other_face",), 2, 0.15)
    assert "0.15 x the main face" in small.detail
    comparable = evaluate(_record(detections=[main, [0.9, 300, 0, 60, 60]]), DEFAULTS)
    assert (comparable.reason, comparable.n_faces) == ("multiple_faces", 2)
    assert count_faces([], DEFAULTS) == 0
    assert evaluate(_record(detections=[main, [0.9, 300, 0, 30, 30]]), QCThresholds(exclude=("other_face",))
                    ).reason == "other_face"


def test_a_large_poster_face_with_people_in_front_of_it_is_not_taken_as_the_patient() -> None:
    """The issue's poster: the largest face is on the poster, three real people stand smaller in front."""
    poster = [0.97, 100, 50, 400, 400]
    people = [[0.9, 80, 500, 70, 70], [0.88, 250, 520, 65, 65], [0.86, 420, 510, 72, 72]]
    result = evaluate(_record(detections=[poster, *people]), DEFAULTS)
    assert (result.status, result.reason, result.n_faces) == ("excluded", "multiple_faces", 4)
    assert "0.18" in result.detail


def test_pose_from_the_landmarks_is_said() -> None:
    result = evaluate(_record(yaw=45.0, pose_source="landmarks"), DEFAULTS)
    assert result.reason == "extreme_pose" and "from the landmarks" in result.detail


def test_expression_and_eyes_are_flags_unless_the_config_excludes_them() -> None:
    blend = {"eyeBlinkLeft": 0.8, "eyeBlinkRight": 0.7, "mouthSmileLeft": 0.9, "mouthSmileRight": 0.85}
    flagged = evaluate(_record(blendshapes=blend), DEFAULTS)
    assert flagged.status == "ok" and flagged.flags == ("eyes_closed", "non_neutral_expression")
    for strict in (QCThresholds.from_mapping({"exclude_eyes_closed": True, "exclude_non_neutral_expression": True}),
                   QCThresholds.from_mapping({"exclude": ["eyes_closed", "non_neutral_expression"]})):
        assert evaluate(_record(blendshapes=blend), strict).reason == "eyes_closed"
        smile_only = {**blend, "eyeBlinkRight": 0.2}
        result = evaluate(_record(blendshapes=smile_only), strict)
        assert (result.reason, result.flags) == ("non_neutral_expression", ())
        assert "mouthSmileLeft 0.90" in result.detail
    # one eye closed (a wink) is not "eyes closed"
    assert evaluate(_record(blendshapes={**blend, "eyeBlinkRight": 0.2}), DEFAULTS).flags == (
        "non_neutral_expression",)
    # flags are kept on rows excluded for another reason
    assert evaluate(_record(blendshapes=blend, yaw=80.0), DEFAULTS).flags == ("eyes_closed", "non_neutral_expression")


def test_thresholds_from_config() -> None:
    custom = QCThresholds.from_mapping({"max_yaw": 10, "min_interocular_px": 30.5,
                                        "expression_blendshapes": ["jawOpen"], "exclude": ["blurred"],
                                        "max_other_faces": 3})
    assert custom.max_yaw == 10 and custom.min_interocular_px == 30.5
    assert custom.expression_blendshapes == ("jawOpen",) and custom.exclude == ("blurred",)
    assert evaluate(_record(yaw=12.0), custom).reason == "extreme_pose"
    assert set(FLAGS) == set(REASONS) - set(ALWAYS_EXCLUDE)
    for bad, expected in [({"max_yawn": 3}, "qc.max_yawn"), ({"max_yaw": "wide"}, "a number"),
                          ({"max_yaw": -1}, "a number ≥ 0"), ({"max_yaw": True}, "a number"),
                          ({"exclude_eyes_closed": 1}, "true or false"),
                          ({"expression_blendshapes": "jawOpen"}, "a list of strings"),
                          ({"exclude": ["blurry"]}, "'blurry' is not a check that can exclude"),
                          ({"exclude": ["face_too_small"]}, "not a check that can exclude"),
                          ({"max_other_faces": 1.5}, "a whole number")]:
        with pytest.raises(InputError, match=expected):
            QCThresholds.from_mapping(bad, "c.toml")
