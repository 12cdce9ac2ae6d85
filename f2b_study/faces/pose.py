"""Head pose (yaw, pitch, roll in degrees) from MediaPipe's facial transformation matrix.

The 4×4 matrix maps the canonical face model into the camera frame (OpenGL convention: x to the image's right,
y up, z towards the viewer; the face sits at negative z, its nose pointing along +z when frontal). Its rotation
is decomposed as R = Ry(yaw) · Rx(pitch) · Rz(roll) (intrinsic Y-X-Z, scipy's "YXZ"):

- yaw   > 0: the face turns towards the image's right (the subject's left);
- pitch > 0: chin up, the face points above the camera (the sign of Rx is flipped so that up is positive);
- roll  > 0: the head tilts counter-clockwise as the image is viewed.

A frontal, upright face is (0, 0, 0). `tests/test_faces_real.py` checks the signs by rotating and mirroring
real photos.
"""

from __future__ import annotations

import math

import numpy as np

from f2b_study.faces import mesh


def head_pose(matrix: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from a facial transformation matrix (any uniform scale is removed).

    Closed form of the Y-X-Z decomposition (scipy's Rotation gives the same angles, `tests/test_faces_real.py`
    checks it, but costs about a millisecond a call, a tenth of the landmarker's time):
    R[0,2] = sin(yaw)cos(pitch), R[2,2] = cos(yaw)cos(pitch), R[1,2] = -sin(pitch),
    R[1,0] = cos(pitch)sin(roll), R[1,1] = cos(pitch)cos(roll)."""
    rotation = np.asarray(matrix, dtype=np.float64)[:3, :3]
    rotation = rotation / np.linalg.norm(rotation, axis=0, keepdims=True)  # drop the scale
    sin_pitch = float(np.clip(-rotation[1, 2], -1.0, 1.0))
    yaw = math.degrees(math.atan2(rotation[0, 2], rotation[2, 2]))
    pitch = math.degrees(math.asin(sin_pitch))
    roll = math.degrees(math.atan2(rotation[1, 0], rotation[1, 1]))
    return yaw, -pitch, roll


POSE_DISAGREEMENT = 20.0  # degrees: beyond it the matrix's yaw or pitch is not trusted (see `checked_pose`)


def landmark_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the mesh's own geometry, with `head_pose`'s signs: roll from the line
    between the eye centres (the line the alignment levels), yaw from the depth difference along that line,
    pitch from the depth difference between the forehead top (landmark 10) and the chin (152). ``landmarks``
    are (478, 3) in photo pixels, z in the same scale (smaller z: nearer the camera)."""
    from f2b_study.faces.standardise import eye_centres

    points = np.asarray(landmarks, dtype=np.float64)
    right, left = eye_centres(points[:, :2])
    dx, dy = left - right
    depth = points[list(mesh.LEFT_EYE), 2].mean() - points[list(mesh.RIGHT_EYE), 2].mean()
    roll = -math.degrees(math.atan2(dy, dx))
    yaw = math.degrees(math.atan2(depth, math.hypot(dx, dy)))
    up = points[10] - points[152]
    pitch = math.degrees(math.atan2(up[2], math.hypot(up[0], up[1])))
    return yaw, pitch, roll


def checked_pose(matrix: np.ndarray, landmarks: np.ndarray) -> tuple[float, float, float, str]:
    """(yaw, pitch, roll, source): roll always from the eye line (the matrix's roll can be far off on a badly
    fitted mesh, e.g. -117° for an upright head); yaw and pitch from the matrix unless one of them differs from
    the landmarks' own estimate by more than POSE_DISAGREEMENT degrees, then both from the landmarks
    (source 'landmarks', else 'matrix')."""
    yaw, pitch, _ = head_pose(matrix)
    g_yaw, g_pitch, roll = landmark_pose(landmarks)
    if abs(yaw - g_yaw) > POSE_DISAGREEMENT or abs(pitch - g_pitch) > POSE_DISAGREEMENT:
        return g_yaw, g_pitch, roll, "landmarks"
    return yaw, pitch, roll, "matrix"
