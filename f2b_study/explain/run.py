"""`f2b-study explain`: region Shapley values, pixel maps and CRAFT concepts for a cohort and a trained run.

    run_explain(cohort, faces, checkpoint, out=, settings=) -> (ExplainResult, files)   (the command's stage)
    explain(images, model, sidecar, settings, baseline_paths=) -> ExplainResult       (faces already chosen)
    write_outputs(result, out) -> {name: path}

Which faces: the cohort's eligible patients with a WHO class and a usable face (the study's `CohortPhotos` and
`FaceTable`, built once), restricted by `settings.split` against the run's split.csv: "validation"
(default) = the run's validation patients plus any patient the run never saw (an external cohort), "train" = its
training patients, "all" = everyone. `max_images` keeps a class-stratified, seeded subset of patients' photos.

Outputs (write_outputs): region_shapley.csv (one row per image: patient_id, photo, split, sex, bone_status,
predicted, baseline, output, facenet_input, f_all_<class> and f_none_<class> = the model's output on the image
and on the baseline, and shap_<region>_<class> for every region and every class's output: all three outputs, so
any table can be recomputed), table6.csv, table7.csv, table8.csv, figures (*.svg, mean face only) and
explain.json (settings, baseline, counts, timings, tables, CRAFT concepts). explain.json and the figures carry no
patient ID.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from f2b_study import CLASSES, __version__
from f2b_study.cohort.cohort_photos import CohortPhotos
from f2b_study.errors import InputError
from f2b_study.explain.settings import ExplainSettings
from f2b_study.faces.table import FaceTable

log = logging.getLogger(__name__)

DISPLAY_SMOOTHING = 1 / 75  # Gaussian σ of the drawn pixel maps, as a fraction of the input size (1.5 px at 112)
EXTERNAL = "external"  # patients the run's split.csv does not list


@dataclasses.dataclass
class ExplainResult:
    document: dict[str, Any]  # explain.json
    region_shapley: pl.DataFrame  # one row per image
    table6: pl.DataFrame
    table7: pl.DataFrame
    table8: pl.DataFrame
    figures: dict[str, str]  # name -> inline SVG


# -- the run folder ---------------------------------------------------------------------------------------------

def _resolve_face(face_path: str | None, content_hash: str | None, cache: Path | None) -> str | None:
    """A cached face's file: the recorded path, else the same entry in `cache` (runs moved between machines)."""
    if face_path and Path(face_path).is_file():
        return face_path
    if cache is not None and content_hash:
        from f2b_study.faces.cache import FaceCache

        candidate = FaceCache(cache).path(content_hash)
        if candidate.is_file():
            return str(candidate)
    return None


def training_face_paths(run_dir: Path, cache: Path | None) -> list[str]:
    """The run's training-split faces (status ok), resolved on disk."""
    split = pl.read_csv(run_dir / "split.csv", infer_schema_length=0)
    frame = pl.read_csv(run_dir / "preprocess.csv", infer_schema_length=0)
    train = set(split.filter(pl.col("split") == "train")["patient_id"].to_list())
    rows = frame.filter((pl.col("status") == "ok") & pl.col("patient_id").is_in(list(train)))
    paths = [_resolve_face(p, h, cache) for p, h in rows.select("face_path", "content_hash").iter_rows()]
    return [p for p in paths if p]


# -- which faces ------------------------------------------------------------------------------------------------

