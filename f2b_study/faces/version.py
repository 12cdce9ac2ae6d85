"""The face pipeline's version: part of every cache key, recorded in model checkpoints (screening refuses a
model trained on faces from another version). Bump it whenever a change alters faces, landmarks or
measurements."""

PIPELINE_VERSION = "faces-2"  # 2: QC measurements (sharpness, exposure, eyewear, forehead, background)
