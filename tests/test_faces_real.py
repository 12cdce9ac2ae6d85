"""Face standardisation on real photos (docs/methods.md): the paper's Fig. 1 face, QC reasons, eye line, pose signs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from faces_support import all_photos, photo_frame, sample_photos

from f2b_study.cohort.images import load_rgb
from f2b_study.errors import InputError
from f2b_study.faces import REASONS, SIZE, face_mask, load_face, load_measurements, mesh
from f2b_study.faces.preprocess import preprocess_photos
from f2b_study.faces.qc import QCThresholds


@pytest.fixture(scope="module")
def analyzer():
    from f2b_study.faces.landmarker import FaceAnalyzer

    with FaceAnalyzer() as face_analyzer:
        yield face_analyzer


@pytest.fixture(scope="module")
def sample_run(module_tmp):
    out = module_tmp("real")
    return preprocess_photos(photo_frame(sample_photos(40)), out, workers=1, progress=False)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    d = b - a
    return float(np.degrees(np.arctan2(d[1], d[0])))


def _eye_lines(landmarks: np.ndarray) -> tuple[float, float]:
    """Eye-line angles measured two ways the alignment does not use: iris centres, and eye-corner midpoints."""
    iris = _angle(landmarks[468], landmarks[473])
    corners = _angle((landmarks[33] + landmarks[133]) / 2, (landmarks[362] + landmarks[263]) / 2)
    return iris, corners


def test_models_are_pinned_and_a_changed_byte_is_refused(tmp_path: Path) -> None:
    from f2b_study.faces import assets

    for name in assets.SHA256:
        assert len(assets.model_bytes(name)) > 100_000
    for name in assets.SHA256:
        shutil.copy(assets.ASSETS / name, tmp_path / name)
    data = bytearray((tmp_path / assets.FULL_RANGE_DETECTOR).read_bytes())
    data[1000] ^= 0xFF
    (tmp_path / assets.FULL_RANGE_DETECTOR).write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256"):
        assets.model_bytes(assets.FULL_RANGE_DETECTOR, tmp_path)
    with pytest.raises(InputError, match="reinstall"):
        assets.model_bytes(assets.LANDMARKER, tmp_path / "missing")
    assert (assets.ASSETS / "LICENSE-mediapipe-models.txt").is_file()


def test_mesh_index_sets_match_mediapipe() -> None:
    from mediapipe.tasks.python.vision import FaceLandmarksConnections as C

    def indices(connections) -> set[int]:
        return {c.start for c in connections} | {c.end for c in connections}

    assert set(mesh.FACE_OVAL) == indices(C.FACE_LANDMARKS_FACE_OVAL)
    following = {c.start: c.end for c in C.FACE_LANDMARKS_FACE_OVAL}
    assert all(following[a] == b for a, b in zip(mesh.FACE_OVAL, (*mesh.FACE_OVAL[1:], mesh.FACE_OVAL[0]), strict=True))
    assert set(mesh.RIGHT_EYE) == indices(C.FACE_LANDMARKS_RIGHT_EYE)
    assert set(mesh.LEFT_EYE) == indices(C.FACE_LANDMARKS_LEFT_EYE)
    assert set(mesh.RIGHT_IRIS[1:]) == indices(C.FACE_LANDMARKS_RIGHT_IRIS)
    assert set(mesh.LEFT_IRIS[1:]) == indices(C.FACE_LANDMARKS_LEFT_IRIS)


def test_head_pose_closed_form_matches_scipy() -> None:
    from scipy.spatial.transform import Rotation

    from f2b_study.faces.pose import head_pose

    rng = np.random.default_rng(7)
    for _ in range(50):
        yaw, pitch, roll = rng.uniform(-60, 60, 3)
        matrix = np.eye(4)
        matrix[:3, :3] = Rotation.from_euler("YXZ", [yaw, -pitch, roll], degrees=True).as_matrix() * 1.7
        np.testing.assert_allclose(head_pose(matrix), (yaw, pitch, roll), atol=1e-6)


def test_sample_is_standardised_or_excluded_with_a_named_reason(sample_run) -> None:
    frame = sample_run.frame
    assert frame.height == 40 and frame["photo"].n_unique() == 40
    assert set(frame["status"]) <= {"ok", "excluded"}
    excluded = frame.filter(pl.col("status") == "excluded")
    assert set(excluded["reason"]) <= set(REASONS)
    assert excluded["reason"].null_count() == 0 and excluded["detail"].null_count() == 0
    assert (frame["status"] == "ok").mean() >= 0.9
    # the demo portraits: the only expected exclusion is a small face in a half-body shot
    too_small = excluded.filter(pl.col("reason") == "face_too_small")
    assert (too_small["interocular_px"] < QCThresholds().min_interocular_px).all()
    ok = frame.filter(pl.col("status") == "ok")
    assert ok["face_path"].null_count() == 0 and excluded["face_path"].null_count() == excluded.height
    assert ok["detection_score"].min() >= QCThresholds().min_detection_score
    # the official portraits smile: the expression check is a flag, never an exclusion, by default
    assert ok["flags"].drop_nulls().str.contains("non_neutral_expression").sum() >= 0.5 * ok.height


def test_standardised_faces_look_like_fig_1(sample_run) -> None:
    ok = sample_run.frame.filter(pl.col("status") == "ok")
    for face_path in ok["face_path"]:
        rgb, landmarks = load_face(face_path)
        assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8
        assert landmarks.shape == (478, 2) and landmarks.dtype == np.float32
        mask = face_mask(landmarks)
        assert not rgb[~mask].any(), "black outside the face ellipse"
        assert (rgb[mask].max(axis=1) > 0).mean() > 0.97, "the face fills the ellipse"
        assert 0.45 < mask.mean() < 0.75
        rows = np.nonzero(mask.any(axis=1))[0]
        assert rows[0] <= 0.06 * SIZE and rows[-1] >= 0.94 * SIZE, "the ellipse spans the frame's height"
        for angle in _eye_lines(landmarks):
            assert abs(angle) < 2.0
        # every landmark of the face oval lies inside the frame
        assert (landmarks[list(mesh.FACE_OVAL)] >= 0).all() and (landmarks[list(mesh.FACE_OVAL)] < SIZE).all()
        stored = load_measurements(face_path)
        assert stored["landmarks_photo"].shape == (478, 3) and stored["matrix"].shape == (4, 4)


def test_eye_line_is_level_in_the_pixels(sample_run, analyzer) -> None:
    """Independent of the stored landmarks: the landmarker, run again on the standardised face itself."""
    ok = sample_run.frame.filter(pl.col("status") == "ok")
    for face_path in ok["face_path"][:8]:
        rgb, _ = load_face(face_path)
        again = analyzer.analyze(rgb)
        assert again.landmarks is not None
        iris, corners = _eye_lines(again.landmarks)
        assert abs(iris) < 2.0 and abs(corners) < 2.0


def test_the_224_frame_is_the_512_frame_resized(sample_run) -> None:
    face_path = sample_run.frame.filter(pl.col("status") == "ok")["face_path"][0]
    big, big_landmarks = load_face(face_path)
    small, small_landmarks = load_face(face_path, 224)
    assert small.shape == (224, 224, 3)
    np.testing.assert_allclose(small_landmarks, (big_landmarks + 0.5) * 224 / 512 - 0.5, atol=1e-4)
    import cv2
    from scipy.ndimage import binary_erosion

    resized = cv2.resize(big, (224, 224), interpolation=cv2.INTER_AREA).astype(int)
    inner = binary_erosion(face_mask(big_landmarks, 224), iterations=2)  # away from the ellipse's edge
    assert np.abs(resized[inner] - small[inner].astype(int)).mean() < 4


def test_the_cached_face_is_the_direct_standardisation(sample_run, analyzer) -> None:
    """The cache keeps the face at the photo's resolution; brought back to 512 it matches a direct warp to 512."""
    from scipy.ndimage import binary_erosion

    from f2b_study.faces.standardise import standardise

    row = sample_run.frame.filter(pl.col("status") == "ok").row(0, named=True)
    photo = load_rgb(sample_photos(40)[[p.name for p in sample_photos(40)].index(row["photo"])])
    direct = standardise(photo, analyzer.analyze(photo).landmarks)
    cached, landmarks = load_face(row["face_path"])
    np.testing.assert_allclose(landmarks, direct.landmarks, atol=0.05)
    inner = binary_erosion(face_mask(landmarks), iterations=3)
    assert np.abs(cached[inner].astype(int) - direct.rgb[inner].astype(int)).mean() < 3
    assert (face_mask(landmarks) == (direct.rgb.max(axis=2) > 0)).mean() > 0.99


