"""Calibrate the photo quality checks (docs/quality-control.md) on real portraits and synthetic degradations.

    .venv/bin/python scripts/calibrate_qc.py --photos ../shared/data/faces [--limit N] [--workers 2] [--out DIR]

Every photo goes through the real pipeline (`preprocess.analyse_rgb`: detector, landmarker, standardisation,
measurements), clean and after each synthetic change, sized to the face (in units of the eye distance of the
clean photo) so that a change means the same on a small and a large face:

- blur: Gaussian (sigma 0.03 and 0.05 x eye distance), motion (0.15 and 0.3 x eye distance, random angle),
  down-then-up sampling (the eye distance brought to 12 and 8 px and back), heavy JPEG (quality 10 and 5);
- exposure: dark (x0.25), bright (x2 + 60), flat (contrast x0.3), glare (a white flash spot on the face);
- protocol: sunglasses (lenses passing 8-35% of the light, dark frame), a band or hat over the forehead (dark or
  coloured), a bar or hand over the mouth and chin, a cluttered background behind the person.

It prints markdown tables: the sharpness curve (threshold vs the share of clean photos refused and of each
degradation accepted), the exposure checks, and precision/recall of each protocol flag at the shipped
thresholds, on the labelled sample (scripts/qc_labels.csv, real portraits labelled by eye) and on the synthetic
sets; and it saves the sharpness curve as OUT/sharpness_curve.png. The thresholds in `faces/qc.py` were chosen
from its output; rerun it after changing a measurement.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from f2b_study.faces import mesh

# the area a pair of sunglasses covers (for the synthetic ones), and the lower face (for the occlusion study)
RIGHT_LENS = (*mesh.RIGHT_EYE, 70, 63, 105, 66, 107, 55, 193, 111, 117, 118, 119, 120, 121, 128, 245, 143, 156)
LEFT_LENS = (*mesh.LEFT_EYE, 300, 293, 334, 296, 336, 285, 417, 340, 346, 347, 348, 349, 350, 357, 465, 372, 383)
LOWER_FACE = (57, 287, 43, 273, 204, 424, 32, 262, 208, 428, 148, 176, 152, 377, 400, 164, 186, 410, 92, 322)
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)

LABELS = Path(__file__).resolve().parent / "qc_labels.csv"
BLUR = ("gauss:0.03", "gauss:0.05", "motion:0.15", "motion:0.3", "downup:12", "downup:8", "jpeg:10", "jpeg:5")
EXPOSURE = ("dark", "bright", "flat", "glare")
PROTOCOL = ("sunglasses", "forehead_dark", "forehead_colour", "lower_bar", "lower_hand", "clutter")
_state: dict[str, Any] = {}


def _init() -> None:
    import cv2

    cv2.setNumThreads(1)
    from f2b_study.faces.landmarker import FaceAnalyzer

    _state["analyzer"] = FaceAnalyzer()


def _analyse(rgb: np.ndarray) -> dict[str, Any]:
    from f2b_study.faces.preprocess import analyse_rgb

    meta, arrays, face = analyse_rgb(rgb, _state["analyzer"])
    if "landmarks_photo" in arrays:
        meta["_landmarks"] = arrays["landmarks_photo"][:, :2]
        meta["lower_off_skin"] = lower_off_skin(face, arrays["landmarks"])
    return meta


def lower_off_skin(face: bytes, landmarks: np.ndarray) -> float | None:
    """Share of the lower face (lips left out) whose colour is far (8-bit Lab distance > 30) from the cheeks'
    median: the candidate measure for a hand or object over mouth and chin, studied here and not used by the
    pipeline (beards and moustaches read as occluders, a hand reads as skin)."""
    import cv2

    from f2b_study.faces.cache import decode_face
    from f2b_study.faces.measure import LEFT_CHEEK, RIGHT_CHEEK, _hull_mask
    from f2b_study.faces.standardise import to_frame

    stored = decode_face(face)
    lab = cv2.cvtColor(cv2.resize(stored, (128, 128), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2LAB)
    lab = lab.astype(np.float32)
    points = to_frame(landmarks, 128)
    cheeks = _hull_mask(points, RIGHT_CHEEK, 128) | _hull_mask(points, LEFT_CHEEK, 128)
    lower = _hull_mask(points, LOWER_FACE, 128) & ~_hull_mask(points, LIPS, 128)
    if cheeks.sum() < 10 or lower.sum() < 40:
        return None
    skin = np.median(lab[cheeks], axis=0)
    return float((np.sqrt(((lab[lower] - skin) ** 2).sum(axis=1)) > 30).mean())


def _hull(points: np.ndarray, indices: tuple[int, ...]) -> np.ndarray:
    import cv2

    return cv2.convexHull(np.round(points[list(indices)]).astype(np.int32))


def change(rgb: np.ndarray, kind: str, landmarks: np.ndarray, iod: float, rng: np.random.Generator) -> np.ndarray:
    """One synthetic change of an RGB photo, sized to its face (``landmarks`` in photo pixels)."""
    import cv2

    name, _, level_text = kind.partition(":")
    level = float(level_text) if level_text else 0.0
    out = rgb.copy()
    height, width = rgb.shape[:2]
    if name == "gauss":
        return cv2.GaussianBlur(rgb, (0, 0), level * iod)
    if name == "motion":
        k = max(3, round(level * iod) | 1)
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1
        turn = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), float(rng.uniform(0, 180)), 1)
        kernel = cv2.warpAffine(kernel, turn, (k, k))
        return cv2.filter2D(rgb, -1, kernel / kernel.sum())
    if name == "downup":
        factor = min(1.0, level / iod)
        small = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    if name == "jpeg":
        _, data = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(level)])
        return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])
    pixels = rgb.astype(np.float32)
    if name == "dark":
        return (pixels * 0.25).astype(np.uint8)
    if name == "bright":
        return np.clip(pixels * 2 + 60, 0, 255).astype(np.uint8)
    if name == "flat":
        return np.clip((pixels - pixels.mean()) * 0.3 + pixels.mean(), 0, 255).astype(np.uint8)
    if name == "glare":  # a flash reflection: a white spot over forehead and one cheek
        centre = landmarks[151] * 0.5 + landmarks[205] * 0.5
        mask = np.zeros((height, width), np.float32)
        cv2.ellipse(mask, (int(centre[0]), int(centre[1])), (int(0.8 * iod), int(1.1 * iod)), 20, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), 0.1 * iod)[:, :, None]
        return np.clip(pixels * (1 - mask) + 255 * mask * 1.2, 0, 255).astype(np.uint8)
    if name == "sunglasses":
        lenses = np.zeros((height, width), np.uint8)
        for indices in (RIGHT_LENS, LEFT_LENS):
            cv2.fillConvexPoly(lenses, _hull(landmarks, indices), 1)
        passes = float(rng.uniform(0.08, 0.35))
        tint = np.array(rng.choice([[1.0, 1.0, 1.0], [0.9, 0.8, 0.6], [0.7, 0.8, 0.9], [0.8, 0.9, 0.7]]), np.float32)
        inside = lenses.astype(bool)
        out = pixels.copy()
        out[inside] = out[inside] * passes * tint + 6
        frame = max(1, round(iod / 18))
        for indices in (RIGHT_LENS, LEFT_LENS):
            cv2.polylines(out, [_hull(landmarks, indices)], True, (20, 20, 20), frame)
        cv2.line(out, tuple(int(v) for v in landmarks[193]), tuple(int(v) for v in landmarks[417]), (20, 20, 20),
                 frame)
        return np.clip(out, 0, 255).astype(np.uint8)
    if name.startswith("forehead"):  # a band or hat from above the head down to 40-75% of the forehead
        top, brow = landmarks[10], (landmarks[105] + landmarks[334]) / 2
        reach = float(rng.uniform(0.4, 0.75))
        bottom = top[1] + reach * (brow[1] - top[1])
        left, right = landmarks[list(mesh.FACE_OVAL), 0].min(), landmarks[list(mesh.FACE_OVAL), 0].max()
        pad = 0.3 * (right - left)
        colour = (rng.integers(15, 60, 3) if name == "forehead_dark"
                  else rng.choice([[200, 30, 30], [30, 60, 180], [230, 230, 220], [40, 140, 60], [220, 180, 40]]))
        x0, x1 = int(left - pad), int(right + pad)
        cv2.rectangle(out, (x0, 0), (x1, int(bottom)), tuple(int(c) for c in colour), -1)
        return out
    if name.startswith("lower"):  # a bar (microphone, instrument) or a hand over mouth and chin
        mouth, chin = landmarks[13], landmarks[152]
        span = float(np.linalg.norm(landmarks[291] - landmarks[61]))
        if name == "lower_bar":
            colour = tuple(int(c) for c in rng.choice([[30, 30, 30], [90, 90, 95], [160, 120, 60], [200, 200, 200]]))
            angle = float(rng.uniform(-35, 35))
            box = cv2.boxPoints(((float(mouth[0]), float((mouth[1] + chin[1]) / 2)),
                                 (2.2 * span, 0.45 * span + 0.5 * float(chin[1] - mouth[1])), angle))
            cv2.fillConvexPoly(out, np.round(box).astype(np.int32), colour)
            return out
        skin = np.median(rgb[int(landmarks[205][1]), int(landmarks[205][0]) - 2:int(landmarks[205][0]) + 3], axis=0)
        hand = np.clip(skin * rng.uniform(0.8, 1.05), 0, 255)
        x0, x1 = int(mouth[0] - 1.3 * span), int(mouth[0] + 1.3 * span)
        y0, y1 = int(landmarks[2][1] + 0.1 * span), int(chin[1] + 0.3 * span)
        cv2.rectangle(out, (x0, y0), (x1, y1), tuple(int(c) for c in hand), -1)
        for k in range(1, 4):  # the gaps between fingers
            y = int(y0 + k * (y1 - y0) / 4)
            cv2.line(out, (x0, y), (x1, y), tuple(int(c * 0.6) for c in hand), max(1, int(iod / 25)))
        return out
    if name == "clutter":  # the person (head and everything below the chin) in front of a cluttered scene
        scene = np.full_like(rgb, 128)
        for _ in range(40):
            x, y = rng.integers(0, width), rng.integers(0, height)
            w, h = rng.integers(width // 20, width // 4), rng.integers(height // 20, height // 4)
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.rectangle(scene, (int(x), int(y)), (int(x + w), int(y + h)), colour, -1)
        keep = np.zeros((height, width), np.uint8)
        oval = landmarks[list(mesh.FACE_OVAL)]
        (cx, cy), (low, high) = oval.mean(axis=0), (oval.min(axis=0), oval.max(axis=0))
        half_w, half_h = 0.5 * (high - low)
        cv2.ellipse(keep, (int(cx), int(cy - 0.15 * half_h)), (int(1.15 * half_w), int(1.3 * half_h)), 0, 0, 360,
                    1, -1)
        keep[int(high[1]):] = 1
        return np.where(keep[:, :, None].astype(bool), rgb, scene)
    raise ValueError(kind)


def _task(path: str, seed: int) -> dict[str, Any]:
    from f2b_study.cohort.images import load_rgb

    rgb = load_rgb(path)
    clean = _analyse(rgb)
    results = {"photo": Path(path).name, "clean": clean}
    if "_landmarks" not in clean:
        return results
    rng = np.random.default_rng(seed)
    landmarks, iod = clean["_landmarks"], clean["interocular_px"]
    for kind in (*BLUR, *EXPOSURE, *PROTOCOL):
        results[kind] = _analyse(change(rgb, kind, landmarks, iod, rng))
    for meta in results.values():
        if isinstance(meta, dict):
            meta.pop("_landmarks", None)
    return results


def measure(meta: dict[str, Any], key: str) -> float | None:
    return (meta.get("measures") or {}).get(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="every k-th photo so that about N are used (0: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("reports") / "qc_calibration")
    parser.add_argument("--reuse", action="store_true",
                        help="print the tables from OUT/measurements.jsonl of an earlier run (thresholds changed in "
                        "faces/qc.py, measurements unchanged)")
    args = parser.parse_args()
    saved = args.out / "measurements.jsonl"
    if args.reuse:
        runs = [json.loads(line) for line in saved.read_text().splitlines()]
    else:
        paths = sorted(str(p) for p in args.photos.glob("*.jpg"))
        if args.limit:
            paths = paths[:: max(1, len(paths) // args.limit)][: args.limit]
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.workers, mp_context=context, initializer=_init) as pool:
            runs = list(pool.map(_task, paths, range(len(paths)), chunksize=4))
        args.out.mkdir(parents=True, exist_ok=True)
        saved.write_text("".join(json.dumps(run) + "\n" for run in runs))
    report(runs, args.out)


def _usable(meta: dict[str, Any]) -> bool:
    """A photo the earlier checks let through (a face, not too small): the population a later check sees."""
    from f2b_study.faces.qc import QCThresholds

    return bool(meta.get("landmarks")) and meta.get("interocular_px", 0) >= QCThresholds().min_interocular_px


def report(runs: list[dict[str, Any]], out: Path) -> None:
    from f2b_study.faces.qc import QCThresholds, evaluate

    t = QCThresholds()
    clean = [r["clean"] for r in runs if _usable(r["clean"])]
    print(f"{len(runs)} photos; {len(clean)} with a face of at least {t.min_interocular_px:g} px between the eyes")
    # -- sharpness curve
    values = {"clean": np.array([measure(m, "sharpness") for m in clean], float)}
    lost = {}
    for kind in BLUR:
        metas = [r[kind] for r in runs if kind in r]
        values[kind] = np.array([measure(m, "sharpness") for m in metas if _usable(m)], float)
        lost[kind] = sum(not _usable(m) for m in metas)
    grid = (30, 35, 40, 45, 50, 55, 60, 65, 70, 80)
    print("\n### Sharpness: threshold vs clean photos refused and degraded photos accepted\n")
    print("| min_sharpness | clean refused | " + " | ".join(f"{k} accepted" for k in BLUR) + " |")
    print("|---:|---:|" + "---:|" * len(BLUR))
    for threshold in grid:
        cells = [f"{(values['clean'] < threshold).mean():.1%}"]
        cells += [f"{(values[k] >= threshold).mean():.1%}" for k in BLUR]
        mark = " **(shipped)**" if threshold == t.min_sharpness else ""
        print(f"| {threshold}{mark} | " + " | ".join(cells) + " |")
    print("\n(no face or too small after the change, so not reaching the sharpness check: "
          + ", ".join(f"{k} {n}" for k, n in lost.items()) + ")")
    print("\nclean sharpness percentiles 0/1/5/50: "
          + " / ".join(f"{np.percentile(values['clean'], q):.1f}" for q in (0, 1, 5, 50)))
    _plot(values, grid, t.min_sharpness, out / "sharpness_curve.png")
    # -- exposure
    print("\n### Exposure checks at the shipped thresholds (share of photos raising each finding)\n")
    names = ("underexposed", "overexposed", "clipped_highlights", "low_contrast", "blurred")
    print("| set | n | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for kind in ("clean", *EXPOSURE):
        metas = [r[kind] for r in runs if kind in r and _usable(r[kind])]
        found = [set(evaluate(m, t).reasons) | set(evaluate(m, t).flags) for m in metas]
        print(f"| {kind} | {len(metas)} | " + " | ".join(f"{np.mean([n in f for f in found]):.1%}" for n in names)
              + " |")
    # -- protocol flags
    labels = {row["file"]: row for row in csv.DictReader(
        line for line in LABELS.read_text().splitlines() if not line.startswith("#"))}
    by_photo = {r["photo"]: r for r in runs}
    print("\n### Protocol flags: precision and recall at the shipped thresholds\n")
    print("| flag | evaluated on | positives | negatives | precision | recall |")
    print("|---|---|---:|---:|---:|---:|")

    def raised(meta: dict[str, Any], flag: str) -> bool:
        result = evaluate(meta, t)
        return flag in result.flags or flag in result.reasons

    def row(flag: str, where: str, positives: list[dict[str, Any]], negatives: list[dict[str, Any]]) -> None:
        tp = sum(raised(m, flag) for m in positives)
        fp = sum(raised(m, flag) for m in negatives)
        precision = f"{tp / (tp + fp):.2f}" if tp + fp else "n/a"
        recall = f"{tp / len(positives):.2f}" if positives else "n/a"
        print(f"| {flag} | {where} | {len(positives)} | {len(negatives)} | {precision} | {recall} |")

    labelled = [(name, by_photo[name]["clean"]) for name in labels if name in by_photo
                and _usable(by_photo[name]["clean"])]
    for flag, column in (("eyeglasses", "eyeglasses"), ("forehead_covered", "forehead_covered"),
                         ("busy_background", "busy_background")):
        row(flag, "labelled portraits", [m for n, m in labelled if labels[n][column] == "1"],
            [m for n, m in labelled if labels[n][column] == "0"])
    synthetic = {"sunglasses": ("sunglasses",), "forehead_covered": ("forehead_dark", "forehead_colour"),
                 "busy_background": ("clutter",)}
    for flag, kinds in synthetic.items():
        for kind in kinds:
            positives = [r[kind] for r in runs if kind in r and _usable(r[kind])]
            if flag == "busy_background":  # negatives: portraits labelled plain
                negatives = [m for n, m in labelled if labels[n]["busy_background"] == "0"]
            elif flag == "forehead_covered":
                negatives = [m for n, m in labelled if labels[n]["forehead_covered"] == "0"]
            else:  # every clean portrait, glasses wearers included
                negatives = clean
            row(flag, f"synthetic {kind} vs clean portraits", positives, negatives)
    # lower face: measured, not a check (beards read as occluders); its separation, for the record
    print("\n### Lower-face occlusion (measured, not used as a check): lower_off_skin percentiles\n")
    print("| set | n | 5% | 50% | 95% |")
    print("|---|---:|---:|---:|---:|")
    for kind in ("clean", "lower_bar", "lower_hand"):
        metas = [r[kind] for r in runs if kind in r and _usable(r[kind])]
        v = np.array([m.get("lower_off_skin") for m in metas], float)
        v = v[np.isfinite(v)]
        print(f"| {kind} | {len(v)} | " + " | ".join(f"{np.percentile(v, q):.2f}" for q in (5, 50, 95)) + " |")


def _plot(values: dict[str, np.ndarray], grid: tuple[int, ...], chosen: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thresholds = np.linspace(0, 150, 301)
    figure, axis = plt.subplots(figsize=(8, 5))
    axis.plot(thresholds, [(values["clean"] < x).mean() for x in thresholds], lw=2.5, color="black",
              label="clean portraits refused")
    for kind in BLUR:
        axis.plot(thresholds, [(values[kind] >= x).mean() for x in thresholds], lw=1.2, label=f"{kind} accepted")
    axis.axvline(chosen, ls="--", color="grey")
    axis.set_xlabel("min_sharpness")
    axis.set_ylabel("share of photos")
    axis.set_title("Sharpness threshold: clean refused vs degraded accepted")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"\nplot: {path}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
