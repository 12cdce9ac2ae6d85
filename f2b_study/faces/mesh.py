"""Index sets of MediaPipe's 478-point face mesh that the standardisation uses.

The oval, eye and iris sets are those of mediapipe's `FaceLandmarksConnections` (FACE_LANDMARKS_FACE_OVAL,
*_EYE, *_IRIS); they are written out here so that reading a face back does not import mediapipe, and
`tests/test_regions.py` checks them against mediapipe. "Right" and "left" are the subject's: the right eye
appears on the image's left.
"""

from __future__ import annotations

N_LANDMARKS = 478

# the face oval in drawing order (forehead top = 10, chin = 152)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
RIGHT_EYE = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
LEFT_EYE = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
RIGHT_IRIS = (468, 469, 470, 471, 472)  # 468 is the iris centre
LEFT_IRIS = (473, 474, 475, 476, 477)  # 473 is the iris centre
