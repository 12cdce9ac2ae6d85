"""Shared by the multi-centre tests: synthetic sites, the comparison of a pool with `multicentre_summary` on the
same patients, and the privacy scanner every summary must pass."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from f2b_study import CLASSES
from f2b_study.stats.metrics import OVERALL_FROM_CM

PROVENANCE = {"model_sha256": "0" * 64, "model_arch": "face2bone", "classes": list(CLASSES), "tool_version": "0.1.0",
              "face_pipeline_version": "faces-1", "config_sha256": "c" * 64, "simulated_labels": True}
SETTINGS = {"qc": {}, "rules": {}, "evaluated": "the cohort's validation split (synthetic)"}


def synthetic_site(rng: np.random.Generator, name: str, n: int, n_train: int, *,
                   separation: float = 1.0) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Predictions of one centre (validation rows with probabilities, training rows with covariates) and its
    participant flow."""
    total = n + n_train
    y = rng.choice(3, size=total, p=[0.3, 0.5, 0.2])
    logits = rng.normal(size=(total, 3)) + separation * (y[:, None] == np.arange(3))
    proba = np.exp(logits)
    proba /= proba.sum(axis=1, keepdims=True)
    split = np.array(["validation"] * n + ["train"] * n_train)
    height = rng.normal(165, 8, total).round(1)
    weight = rng.normal(70, 12, total).round(1)
    frame = pl.DataFrame({
        "patient_id": [f"{name}-{i:04d}" for i in range(total)], "center": [name] * total,
        "bone_status": np.array(CLASSES)[y].tolist(), "split": split.tolist(),
        **{f"p_{c}": np.where(split == "train", np.nan, proba[:, k]) for k, c in enumerate(CLASSES)},
        "sex": rng.choice(["F", "M"], size=total, p=[0.7, 0.3]).tolist(),
        "age_years": rng.integers(50, 90, size=total).astype(float), "height_cm": height, "weight_kg": weight,
        "bmi": weight / (height / 100) ** 2,
    }).with_columns(pl.col(f"p_{c}" for c in CLASSES).fill_nan(None))
    counts = dict(zip(*np.unique(np.array(CLASSES)[y], return_counts=True), strict=True))
    flow = {"enrolled": total + 12, "excluded": {"premenopausal": 8, "man aged 50 or younger": 3, "no consent": 1},
            "eligible": total, "eligible_by_class": {c: int(counts.get(c, 0)) for c in CLASSES}, "no_photo": 2,
            "photo_qc_excluded": {"no_face": 1}, "analysed": total, "split": {"train": n_train, "validation": n}}
    return frame, flow


# -- comparing a pool with the same patients evaluated together ------------------------------------------------------

def assert_close(a: Any, b: Any, path: str = "", tol: float = 1e-9) -> None:
    """Equal JSON-like structures, floats within ``tol`` (absolute)."""
    if isinstance(b, Mapping):
        assert isinstance(a, Mapping), path
        for key in b:
            assert key in a, f"{path}.{key} missing"
            assert_close(a[key], b[key], f"{path}.{key}", tol)
    elif isinstance(b, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]", tol)
    elif isinstance(b, float) and b is not None:
        assert a is not None and abs(a - b) <= tol, f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def per_centre_document(ev: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ev[k] for k in ("n", "overall", "ci", "per_class", "confusion_matrix", "auc_se",
                               "hosmer_lemeshow_multinomial")}