def select_images(cohort: CohortPhotos, faces: FaceTable, *, run_dir: Path | None, split: str
                  ) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Images to explain (patient_id, photo, face_path, bone_status, sex, split) and the counts of how they were
    chosen: the cohort's usable patients' usable faces, restricted by ``split`` against the run's split.csv."""
    ok = faces.ok().select("patient_id", "photo", "face_path")
    assigned = pl.DataFrame({"patient_id": [], "split": []}, schema={"patient_id": pl.String, "split": pl.String})
    if run_dir is not None and (run_dir / "split.csv").is_file():
        assigned = pl.read_csv(run_dir / "split.csv", infer_schema_length=0).select("patient_id", "split")
    patients = cohort.patients.drop("split", strict=False).join(assigned, on="patient_id", how="left").with_columns(
        pl.col("split").fill_null(EXTERNAL))
    images = ok.join(patients.select("patient_id", "bone_status", "sex", "split"), on="patient_id", how="inner")
    wanted = {"validation": ("validation", EXTERNAL), "train": ("train",), "all": ("train", "validation", EXTERNAL)}
    images = images.filter(pl.col("split").is_in(list(wanted[split]))).sort("patient_id", "photo")
    photos = faces.frame.filter(pl.col("patient_id").is_in(cohort.patients["patient_id"].implode()))
    usable = photos.filter(pl.col("status") == "ok").height
    info = {"excluded": dict(cohort.excluded), "photos": photos.height, "photos_ok": usable,
            "photo_qc_excluded": photos.height - usable,
            "by_split": dict(images.group_by("split").len().sort("split").iter_rows()), "split": split}
    return images, info


def stratified_subset(images: pl.DataFrame, limit: int | None, seed: int) -> pl.DataFrame:
    """At most `limit` images, whole patients, taken round-robin over the classes in a seeded order."""
    if limit is None or images.height <= limit:
        return images
    rng = np.random.default_rng(seed)
    queues: dict[str, list[str]] = {}
    for cls in [*CLASSES, *sorted(set(images["bone_status"].to_list()) - set(CLASSES))]:
        ids = sorted(images.filter(pl.col("bone_status") == cls)["patient_id"].unique().to_list())
        queues[cls] = [ids[i] for i in rng.permutation(len(ids))]
    counts = dict(images.group_by("patient_id").len().iter_rows())
    chosen: list[str] = []
    total = 0
    while total < limit and any(queues.values()):
        for queue in queues.values():
            if queue and total < limit:
                patient = queue.pop(0)
                chosen.append(patient)
                total += counts[patient]
    return images.filter(pl.col("patient_id").is_in(chosen)).head(limit)


# -- faces, masks -----------------------------------------------------------------------------------------------

