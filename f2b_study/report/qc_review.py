"""The QC review sheet (`preprocess --review`): every excluded and flagged photo as a thumbnail with its reasons,
flags and measurements, and a sample of accepted ones, filterable by finding. A study team looks at it to see
whether the checks agree with their own eyes before they trust the flow diagram's counts.

It shows identifiable faces: it is written beside the private outputs (preprocess.csv) and never enters a
shareable report. The page is one self-contained file: thumbnails are inline JPEG data (re-encoded pixels, no
EXIF), the filter is a few lines of inline script, and a Content-Security-Policy forbids any fetch.
"""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

REVIEW_NAME = "qc_review.html"
THUMB = 168  # px, the thumbnail's longer side
MAX_CARDS = 3000  # beyond this many excluded/flagged photos the sheet lists the rest as a count (see the CSV)
MEASURES = (("sharpness", "sharpness", "{:.0f}"), ("luma_median", "median luma", "{:.0f}"),
            ("contrast", "contrast", "{:.0f}"), ("clipped_fraction", "clipped", "{:.1%}"),
            ("lens_luma_ratio", "eye/cheek lightness", "{:.2f}"), ("bridge_edges", "bridge edges", "{:.2f}"),
            ("forehead_dark", "dark forehead", "{:.0%}"), ("background_edges", "background edges", "{:.3f}"),
            ("other_face_ratio", "other face ratio", "{:.2f}"), ("interocular_px", "eye distance px", "{:.0f}"),
            ("yaw", "yaw", "{:+.0f}°"), ("pitch", "pitch", "{:+.0f}°"), ("roll", "roll", "{:+.0f}°"))


def thumbnail(path: str | Path, side: int = THUMB) -> str | None:
    """The photo as a small JPEG data URI (upright, pixels only), or None when it cannot be decoded."""
    import cv2

    from f2b_study.cohort.images import ImageError, load_rgb

    try:
        rgb = load_rgb(path)
    except (ImageError, OSError):
        return None
    height, width = rgb.shape[:2]
    scale = side / max(height, width)
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                         interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 82])
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii") if ok else None


def _card(row: dict[str, Any], path: str | None) -> dict[str, Any]:
    reasons = [r for r in (row.get("reasons") or row.get("reason") or "").split(";") if r]
    flags = [f for f in (row.get("flags") or "").split(";") if f]
    measures = []
    for key, label, fmt in MEASURES:
        value = row.get(key)
        if value is not None and value == value:  # not NaN
            measures.append((label, fmt.format(value)))
    return {"photo": row["photo"], "patient_id": row["patient_id"], "status": row["status"], "reasons": reasons,
            "flags": flags, "detail": row.get("detail") or "", "measures": measures,
            "tags": " ".join(["excluded" if row["status"] == "excluded" else "kept", *reasons, *flags]),
            "src": thumbnail(path) if path else None}


def render_qc_review(frame: pl.DataFrame, paths: dict[str, str], *, accepted_sample: int = 24, seed: int = 0,
                     title: str = "Photo quality control: review sheet") -> str:
    """The review sheet's HTML. ``frame`` is preprocess.csv's table (`PreprocessResult.frame`); ``paths`` maps
    each row's ``photo`` to its file. Every excluded or flagged photo gets a card, plus ``accepted_sample``
    accepted photos without a flag, chosen at random with ``seed``."""
    import jinja2

    rows = frame.to_dicts()
    findings = [r for r in rows if r["status"] == "excluded" or r.get("flags")]
    clean = [r for r in rows if r["status"] == "ok" and not r.get("flags")]
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(clean), size=min(accepted_sample, len(clean)), replace=False).tolist()) \
        if clean else []
    findings.sort(key=lambda r: r["status"] != "excluded")  # excluded photos first (a stable sort)
    shown = findings[:MAX_CARDS]
    cards = [_card(r, paths.get(r["photo"])) for r in shown] + [_card(clean[i], paths.get(clean[i]["photo"]))
                                                                 for i in picked]
    counts: Counter[str] = Counter()
    for card in cards[: len(shown)]:
        counts.update(dict.fromkeys([*card["reasons"], *card["flags"]], 1))
    from f2b_study.faces.qc import REASONS

    order = {name: i for i, name in enumerate(REASONS)}
    filters = sorted(counts.items(), key=lambda item: order.get(item[0], len(order)))
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return environment.get_template("qc_review.html.j2").render(
        title=title, cards=cards, filters=filters, n_photos=len(rows),
        n_excluded=sum(r["status"] == "excluded" for r in rows),
        n_flagged=sum(r["status"] == "ok" and bool(r.get("flags")) for r in rows), n_accepted_shown=len(picked),
        n_accepted=len(clean), n_not_shown=len(findings) - len(shown))


def write_qc_review(frame: pl.DataFrame, paths: dict[str, str], out_dir: str | Path, **options: Any) -> Path:
    """Write ``out_dir/qc_review.html`` atomically; returns its path."""
    from f2b_study.atomic import write_text

    path = Path(out_dir) / REVIEW_NAME
    write_text(path, render_qc_review(frame, paths, **options))
    return path