def compare_with_reference(pooled: Any, reference: Mapping[str, Any], frames: Mapping[str, pl.DataFrame],
                           exact: bool = True) -> dict[str, Any]:
    """Assert what pools exactly; return the differences of what does not (for the report of the test)."""
    # every per-centre figure, and the meta-analysis, exactly
    for name, ev in reference["centres"].items():
        assert_close(pooled.multicentre["centres"][name], per_centre_document(ev), f"centres.{name}")
        for key, comp in ev["comparators"].items():
            site = next(s for s in pooled.sites if s.name == name)
            mine = site.doc["comparators"][key]
            if comp.get("evaluation"):
                assert_close(mine["evaluation"], per_centre_document(comp["evaluation"]), f"{name}.{key}")
                assert_close(mine["comparison"], comp["comparison"], f"{name}.{key}.comparison")
    assert_close(pooled.multicentre["meta"], reference["meta"], "meta")
    ref, ev = reference["pooled"], pooled.evaluation
    assert ev["confusion_matrix"] == ref["confusion_matrix"]
    for key in OVERALL_FROM_CM:
        assert_close(ev["overall"][key], ref["overall"][key], f"overall.{key}")
    for name in CLASSES:
        for key in ("accuracy", "precision", "recall", "f1", "kappa", "brier"):
            assert_close(ev["per_class"][name][key], ref["per_class"][name][key], f"{name}.{key}")
    assert_close(ev["overall"]["brier"], ref["overall"]["brier"], "brier")
    differences: dict[str, Any] = {}
    if exact:
        assert_close(ev["overall"]["ece"], ref["overall"]["ece"], "ece")
    else:
        low, high = ev["ece_pooling"]["interval"]
        assert low - 1e-12 <= ref["overall"]["ece"] <= high + 1e-12
        differences["ece"] = {"pooled": ev["overall"]["ece"], "all patients": ref["overall"]["ece"],
                              "bound": high - low}
    for name in CLASSES:
        approx, truth = ev["per_class"][name]["auc"], ref["per_class"][name]["auc"]
        bound = ev["auc_bounds"][name]
        assert abs(approx - truth) <= bound + 1e-12, (name, approx, truth, bound)
        differences[f"auc.{name}"] = {"pooled": approx, "all patients": truth, "bound": bound}
    differences["auc_macro"] = {"pooled": ev["overall"]["auc_macro_ovr"],
                                "all patients": ref["overall"]["auc_macro_ovr"]}
    for key in ("accuracy", "kappa", "f1_macro"):
        differences[f"ci.{key}"] = {"pooled": ev["ci"].get(key), "all patients": ref["ci"].get(key)}
    for name in CLASSES:
        differences[f"hl.{name}"] = {"pooled": ev["per_class"][name]["hosmer_lemeshow"],
                                     "all patients": ref["per_class"][name]["hosmer_lemeshow"]}
    # subgroups: the confusion-matrix figures of the summed subgroup tables
    for column in ("sex", "age_band"):
        for level, sub in ref["subgroups"].get(column, {}).items():
            mine = ev["subgroups"][column].get(level)
            if mine is None or "partial" in mine["notes"].get("n", ""):
                continue
            for key in OVERALL_FROM_CM:
                assert_close(mine["overall"][key], sub["overall"][key], f"subgroups.{column}.{level}.{key}")
    # decision curves and Wilson intervals from all validation rows together
    rows = pl.concat([f.filter(pl.col("split") != "train") for f in frames.values()], how="diagonal_relaxed")
    y = rows["bone_status"].replace_strict({c: i for i, c in enumerate(CLASSES)}, return_dtype=pl.Int64).to_numpy()
    proba = rows.select(f"p_{c}" for c in CLASSES).to_numpy()
    for decision, (event, score) in {"osteoporosis": (y == 2, proba[:, 2]),
                                     "low_bone_mass": (y != 0, 1 - proba[:, 0])}.items():
        for point in pooled.decision_curves["index_test"][decision]:
            t = point["threshold"]
            refer = score >= t
            expected = (refer & event).sum() / y.size - (refer & ~event).sum() / y.size * t / (1 - t)
            assert abs(point["net_benefit"] - expected) < 1e-12
            assert abs(point["net_benefit_all"] - (event.mean() - (1 - event.mean()) * t / (1 - t))) < 1e-12
    from statsmodels.stats.proportion import proportion_confint

    predicted = proba.argmax(axis=1)
    for k, name in enumerate(CLASSES):
        tp = int(((predicted == k) & (y == k)).sum())
        lo, hi = proportion_confint(tp, int((y == k).sum()), method="wilson")
        assert_close(pooled.accuracy["index_test"][name]["sensitivity"]["ci"], [lo, hi], f"wilson.{name}")
    return differences


