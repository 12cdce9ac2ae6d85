"""The cached face's lossless encoding (`cache.encode_face`): exact round trip on any face size."""

from __future__ import annotations

import numpy as np
import pytest

from f2b_study.faces.cache import decode_face, encode_face


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (37, 41, 3), (512, 512, 3)])
def test_round_trip_is_exact(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    face = rng.integers(0, 256, shape, dtype=np.uint8)
    face[: shape[0] // 2] = 255  # wrap-around in the row differences
    data = encode_face(face)
    assert data[:12] == np.array(shape, dtype="<u4").tobytes()
    for stored in (data, np.frombuffer(data, np.uint8)):  # as returned, and as read back from the npz
        back = decode_face(stored)
        assert back.dtype == np.uint8 and back.shape == shape and (back == face).all()


def test_a_smooth_face_compresses() -> None:
    ramp = np.linspace(0, 255, 256, dtype=np.uint8)
    face = np.stack([np.tile(ramp, (256, 1))] * 3, axis=2)
    assert len(encode_face(face)) < face.nbytes / 20
