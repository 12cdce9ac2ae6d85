"""Multi-centre validation without moving patient data on the demo cohort (issue 18): one tiny model trained once
on both centres; each centre runs `site-summary` on its own copy of the cohort (the training run's split as its
split column); `pool` of the two summaries equals evaluating all the validation patients together
(`multicentre_summary`, the flow and Table 1 `study` computes) where pooling is exact, and stays within its stated
bounds where it is not; every summary passes the privacy scan."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from f2b_study import CLASSES
from f2b_study.cli import main
from f2b_study.stats.meta import multicentre_summary
from f2b_study.stats.pooling import pool_sites, read_sites
from f2b_study.stats.predictions import read_predictions
from tests.conftest import DEMO_DIR, prepare, train_tiny
from tests.multicentre_support import assert_table1, compare_with_reference, privacy_leaks, table1_reference

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pipeline"), pytest.mark.filterwarnings("ignore::UserWarning")]

CENTRES = ("centre-A", "centre-B")
BOOTSTRAP = 200
TRAIN = {"validation_fraction": 0.5}  # more validation patients per centre than the default 8:2


@pytest.fixture(scope="module")
def demo(module_tmp, face_cache: Path) -> dict:
    root = module_tmp("multicentre-demo")
    source = DEMO_DIR.parent / "demo.toml"
    run = root / "run"
    train_tiny([source], run, face_cache, **TRAIN)
    split = pl.read_csv(run / "split.csv", infer_schema=False).select("patient_id", "split")
    rows = pl.read_csv(DEMO_DIR / "cohort.csv", infer_schema=False).join(split, on="patient_id", how="left")
    out: dict = {"root": root, "run": run, "summaries": {}, "work": {}, "configs": {}}
    for centre in CENTRES:
        folder = root / centre
        folder.mkdir()
        rows.filter(pl.col("center") == centre).write_csv(folder / "cohort.csv")
        config = root / f"{centre}.toml"
        photos = (DEMO_DIR / "photos").as_posix()
        config.write_text(f'name = "{centre}"\ncsv = "{centre}/cohort.csv"\nphotos = "{photos}"\n[report]\n'
                          f'simulated_labels = true\nbootstrap = {BOOTSTRAP}\n[privacy]\nmin_cell = 1\n',
                          encoding="utf-8")
        out["configs"][centre] = config
        for min_cell in (1, 5):
            work = root / "work" / f"{centre}-{min_cell}"
            target = root / f"{centre}-{min_cell}.json"
            code, _, err = _run(["site-summary", str(config), "--model", str(run), "--out", str(target), "--work",
                                 str(work), "--cache", str(face_cache), "--device", "cpu", "--min-cell",
                                 str(min_cell)])
            assert code == 0, err
            out["summaries"][(centre, min_cell)] = target
            out["work"][(centre, min_cell)] = work
    data, _ = prepare([source], cache=face_cache, epochs=1, **TRAIN)
    out["flow"] = data.flow.to_dict()
    out["eligible"] = data.cohort.rows.filter(pl.col("eligible"))
    return out


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _reference(demo: dict, min_cell: int) -> tuple[dict, dict[str, pl.DataFrame]]:
    """`study`'s multi-centre evaluation of the very predictions the centres computed, patients together."""
    frames = {c: pl.read_csv(demo["work"][(c, min_cell)] / "predictions.csv", infer_schema=False) for c in CENTRES}
    sets = {c: read_predictions(demo["work"][(c, min_cell)] / "predictions.csv") for c in CENTRES}
    reference = multicentre_summary(sets, by=("sex", "center", "age_band"), replicates=BOOTSTRAP, seed=42)
    typed = {c: f.with_columns(pl.col(f"p_{k}" for k in CLASSES).cast(pl.Float64)) for c, f in frames.items()}
    return reference, typed


def test_pool_of_the_two_centres_equals_evaluating_them_together(demo) -> None:
    sites, warnings = read_sites([demo["summaries"][(c, 1)] for c in CENTRES])
    assert warnings == []
    pooled = pool_sites(sites, replicates=BOOTSTRAP, seed=42)
    reference, frames = _reference(demo, 1)
    differences = compare_with_reference(pooled, reference, frames, exact=True)
    flow = {k: v for k, v in demo["flow"].items() if k != "by_centre"}
    assert {k: pooled.flow.get(k) for k in flow} == flow
    for by in ("bone_status", "sex"):
        assert_table1(pooled.table1_numbers[by], table1_reference(
            demo["eligible"], by, ("sex", "bone_status", "age_years", "height_cm", "weight_kg", "bmi")))
    _write_comparison(demo["root"] / "comparison.md", pooled, reference, differences)


def test_with_min_cell_five_the_pool_states_what_became_approximate(demo) -> None:
    sites, _ = read_sites([demo["summaries"][(c, 5)] for c in CENTRES])
    pooled = pool_sites(sites, replicates=BOOTSTRAP, seed=42)
    reference, frames = _reference(demo, 5)
    compare_with_reference(pooled, reference, frames, exact=pooled.evaluation["ece_pooling"]["exact"])
    merged = [m for s in sites for m in s.doc["privacy"]["merged"]]
    assert merged, "a centre of ~75 validation patients merges some bins at min_cell 5"
    statuses = {row["figure"]: row["status"] for row in pooled.exactness}
    assert statuses["Per-centre figures (each centre's evaluation with its CIs)"] == "exact"


