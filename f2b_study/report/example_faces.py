"""A sheet of example standardised validation faces per reference class with the model's prediction (asked for
with --include-faces). It shows identifiable faces: it is written to the private outputs only."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from f2b_study import CLASSES

PER_CLASS = 8
TILE = 128


def write_example_faces(images: pl.DataFrame, target: str, path: Path, per_class: int = PER_CLASS) -> Path:
    """``images``: patient_id, photo, face_path, the reference column ``target`` and p_<class> columns. One row of
    up to ``per_class`` faces per reference class (first photos by patient ID), each captioned with its ID and
    predicted class."""
    from PIL import Image, ImageDraw

    from f2b_study.atomic import write_bytes
    from f2b_study.faces.cache import load_face

    proba = [c for c in images.columns if c.startswith("p_")]
    classes = [c for c in CLASSES if f"p_{c}" in proba] or sorted(images[target].unique().to_list())
    caption = 30
    sheet = Image.new("RGB", (110 + per_class * TILE, len(classes) * (TILE + caption) + 10), "white")
    draw = ImageDraw.Draw(sheet)
    for row, reference in enumerate(classes):
        top = 5 + row * (TILE + caption)
        draw.text((5, top + TILE // 2), str(reference), fill="black")
        chosen = (images.filter(pl.col(target) == reference).sort("patient_id", "photo")
                  .unique("patient_id", keep="first", maintain_order=True).head(per_class))
        for column, record in enumerate(chosen.iter_rows(named=True)):
            face, _ = load_face(record["face_path"], TILE)
            left = 110 + column * TILE
            sheet.paste(Image.fromarray(face), (left, top))
            predicted = max(classes, key=lambda c: record.get(f"p_{c}") or 0.0)
            draw.text((left + 2, top + TILE + 2), str(record["patient_id"])[:18], fill="black")
            draw.text((left + 2, top + TILE + 14), f"pred. {predicted}", fill="#b00020" if predicted != reference
                      else "#006400")
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    write_bytes(path, buffer.getvalue())
    return path