def _analyse(analyzer, rgb: np.ndarray) -> tuple[float, float, float]:
    from f2b_study.faces.pose import head_pose

    analysis = analyzer.analyze(rgb)
    assert analysis.matrix is not None
    return head_pose(analysis.matrix)


def test_pose_signs(analyzer) -> None:
    import cv2

    photo = load_rgb(sample_photos(40)[3])
    yaw, pitch, roll = _analyse(analyzer, photo)
    height, width = photo.shape[:2]
    # roll > 0: tilted counter-clockwise as the image is viewed (cv2's positive angle)
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 15, 1.0)
    tilted = cv2.warpAffine(photo, turn, (width, height), borderMode=cv2.BORDER_REPLICATE)
    assert _analyse(analyzer, tilted)[2] - roll == pytest.approx(15, abs=4)
    # a mirror image turns and tilts the other way, and keeps the pitch
    m_yaw, m_pitch, m_roll = _analyse(analyzer, np.ascontiguousarray(photo[:, ::-1]))
    assert m_yaw == pytest.approx(-yaw, abs=3) and m_roll == pytest.approx(-roll, abs=3)
    assert m_pitch == pytest.approx(pitch, abs=3)


def test_yaw_sign_follows_the_nose(sample_run) -> None:
    """yaw > 0: the face turns towards the image's right, so the nose tip lies right of the eye midpoint."""
    turned = sample_run.frame.filter((pl.col("status") == "ok") & (pl.col("yaw").abs() > 6))
    assert turned.height >= 3
    for face_path, yaw in turned.select("face_path", "yaw").iter_rows():
        landmarks = load_measurements(face_path)["landmarks"]
        offset = landmarks[1, 0] - (landmarks[33, 0] + landmarks[263, 0]) / 2
        assert np.sign(offset) == np.sign(yaw)


