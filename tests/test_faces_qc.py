"""Quality-control rules on measured records (no models): every reason reachable, in order, thresholds from [qc]."""

from __future__ import annotations

import pytest

from f2b_study.errors import InputError
from f2b_study.faces.qc import FLAGS, REASONS, QCThresholds, count_faces, evaluate

DEFAULTS = QCThresholds()


def _record(**changes) -> dict:
    record = {
        "detections": [[0.95, 100.0, 100.0, 160.0, 160.0]], "landmarks": True, "score": 0.95,
        "interocular_px": 60.0, "yaw": 2.0, "pitch": -3.0, "roll": 1.0,
        "blendshapes": {"eyeBlinkLeft": 0.1, "eyeBlinkRight": 0.1, "mouthSmileLeft": 0.1, "mouthSmileRight": 0.1,
                        "jawOpen": 0.05},
    }
    record.update(changes)
    return record


def test_a_good_photo_passes() -> None:
    result = evaluate(_record(), DEFAULTS)
    assert (result.status, result.reason, result.flags, result.n_faces) == ("ok", None, (), 1)


@pytest.mark.parametrize(("changes", "reason", "detail"), [
    ({"error": "unreadable", "detail": "empty file (0 bytes)"}, "unreadable", "0 bytes"),
    ({"detections": [], "landmarks": False}, "no_face", "no detector"),
    ({"landmarks": False}, "no_face", "no landmark mesh"),
    ({"detections": [[0.95, 0, 0, 160, 160], [0.9, 300, 0, 150, 150]]}, "multiple_faces", "2 faces"),
    ({"score": 0.45}, "low_confidence", "0.45"),
    ({"interocular_px": 12.0}, "face_too_small", "12.0 px"),
    ({"yaw": -41.0}, "extreme_pose", "yaw -41.0"),
    ({"pitch": 30.0, "roll": 50.0}, "extreme_pose", "pitch +30.0° (limit ±25°); roll +50.0°"),
])
def test_each_reason(changes: dict, reason: str, detail: str) -> None:
    result = evaluate(_record(**changes), DEFAULTS)
    assert (result.status, result.reason) == ("excluded", reason)
    assert detail in result.detail
    assert reason in REASONS


def test_reasons_come_in_order() -> None:
    record = _record(score=0.4, interocular_px=10.0, yaw=60.0)
    assert evaluate(record, DEFAULTS).reason == "low_confidence"
    assert evaluate(_record(interocular_px=10.0, yaw=60.0), DEFAULTS).reason == "face_too_small"


def test_small_or_unsure_second_faces_do_not_count() -> None:
    main = [0.95, 0, 0, 200, 200]
    assert count_faces([main, [0.45, 300, 0, 200, 200]], DEFAULTS) == 1  # not confident enough
    assert count_faces([main, [0.9, 300, 0, 30, 30]], DEFAULTS) == 1  # a face on a poster
    assert count_faces([main, [0.9, 300, 0, 60, 60]], DEFAULTS) == 2
    assert count_faces([], DEFAULTS) == 0


def test_expression_and_eyes_are_flags_unless_the_config_excludes_them() -> None:
    blend = {"eyeBlinkLeft": 0.8, "eyeBlinkRight": 0.7, "mouthSmileLeft": 0.9, "mouthSmileRight": 0.85}
    flagged = evaluate(_record(blendshapes=blend), DEFAULTS)
    assert flagged.status == "ok" and flagged.flags == FLAGS
    strict = QCThresholds.from_mapping({"exclude_eyes_closed": True, "exclude_non_neutral_expression": True})
    assert evaluate(_record(blendshapes=blend), strict).reason == "eyes_closed"
    smile_only = {**blend, "eyeBlinkRight": 0.2}
    result = evaluate(_record(blendshapes=smile_only), strict)
    assert (result.reason, result.flags) == ("non_neutral_expression", ("non_neutral_expression",))
    assert "mouthSmileLeft 0.90" in result.detail
    # one eye closed (a wink) is not "eyes closed"
    assert evaluate(_record(blendshapes=smile_only), DEFAULTS).flags == ("non_neutral_expression",)
    # flags are kept on rows excluded for another reason
    assert evaluate(_record(blendshapes=blend, yaw=80.0), DEFAULTS).flags == FLAGS


def test_thresholds_from_config() -> None:
    custom = QCThresholds.from_mapping({"max_yaw": 10, "min_interocular_px": 30.5,
                                        "expression_blendshapes": ["jawOpen"]})
    assert custom.max_yaw == 10 and custom.min_interocular_px == 30.5
    assert custom.expression_blendshapes == ("jawOpen",)
    assert evaluate(_record(yaw=12.0), custom).reason == "extreme_pose"
    for bad, expected in [({"max_yawn": 3}, "qc.max_yawn"), ({"max_yaw": "wide"}, "a number"),
                          ({"max_yaw": -1}, "a number ≥ 0"), ({"max_yaw": True}, "a number"),
                          ({"exclude_eyes_closed": 1}, "true or false"),
                          ({"expression_blendshapes": "jawOpen"}, "a list of strings")]:
        with pytest.raises(InputError, match=expected):
            QCThresholds.from_mapping(bad, "c.toml")
