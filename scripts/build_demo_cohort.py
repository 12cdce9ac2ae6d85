"""Build the bundled demo cohort (docs/methods.md, Demo cohort) from the shared public data.

Faces: 454 official US Congress portraits (US government works; pseudonymised, with sex and age).
DXA: NHANES 2007–2018 femur and spine scans (US public domain).
Each face is paired with an NHANES participant of the same sex and age (±2 years; ages over 80 matched to 80,
NHANES' top code) who has spine, hip and BMI values, drawn with weight exp(−0.5 × lowest T) so that the mix
resembles a hospital DXA unit rather than the general population. T-scores use the female young-adult
references (NHANES III, Looker 1998, for the hip; an approximate manufacturer reference for the spine).

THE BONE LABELS ARE SIMULATED: they reach a face only through its age and sex.

    python scripts/build_demo_cohort.py --faces ../shared/data/faces --nhanes ../shared/data/nhanes \
        --out cohorts/demo
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageOps

SEED = 20250615
AGE_WINDOW = 2
AGE_TOP_CODE = 80
POSTMENOPAUSAL_FROM_AGE = 52
ENRICHMENT = 0.5  # draw weight exp(-ENRICHMENT * lowest T)
# female young-adult reference mean and SD, g/cm²
REFERENCES = {
    "femoral_neck": (0.858, 0.120),  # NHANES III, Looker et al. 1998
    "total_hip": (0.942, 0.122),  # NHANES III, Looker et al. 1998
    "spine_l1_l4": (1.047, 0.110),  # approximate manufacturer (Hologic) reference
}
CENTRES = ("centre-A", "centre-B")  # simulated: a seeded random half of the portraits each
JPEG_QUALITY = 88
MAX_SIDE = 512


def t_score(bmd: pl.Expr, site: str) -> pl.Expr:
    mean, sd = REFERENCES[site]
    return ((bmd - mean) / sd).round(2)


def load_nhanes(path: Path) -> pl.DataFrame:
    frame = pl.read_csv(path)
    usable = frame.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in (
        "spine_l1_l4_bmd", "femoral_neck_bmd", "total_hip_bmd", "bmi", "height_cm", "weight_kg")))
    return usable.with_columns(
        t_score(pl.col("spine_l1_l4_bmd"), "spine_l1_l4").alias("t_spine_l1_l4"),
        t_score(pl.col("femoral_neck_bmd"), "femoral_neck").alias("t_femoral_neck"),
        t_score(pl.col("total_hip_bmd"), "total_hip").alias("t_total_hip"),
    ).with_columns(pl.min_horizontal("t_spine_l1_l4", "t_femoral_neck", "t_total_hip").alias("_lowest_t"))


def match(faces: pl.DataFrame, nhanes: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """One NHANES participant per face, same sex, age within the window, without replacement."""
    taken: set[int] = set()
    rows = []
    pool = {sex: nhanes.filter(pl.col("sex") == sex) for sex in ("F", "M")}
    for face in faces.iter_rows(named=True):
        age = min(face["age_years"], AGE_TOP_CODE)
        near = (pl.col("age_years") - age).abs() <= AGE_WINDOW
        stratum = pool[face["sex"]].filter(near & ~pl.col("seqn").is_in(list(taken)))
        weights = np.exp(-ENRICHMENT * stratum["_lowest_t"].to_numpy())
        pick = stratum.row(int(rng.choice(stratum.height, p=weights / weights.sum())), named=True)
        taken.add(pick["seqn"])
        rows.append({**face, **{f"nh_{k}": v for k, v in pick.items()}})
    return pl.DataFrame(rows)


def build(faces_dir: Path, nhanes_dir: Path, out: Path) -> pl.DataFrame:
    rng = np.random.default_rng(SEED)
    faces = pl.read_csv(faces_dir / "labels.csv").sample(fraction=1.0, shuffle=True, seed=SEED)
    matched = match(faces, load_nhanes(nhanes_dir / "nhanes_dxa_2007_2018.csv"), rng)
    n = matched.height
    cohort = matched.select(
        pl.format("P{}", pl.int_range(1, n + 1).cast(pl.String).str.zfill(4)).alias("patient_id"),
        pl.Series("center", rng.choice(CENTRES, size=n)),
        pl.col("sex"),
        pl.col("age_years"),
        pl.when(pl.col("sex") == "F").then(
            pl.when(pl.col("age_years") >= POSTMENOPAUSAL_FROM_AGE).then(pl.lit("post")).otherwise(pl.lit("pre"))
        ).alias("menopausal_status"),
        pl.col("nh_height_cm").alias("height_cm"),
        pl.col("nh_weight_kg").alias("weight_kg"),
        pl.col("nh_bmi").alias("bmi"),
        pl.col("nh_t_spine_l1_l4").alias("t_spine_l1_l4"),
        pl.col("nh_t_femoral_neck").alias("t_femoral_neck"),
        pl.col("nh_t_total_hip").alias("t_total_hip"),
        pl.col("nh_spine_l1_l4_bmd").alias("spine_l1_l4_bmd"),
        pl.col("nh_femoral_neck_bmd").alias("femoral_neck_bmd"),
        pl.col("nh_total_hip_bmd").alias("total_hip_bmd"),
        pl.col("nh_seqn").alias("nhanes_seqn"),
        pl.col("nh_cycle").alias("nhanes_cycle"),
        pl.col("age_source"),
        pl.col("file").alias("_source_file"),
    )
    photos = out / "photos"
    if photos.exists():
        shutil.rmtree(photos)
    photos.mkdir(parents=True)
    for patient_id, source in cohort.select("patient_id", "_source_file").iter_rows():
        reencode(faces_dir / source, photos / f"{patient_id}.jpg")
    cohort = cohort.drop("_source_file")
    cohort.write_csv(out / "cohort.csv")
    return cohort


def reencode(source: Path, target: Path) -> None:
    """Upright pixels only: EXIF (camera, date, any location) is dropped, orientation applied first."""
    with Image.open(source) as image:
        upright = ImageOps.exif_transpose(image).convert("RGB")
    scale = MAX_SIDE / max(upright.size)
    if scale < 1:
        upright = upright.resize((round(upright.width * scale), round(upright.height * scale)), Image.LANCZOS)
    buffer = io.BytesIO()
    upright.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    target.write_bytes(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = Path(__file__).resolve().parent.parent
    parser.add_argument("--faces", type=Path, default=here.parent / "shared" / "data" / "faces")
    parser.add_argument("--nhanes", type=Path, default=here.parent / "shared" / "data" / "nhanes")
    parser.add_argument("--out", type=Path, default=here / "cohorts" / "demo")
    args = parser.parse_args()
    cohort = build(args.faces, args.nhanes, args.out)
    size = sum(f.stat().st_size for f in (args.out / "photos").iterdir())
    lowest = cohort.select(pl.min_horizontal("t_spine_l1_l4", "t_femoral_neck", "t_total_hip")).to_series()
    print(f"{cohort.height} patients, photos {size / 1e6:.1f} MB; lowest T: "
          f"≤-2.5 {int((lowest <= -2.5).sum())}, <-1 {int(((lowest > -2.5) & (lowest < -1)).sum())}, "
          f"≥-1 {int((lowest >= -1).sum())} (before eligibility); mean {lowest.mean():.2f}")


if __name__ == "__main__":
    main()
