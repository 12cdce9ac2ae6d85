"""The five facial regions (docs/methods.md): disjoint, covering the face mask, anatomically ordered, any frame size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from faces_support import photo_frame, sample_photos
from PIL import Image

from f2b_study.faces import REGION_LANDMARKS, REGIONS, face_mask, load_face, mesh, region_labels, region_masks


@pytest.fixture(scope="module")
def faces(module_tmp) -> list[tuple[np.ndarray, np.ndarray]]:
    """Three real standardised faces (rgb, landmarks in the 512 frame)."""
    from f2b_study.faces.preprocess import preprocess_photos

    result = preprocess_photos(photo_frame(sample_photos(40)[10:13]), module_tmp("regions"),
                               workers=1, progress=False)
    paths = [p for p in result.frame["face_path"] if p]
    assert len(paths) == 3
    return [load_face(p) for p in paths]


def test_seed_sets_are_disjoint_valid_indices() -> None:
    assert tuple(REGION_LANDMARKS) == REGIONS == ("forehead", "periorbital", "midface", "nasolabial", "jawline")
    seen: list[int] = [i for name in REGIONS for i in REGION_LANDMARKS[name]]
    assert len(seen) == len(set(seen)), "a landmark seeds one region only"
    assert all(0 <= i < mesh.N_LANDMARKS for i in seen)


@pytest.mark.parametrize("size", [512, 224])
def test_disjoint_and_covering_the_face(faces, size: int) -> None:
    for _, landmarks in faces:
        masks = region_masks(landmarks, size)
        assert masks.shape == (5, size, size) and masks.dtype == bool
        face = face_mask(landmarks, size)
        assert masks.sum(axis=0).max() == 1, "disjoint"
        assert not (masks.any(axis=0) & ~face).any(), "inside the face mask"
        coverage = masks.any(axis=0).sum() / face.sum()
        assert coverage >= 0.90
        shares = masks.sum(axis=(1, 2)) / face.sum()
        assert shares.min() > 0.05, dict(zip(REGIONS, shares.round(3), strict=True))


def test_224_masks_are_the_512_masks_resized(faces) -> None:
    _, landmarks = faces[0]
    big = region_labels(landmarks, 512)
    small = region_labels(landmarks, 224)
    resized = np.asarray(Image.fromarray((big + 1).astype(np.uint8)).resize((224, 224), Image.Resampling.NEAREST))
    assert (resized.astype(np.int16) - 1 == small).mean() > 0.97


def test_regions_are_in_anatomical_order(faces) -> None:
    for _, landmarks in faces:
        labels = region_labels(landmarks)
        rows = {name: np.nonzero(labels == k)[0].mean() for k, name in enumerate(REGIONS)}
        assert rows["forehead"] < rows["periorbital"] < rows["midface"] < rows["nasolabial"] < rows["jawline"]
        # the eyes lie in the periorbital region, the nose tip in the midface, the mouth in the nasolabial one
        for index, region in ((468, "periorbital"), (473, "periorbital"), (1, "midface"), (13, "nasolabial"),
                              (152, "jawline"), (151, "forehead")):
            x, y = np.round(landmarks[index]).astype(int)
            assert REGIONS[labels[y, x]] == region


def _skin(rgb: np.ndarray) -> float:
    return float(((rgb[..., 0] > 120) & (rgb[..., 0].astype(int) > rgb[..., 2].astype(int) + 30)).mean())


def test_figure_on_a_mean_face(faces, tmp_path: Path) -> None:
    from f2b_study.faces.figures import MIN_FACES_FOR_MEAN, regions_figure, save_regions_figure

    rgb = np.mean([f for f, _ in faces], axis=0).astype(np.uint8)
    landmarks = np.mean([lm for _, lm in faces], axis=0)
    shown = save_regions_figure(tmp_path / "shown.png", rgb, landmarks, n_faces=MIN_FACES_FOR_MEAN, title="test")
    hidden = save_regions_figure(tmp_path / "hidden.png", rgb, landmarks, n_faces=len(faces))
    with Image.open(shown) as a, Image.open(hidden) as b:
        assert a.format == b.format == "PNG" and a.size[0] > 600
        # with too few faces the mean face is not drawn: the left panel holds no skin colour
        left_a = np.asarray(a.convert("RGB"))[100:-100, 60 : a.size[0] // 2 - 40]
        left_b = np.asarray(b.convert("RGB"))[100:-100, 60 : b.size[0] // 2 - 40]
        assert _skin(left_a) > 0.05 and _skin(left_b) < 0.01
    with pytest.raises(ValueError, match="no faces"):
        regions_figure([], tmp_path / "none.png")