def table1_reference(eligible: pl.DataFrame, by: str, variables: Sequence[str]) -> dict[str, Any]:
    """n, mean, SD per group straight from the rows, for the pooled Table 1."""
    out: dict[str, Any] = {}
    frame = eligible.filter(pl.col(by).is_not_null())
    for variable in variables:
        if variable == by or variable not in frame.columns:
            continue
        groups = {"Overall": frame, **{g: frame.filter(pl.col(by) == g) for g in frame[by].unique().to_list()}}
        if frame.schema[variable].is_numeric():
            out[variable] = {}
            for g, part in groups.items():
                values = part[variable].drop_nulls().cast(pl.Float64).to_numpy()
                out[variable][g] = {"n": values.size, "mean": float(values.mean()),
                                    "sd": float(values.std(ddof=1))}
        else:
            out[variable] = {g: dict(part[variable].fill_null("missing").value_counts().iter_rows())
                             for g, part in groups.items()}
    return out


def assert_table1(pooled_numbers: Mapping[str, Any], reference: Mapping[str, Any]) -> None:
    for variable, groups in reference.items():
        mine = pooled_numbers["variables"][variable]
        for group, expected in groups.items():
            if mine["kind"] == "continuous":
                got = mine["groups"][group]
                assert got["n"] == expected["n"], (variable, group)
                assert_close(got["mean"], expected["mean"], f"{variable}.{group}.mean")
                assert_close(got["sd"], expected["sd"], f"{variable}.{group}.sd")
            else:
                got = {k: v for k, v in mine["groups"][group].items() if v}
                assert got == expected, (variable, group, got, expected)


# -- the privacy scanner ---------------------------------------------------------------------------------------------

PSEUDONYM = re.compile(r"S-[0-9a-f]{6,}")
ABSOLUTE_PATH = re.compile(r"(?:^|[\s'\"(=])(?:/[^/\s'\"]+){2,}")
GRID_KEYS = {"thresholds", "lo", "hi"}  # the summary's own fixed grids
ROUNDED_KEYS = {"median", "q1", "q3"}  # order statistics, rounded; checked structurally (group n ≥ min_cell)