def test_every_summary_holds_no_patient_data(demo) -> None:
    rows = pl.read_csv(DEMO_DIR / "cohort.csv", infer_schema=False)
    ids = rows["patient_id"].to_list()
    photos = [p.name for p in (DEMO_DIR / "photos").iterdir()]
    numbers = {c: rows[c].cast(pl.Float64, strict=False).drop_nulls().to_numpy()
               for c in ("age_years", "height_cm", "weight_kg", "bmi", "t_spine_l1_l4", "t_femoral_neck",
                         "t_total_hip", "spine_l1_l4_bmd", "femoral_neck_bmd", "total_hip_bmd")}
    for (centre, min_cell), path in demo["summaries"].items():
        if min_cell < 5:
            continue  # min_cell 1 is disclosure control turned off (for the exactness test)
        predictions = pl.read_csv(demo["work"][(centre, min_cell)] / "predictions.csv", infer_schema=False)
        proba = predictions.filter(pl.col("p_normal").is_not_null()).select(
            pl.col(f"p_{c}" for c in CLASSES).cast(pl.Float64)).to_numpy()
        values = {**numbers, "probability": proba.ravel(), "1 − p(normal)": 1 - proba[:, 0],
                  "top probability": proba.max(axis=1)}
        folders = [demo["root"], demo["work"][(centre, min_cell)], DEMO_DIR, demo["run"]]
        leaks = privacy_leaks(path, ids=ids, photo_names=photos, folders=folders, patient_values=values,
                              min_cell=min_cell)
        assert leaks == [], f"{path.name}: {leaks[:5]}"
    for path in demo["summaries"].values():  # names and paths never, whatever min_cell
        text = path.read_text(encoding="utf-8")
        assert not any(i in text for i in ids[:50]) and str(demo["root"]) not in text


def test_pool_command_writes_the_multicentre_report(demo, tmp_path: Path) -> None:
    paths = [str(demo["summaries"][(c, 5)]) for c in CENTRES]
    code, _, err = _run(["pool", *paths, "--out", str(tmp_path)])
    assert code == 0, err
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    for text in ("Exact and approximate pooled figures", "Participant flow per centre", "Decision curves (pooled)",
                 "centre-A", "centre-B", "SIMULATED LABELS"):
        assert text in html
    assert not any(p in html for p in ("P0001", "P0002", str(DEMO_DIR)))
    document = json.loads((tmp_path / "pooled.json").read_text(encoding="utf-8"))
    assert document["evaluation"]["n"] == sum(
        json.loads(Path(p).read_text(encoding="utf-8"))["index_test"]["n"] for p in paths)


def test_a_centre_without_split_is_an_external_validation(demo, face_cache: Path, tmp_path: Path) -> None:
    """Without a split column every analysed patient is evaluated: refused with the model that trained on some of
    them; with a model developed at centre-B only, centre-A is validated whole and the clinical comparator is the
    one fitted on the development run's training split."""
    plain = tmp_path / "centre-A" / "cohort.csv"
    plain.parent.mkdir()
    pl.read_csv(demo["root"] / "centre-A" / "cohort.csv", infer_schema=False).drop("split").write_csv(plain)
    text = demo["configs"]["centre-A"].read_text(encoding="utf-8")
    config = tmp_path / "a.toml"
    config.write_text(text.replace('csv = "centre-A/cohort.csv"', f'csv = "{plain.as_posix()}"')
                      .replace("min_cell = 1", "min_cell = 5"), encoding="utf-8")

    def summary(model: Path, name: str) -> tuple[int, str]:
        code, _, err = _run(["site-summary", str(config), "--model", str(model), "--out", str(tmp_path / name),
                             "--work", str(tmp_path / "work" / name), "--cache", str(face_cache), "--device", "cpu"])
        return code, err

    code, err = summary(demo["run"], "refused.json")
    assert code == 2 and "trained on" in err and err.count("\n") == 1
    assert not (tmp_path / "refused.json").exists()
    developed = tmp_path / "run-b"
    train_tiny([demo["configs"]["centre-B"]], developed, face_cache)
    code, err = summary(developed, "external.json")
    assert code == 0, err
    doc = json.loads((tmp_path / "external.json").read_text(encoding="utf-8"))
    assert doc["settings"]["evaluated"].startswith("every analysed patient")
    assert doc["flow"]["split"] == {"train": 0, "validation": doc["index_test"]["n"]}
    logit = doc["comparators"]["clinical_logit"]
    assert logit["evaluation"] and "development training split" in logit["fitted_on"]


def _write_comparison(target: Path, pooled, reference: dict, differences: dict) -> None:
    """The key table of the pooled report beside `multicentre_summary`'s (for the issue's note)."""
    def f(v) -> str:
        return "—" if v is None else f"{v:.6f}"

    lines = ["| figure | pool of site summaries | all patients together |", "|---|---|---|"]
    for name, ev in reference["centres"].items():
        mine = pooled.multicentre["centres"][name]
        for key in ("accuracy", "f1_weighted", "auc_macro_ovr", "kappa", "ece"):
            lines.append(f"| {name} {key} | {f(mine['overall'][key])} | {f(ev['overall'][key])} |")
    for metric, meta in reference["meta"].items():
        for kind in ("fixed", "random"):
            lines.append(f"| meta {metric} {kind} | {f(pooled.multicentre['meta'][metric][kind]['estimate'])} | "
                         f"{f(meta[kind]['estimate'])} |")
        lines.append(f"| meta {metric} I² | {f(pooled.multicentre['meta'][metric]['i2'])} | {f(meta['i2'])} |")
    for key in ("accuracy", "f1_weighted", "kappa", "ece", "brier", "auc_macro_ovr"):
        lines.append(f"| pooled {key} | {f(pooled.evaluation['overall'][key])} | "
                     f"{f(reference['pooled']['overall'][key])} |")
    for key, d in differences.items():
        lines.append(f"| difference {key} | {d.get('pooled')} | {d.get('all patients')} (bound {d.get('bound')}) |")
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    assert np.isfinite(pooled.evaluation["overall"]["accuracy"])