def load_explained_faces(face_paths: Sequence[str], size: int, progress: bool = False
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(faces (N, S, S, 3) uint8, region masks (N, 5, S, S) bool, face masks (N, S, S) bool, landmarks (N, 478, 2)
    in the 512 frame)."""
    from tqdm import tqdm

    from f2b_study.faces.cache import load_face, load_measurements
    from f2b_study.faces.regions import REGIONS, region_labels

    n = len(face_paths)
    faces = np.empty((n, size, size, 3), np.uint8)
    regions = np.empty((n, len(REGIONS), size, size), bool)
    landmarks = np.empty((n, 478, 2), np.float32)
    for i, path in enumerate(tqdm(face_paths, desc="faces and regions", unit="face", disable=not progress,
                                  leave=False)):
        faces[i] = load_face(path, size)[0]
        landmarks[i] = np.asarray(load_measurements(path)["landmarks"], dtype=np.float32)[:, :2]
        labels = region_labels(landmarks[i], size)
        regions[i] = labels[None] == np.arange(len(REGIONS), dtype=np.int8)[:, None, None]
    return faces, regions, regions.any(axis=1), landmarks


# -- the analysis -----------------------------------------------------------------------------------------------

def shapley_frame(images: pl.DataFrame, shap: Any, classes: Sequence[str], baseline: str) -> pl.DataFrame:
    """region_shapley.csv: one row per image (the baseline and the explained output repeated on every row, so the
    file describes itself)."""
    names = np.array(classes)
    n = len(shap.values)
    columns: dict[str, Any] = {"predicted": names[shap.f_all.argmax(axis=1)].tolist() if len(names) else [],
                               "baseline": [baseline] * n, "output": [shap.output] * n,
                               "facenet_input": [shap.facenet_input] * n}
    for k, cls in enumerate(classes):
        columns[f"f_all_{cls}"] = shap.f_all[:, k]
        columns[f"f_none_{cls}"] = shap.f_none[:, k]
    for r, region in enumerate(shap.regions):
        for k, cls in enumerate(classes):
            columns[f"shap_{region}_{cls}"] = shap.values[:, r, k]
    base = images.select("patient_id", "photo", "split", "sex", "bone_status")
    return base.with_columns(pl.Series(name, values) for name, values in columns.items())


def _region_panels(patients: pl.DataFrame, regions: Sequence[str], classes: Sequence[str]
                   ) -> dict[str, dict[str, list[float]]]:
    """{subgroup: {class: mean φ per region of the class's own output}} for the region figure."""
    from f2b_study.explain.tables import value_column

    groups = [("all", patients)]
    groups += [(f"sex {s}", patients.filter(pl.col("sex") == s)) for s in sorted(
        v for v in patients["sex"].unique().to_list() if v is not None)]
    panels: dict[str, dict[str, list[float]]] = {}
    for name, frame in groups:
        panels[name] = {}
        for cls in classes:
            rows = frame.filter(pl.col("bone_status") == cls)
            panels[name][cls] = [float(rows[value_column(r, cls)].mean()) if rows.height else float("nan")
                                 for r in regions]
    return panels


def explain(images: pl.DataFrame, model: Any, sidecar: dict[str, Any], settings: ExplainSettings, *,
            device: str = "auto", baseline_paths: Sequence[str] = (), baseline_source: str = "",
            progress: bool = True) -> ExplainResult:
    """Explain `images` (patient_id, photo, face_path, bone_status, sex, split) with `model`."""
    import torch
    from scipy.ndimage import gaussian_filter

    from f2b_study.explain import figures as figs
    from f2b_study.explain import tables
    from f2b_study.explain.baselines import blur_baseline, mean_baseline_from_paths
    from f2b_study.explain.craft import run_craft
    from f2b_study.explain.pixel_maps import class_means, gradient_maps
    from f2b_study.explain.shapley import has_facenet, region_shapley
    from f2b_study.faces.regions import region_labels
    from f2b_study.models.runtime import InputTransform, face_embeddings, pick_device

    classes = list(sidecar.get("classes") or CLASSES)
    if classes != list(CLASSES):
        raise InputError(f"model classes {classes}: explain works on bone-status models ({', '.join(CLASSES)})")
    if images.height == 0:
        raise InputError("no faces to explain: the cohort has no eligible patient with a usable photo in the "
                         f"'{settings.split}' split (--split all uses every patient)")
    device = pick_device(device)
    model = model.to(device).eval()
    transform = InputTransform.of(model)
    size, mean, std = transform.input_size, list(transform.mean), list(transform.std)
    craft_config = settings.craft_config()
    seconds: dict[str, float] = {}

    clock = time.perf_counter()
    faces, regions, face_masks, landmarks = load_explained_faces(images["face_path"].to_list(), size, progress)
    labels = np.array([classes.index(c) for c in images["bone_status"].to_list()])
    if settings.baseline == "mean":
        if not baseline_paths:
            raise InputError("--baseline mean needs the run's training faces (split.csv + preprocess.csv in the run "
                             "folder, their cache entries on disk; --cache names the cache) — or use --baseline blur")
        baseline = mean_baseline_from_paths(list(baseline_paths), size, source=baseline_source, progress=progress)
    else:
        baseline = blur_baseline(size, settings.blur_sigma)
    base_images = baseline.for_faces(faces, face_masks)
    seconds["load"] = time.perf_counter() - clock

    batch_size = settings.batch_size or (256 if device.type == "cuda" else 64)
    embeddings = None
    if has_facenet(model) and (settings.facenet_input == "original" or craft_config is not None):
        # the unmasked faces' FaceNet embeddings, once: for "original" composites and for CRAFT's crops
        clock = time.perf_counter()
        embeddings = face_embeddings(model, faces, transform=transform, device=device,
                                     batch_size=batch_size).numpy()
        seconds["face_embeddings"] = time.perf_counter() - clock
    shap = region_shapley(model, faces, regions, base_images, mean=mean, std=std, device=device,
                          batch_size=batch_size, output=settings.output, facenet_input=settings.facenet_input,
                          bf16=settings.bf16, embeddings=embeddings, progress=progress)
    seconds["region_shapley"] = shap.seconds
    region_rows = shapley_frame(images, shap, classes, baseline.kind)
    patients = tables.patient_values(region_rows, shap.regions, classes)
    table6 = tables.table6(patients, shap.regions, classes)
    table7, table7_summary = tables.table7(patients, shap.regions, classes)

    mean_rgb = faces.astype(np.float64).mean(axis=0)
    mean_landmarks = landmarks.mean(axis=0)
    mean_labels = region_labels(mean_landmarks, size)
    background = figs.background(mean_rgb, len(faces), mean_labels >= 0)
    figures = {"region_shapley": figs.region_values_svg(
        _region_panels(patients, shap.regions, classes), mean_labels, background, classes, shap.regions,
        title=f"Region Shapley values of each class's own {settings.output} (mean over patients)",
        prefix="xr")}

    pixel_document: dict[str, Any] | None = None
    if settings.pixel_maps:
        clock = time.perf_counter()
        rng = np.random.default_rng(settings.seed)
        chosen = np.concatenate([np.sort(rng.permutation(np.flatnonzero(labels == k))[:settings.pixel_max_per_class])
                                 for k in range(len(classes))]).astype(np.int64)
        chosen_base = base_images[chosen] if base_images.ndim == 4 else base_images
        maps = gradient_maps(model, faces[chosen], labels[chosen], chosen_base, mean=mean, std=std, device=device,
                             output=settings.output, progress=progress)
        per_class = class_means(maps, labels[chosen], classes)
        seconds["pixel_maps"] = time.perf_counter() - clock
        sigma = size * DISPLAY_SMOOTHING
        shown = {cls: gaussian_filter(m, sigma) for cls, m in per_class.items()}
        figures["pixel_maps"] = figs.heatmaps_svg(
            shown, background, mean_labels >= 0, classes,
            title=f"gradient × (input − baseline), mean per class (own-class output; smoothed for display, "
                  f"Gaussian σ {sigma:.1f} px)",
            label=f"attribution ({settings.output})", prefix="xp")
        pixel_document = {"method": "gradient × (input − baseline), summed over colour channels, own-class output",
                          "n_images": {cls: int((labels[chosen] == k).sum()) for k, cls in enumerate(classes)}}

    craft_document: dict[str, Any] | None = None
    table8 = pl.DataFrame({"comparison": [f"{a}–{b}" for i, a in enumerate(classes) for b in classes[i + 1:]]})
    if craft_config is not None:
        craft = run_craft(model, faces, face_masks, labels, classes, mean=mean, std=std, device=device,
                          config=craft_config, output=settings.output, bf16=settings.bf16,
                          face_embeddings=embeddings, progress=progress)
        seconds["craft"] = craft.seconds
        craft_document = craft.describe()
        if craft.classes:
            table8 = tables.table8(craft.maps(), classes)
            figures["craft_importance"] = figs.concept_importance_svg(
                {c.cls: c.importance for c in craft.classes}, classes,
                title="CRAFT: total Sobol importance of each class's concepts", prefix="xc")
            figures["craft_maps"] = figs.heatmaps_svg(
                {c.cls: c.attribution_map for c in craft.classes}, background, mean_labels >= 0, classes, signed=False,
                title="CRAFT concept attribution maps (Σ importance × concept), mean per class",
                label="attribution", prefix="xm")
            attention = {c.cls: c.attention_map for c in craft.classes if c.attention_map is not None}
            if attention:
                figures["ssam_attention"] = figs.heatmaps_svg(
                    attention, background, mean_labels >= 0, classes, signed=False,
                    title="SSAM attention, mean per class", label="attention weight", prefix="xa")

    from f2b_study.models.facenet import provenance

    document = {
        "package_version": __version__,
        "model": {"arch": sidecar.get("arch"), "input_size": size, "classes": classes,
                  "facenet_weights": (provenance(model).get("facenet") or {}).get("source"),
                  "run": (sidecar.get("metadata") or {}).get("run")},
        "settings": settings.describe(),
        "device": str(device),
        "baseline": baseline.describe(),
        "n_images": len(faces),
        "n_patients": patients.height,
        "images_by_class": {cls: int((labels == k).sum()) for k, cls in enumerate(classes)},
        "patients_by_class": {cls: int((patients["bone_status"] == cls).sum()) for cls in classes},
        "mean_face_shown": len(faces) >= figs.MIN_FACES_FOR_MEAN,
        "region_shapley": shap.describe(),
        "table6": table6.to_dicts(),
        "table7": table7.to_dicts(),
        "table7_summary": table7_summary,
        "table8": table8.to_dicts(),
        "jsd": {"base": tables.JSD_BASE, "reported": "divergence (bits) and scipy's distance = √divergence"},
        "pixel_maps": pixel_document,
        "craft": craft_document,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "torch_threads": torch.get_num_threads(),
    }
    return ExplainResult(document=document, region_shapley=region_rows, table6=table6, table7=table7,
                         table8=table8, figures=figures)


def write_outputs(result: ExplainResult, out: Path, private: Path | None = None, png: bool = True
                  ) -> dict[str, Path]:
    """Tables 6-8, figures (SVG and PNG, mean face only) and explain.json under ``out``; region_shapley.csv (one
    row per photo, with patient IDs) under ``private`` (default ``out``)."""
    from f2b_study.atomic import write_bytes, write_text
    from f2b_study.jsonutil import dumps
    from f2b_study.tables import write_csv

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {"region_shapley": (private or out) / "region_shapley.csv"}
    write_csv(result.region_shapley, files["region_shapley"])
    for name, frame in (("table6", result.table6), ("table7", result.table7), ("table8", result.table8)):
        files[name] = out / f"{name}.csv"
        write_csv(frame, files[name])
    for name, svg in result.figures.items():
        files[f"figure_{name}"] = out / f"{name}.svg"
        write_text(files[f"figure_{name}"], svg if svg.startswith("<?xml") else svg + "\n")
        image = svg.png() if png and hasattr(svg, "png") else None  # the shared style renders 300-dpi PNGs too
        if image:
            files[f"figure_{name}_png"] = out / f"{name}.png"
            write_bytes(files[f"figure_{name}_png"], image)
    files["explain"] = out / "explain.json"
    result.document["files"] = {k: v.name for k, v in files.items() if k != "region_shapley"}
    write_text(files["explain"], dumps(result.document) + "\n")
    return files


def run_explain(cohort: CohortPhotos, faces: FaceTable, checkpoint: Any, *, out: Path, settings: ExplainSettings,
                private: Path | None = None, device: str = "auto", progress: bool = True, png: bool = True
                ) -> tuple[ExplainResult, dict[str, Path]]:
    """The stage: choose the faces, load the checkpoint's model, explain, write the aggregates under ``out`` and
    the per-photo values under ``private``."""
    model = checkpoint.load("cpu")
    run_dir = checkpoint.run_dir
    out.mkdir(parents=True, exist_ok=True)
    images, info = select_images(cohort, faces, run_dir=run_dir, split=settings.split)
    images = stratified_subset(images, settings.max_images, settings.seed)
    baseline_paths: list[str] = []
    if settings.baseline == "mean" and run_dir is not None:
        baseline_paths = training_face_paths(run_dir, faces.cache_dir)
    result = explain(images, model, checkpoint.sidecar, settings, device=device, baseline_paths=baseline_paths,
                     baseline_source=f"training split of {run_dir.name}" if run_dir else "", progress=progress)
    result.document["selection"] = info
    result.document["model"]["checkpoint"] = str(checkpoint.path)
    files = write_outputs(result, out, private, png=png)
    return result, files