def _floats(value: Any, key: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _floats(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _floats(v, key)
    elif isinstance(value, float):
        yield key, value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


def _high_precision(value: float) -> bool:
    """Not a number of three decimals or fewer: a coincidence with a summary's figure is then no accident."""
    return abs(value * 1000 - round(value * 1000)) > 1e-6


FORBIDDEN_FIELDS = ("t_spine", "t_femoral", "t_total", "lowest_t", "z_spine", "z_femoral", "z_total", "bmd",
                    "nhanes")  # anywhere in a key
FORBIDDEN_KEYS = {"patient_id", "photo", "face_path", "content_hash", "path", "patients", "errors"}  # whole keys


def privacy_leaks(path: Path, *, ids: Sequence[str], photo_names: Sequence[str], folders: Sequence[Path],
                  patient_values: Mapping[str, np.ndarray], min_cell: int,
                  forbidden_fields: Sequence[str] = FORBIDDEN_FIELDS) -> list[str]:
    """Every way the summary at ``path`` could give away a patient: IDs, pseudonyms, photo names, paths, a single
    patient's exact value (``patient_values``: probabilities, BMI, T-scores … compared at full precision where a
    coincidence cannot be an accident), a field of T-scores, Z-scores, BMD or photos (never summarised, so never
    written), an aggregate over fewer than min_cell patients, a per-patient list."""
    text = path.read_text(encoding="utf-8")
    doc = json.loads(text)
    leaks = []
    for patient_id in ids:
        if re.search(rf"(?<![\w-]){re.escape(patient_id)}(?![\w-])", text):
            leaks.append(f"patient ID {patient_id}")
    leaks += [f"pseudonym {m}" for m in PSEUDONYM.findall(text)]
    for name in photo_names:
        if name in text:
            leaks.append(f"photo name {name}")
    for folder in folders:
        for form in {str(folder), str(folder.resolve()), folder.name if len(folder.name) > 8 else None} - {None}:
            if form in text:
                leaks.append(f"path {form}")
    leaks += [f"path-like string {s!r}" for s in _strings(doc) if ABSOLUTE_PATH.search(s)]
    precise = {name: {v for v in values.tolist() if math.isfinite(v) and _high_precision(v)}
               for name, values in patient_values.items()}
    for key, value in _floats(doc):
        if key in GRID_KEYS or key in ROUNDED_KEYS:
            continue
        for name, values in precise.items():
            if value in values:
                leaks.append(f"{name} of one patient ({value!r} under '{key}')")
    for field in forbidden_fields:
        leaks += [f"a {field} field ({s!r})" for s in _keys(doc) if field in s.lower()]
    leaks += [f"a '{s}' field" for s in _keys(doc) if s in FORBIDDEN_KEYS]
    leaks += [f"aggregate over {n} patient(s) at {where}" for where, n in small_aggregates(doc, min_cell)]
    leaks += [f"list of {n} values at {where}" for where, n in long_lists(doc, 99)]
    return leaks


def small_aggregates(doc: Mapping[str, Any], min_cell: int) -> list[tuple[str, int]]:
    """Places where the summary shows a group of 1..min_cell−1 patients under the disclosure rules: bins and
    groups carrying sums, Table 1 cells, subgroup levels' tables, flow reasons (an 'other' line of the whole
    partition excepted)."""
    out = []

    def small(n: Any) -> bool:
        return isinstance(n, int) and 0 < n < min_cell

    def bins(items: Sequence[Mapping[str, Any]], where: str) -> None:
        out.extend((where, b["n"]) for b in items if small(b["n"]))

    models = [("index_test", doc["index_test"])]
    if doc["comparators"].get("clinical_logit", {}).get("ece_bins"):
        models.append(("clinical_logit", doc["comparators"]["clinical_logit"]))
    for name, model in models:  # an ECE bin below min_cell keeps its counts, not its sum of confidences
        bins([b for b in model["ece_bins"] if b["sum_confidence"] is not None], f"{name}.ece_bins")
        for key, items in model["reliability_bins"].items():
            bins(items, f"{name}.reliability_bins.{key}")
        for key, items in model["hosmer_lemeshow_groups"].items():
            bins(items, f"{name}.hosmer_lemeshow_groups.{key}")
    for by, table in doc["table1"].items():
        for group, n in table["n"].items():
            if group != "Overall" and small(n):
                out.append((f"table1.{by}.n.{group}", n))
        for variable, entry in table["variables"].items():
            groups = entry["groups"]
            if "withheld" in groups:
                continue
            for group, cell in groups.items():
                if "withheld" in cell:
                    continue
                if entry["kind"] == "continuous":
                    if small(cell["n"]):
                        out.append((f"table1.{by}.{variable}.{group}", cell["n"]))
                else:
                    out.extend((f"table1.{by}.{variable}.{group}.{level}", n) for level, n in cell.items()
                               if small(n))
    for column, levels in doc["subgroups"].items():
        for level, entry in levels.items():
            if "withheld" in entry:
                continue
            cells = [n for row in entry["confusion_matrix"] for n in row]
            out.extend((f"subgroups.{column}.{level}", n) for n in cells if small(n))
    flow = doc["flow"]
    for key in ("excluded", "photo_qc_excluded"):
        reasons = {**(flow.get(key) or {}), **({"no photo": flow["no_photo"]} if key == "photo_qc_excluded"
                                                and flow.get("no_photo") else {})}
        for reason, n in reasons.items():
            if small(n) and len([v for v in reasons.values() if v]) > 1:
                out.append((f"flow.{key}.{reason}", n))
    out.extend((f"flow.photo_flags.{f}", n) for f, n in (flow.get("photo_flags") or {}).items() if small(n))
    return out


def long_lists(value: Any, limit: int, where: str = "") -> list[tuple[str, int]]:
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out += long_lists(v, limit, f"{where}.{k}")
    elif isinstance(value, list):
        if len(value) > limit:
            out.append((where, len(value)))
        for i, v in enumerate(value):
            out += long_lists(v, limit, f"{where}[{i}]")
    return out