@pytest.mark.slow
def test_all_real_photos(tmp_path: Path) -> None:
    """The issue's bar: >= 98% of the 454 portraits standardised or excluded with a reason a person would agree
    with (here: named, and backed by the measurement), the eye line level on every standardised face."""
    photos = all_photos()
    result = preprocess_photos(photo_frame(photos), tmp_path, workers=2, progress=False)
    frame = result.frame
    assert frame.height == len(photos) and result.computed == len(photos)
    excluded = frame.filter(pl.col("status") == "excluded")
    assert set(excluded["reason"]) <= set(REASONS)
    thresholds = QCThresholds()
    agreed = excluded.filter(
        ((pl.col("reason") == "face_too_small") & (pl.col("interocular_px") < thresholds.min_interocular_px))
        | ((pl.col("reason") == "multiple_faces") & (pl.col("n_faces") > 1))
        | ((pl.col("reason") == "low_confidence") & (pl.col("detection_score") < thresholds.min_detection_score))
        | ((pl.col("reason") == "blurred") & (pl.col("sharpness") < thresholds.min_sharpness))
        | ((pl.col("reason") == "sunglasses") & (pl.col("lens_luma_ratio") < thresholds.sunglasses_max_lens_ratio))
        | pl.col("reason").is_in(["no_face", "extreme_pose", "unreadable"])
    )
    # the official portraits: no sunglasses, and (docs/quality-control.md) at most a few blurred small ones
    assert excluded.filter(pl.col("reason") == "sunglasses").height == 0
    assert excluded.filter(pl.col("reason") == "blurred").height <= 0.02 * frame.height
    # the eye line is the roll: never the matrix's wrap-around values
    assert frame["roll"].drop_nulls().abs().max() < 20
    ok = frame.filter(pl.col("status") == "ok")
    assert (ok.height + agreed.height) / frame.height >= 0.98
    assert ok.height / frame.height >= 0.95
    for face_path in ok["face_path"]:
        landmarks = load_measurements(face_path)["landmarks"]
        assert all(abs(angle) < 2.0 for angle in _eye_lines(landmarks))
