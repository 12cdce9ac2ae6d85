"""Site summaries and their pool (issue 18) on synthetic centres, without torch: the pool equals
`multicentre_summary` on the same patients where pooling is exact, stays within its stated bounds where it is
not; disclosure control merges and withholds as documented; bad, edited or mismatched summaries are refused."""

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
from f2b_study.errors import InputError
from f2b_study.stats.comparators import fit_clinical_logit
from f2b_study.stats.meta import multicentre_summary
from f2b_study.stats.pooling import pool_sites, read_sites
from f2b_study.stats.predictions import predictions_from_frame
from f2b_study.stats.site_summary import (
    Disclosure,
    build_site_summary,
    merge_partition,
    merge_small_bins,
    other_reasons,
    read_summary,
    seal,
    withheld_columns,
    write_summary,
)
from tests.multicentre_support import (
    PROVENANCE,
    SETTINGS,
    assert_table1,
    compare_with_reference,
    synthetic_site,
    table1_reference,
)

REPLICATES = 100
SITES = (("alpha", 120), ("beta", 80), ("gamma", 60))


def _write_sites(folder: Path, min_cell: int, seed: int = 7) -> tuple[list[Path], dict[str, pl.DataFrame]]:
    rng = np.random.default_rng(seed)
    paths, frames = [], {}
    for name, n in SITES:
        frame, flow = synthetic_site(rng, name, n, 2 * n)
        frames[name] = frame
        summary = build_site_summary(predictions_from_frame(frame, name), site=name, flow=flow, eligible=frame,
                                     provenance=PROVENANCE, settings=SETTINGS, min_cell=min_cell,
                                     replicates=REPLICATES, seed=42)
        paths.append(write_summary(summary, folder / f"{name}.json"))
    return paths, frames


@pytest.fixture(scope="module")
def exact_sites(module_tmp) -> tuple[list[Path], dict[str, pl.DataFrame]]:
    return _write_sites(module_tmp("exact"), min_cell=1)


@pytest.fixture(scope="module")
def private_sites(module_tmp) -> tuple[list[Path], dict[str, pl.DataFrame]]:
    return _write_sites(module_tmp("private"), min_cell=12)


def _reference(frames: dict[str, pl.DataFrame]) -> dict:
    return multicentre_summary(frames, by=("sex", "center", "age_band"), replicates=REPLICATES, seed=42)


def test_pool_equals_evaluating_all_patients_where_pooling_is_exact(exact_sites) -> None:
    paths, frames = exact_sites
    sites, warnings = read_sites(paths)
    assert warnings == []
    pooled = pool_sites(sites, replicates=REPLICATES, seed=42)
    differences = compare_with_reference(pooled, _reference(frames), frames, exact=True)
    assert all(d["bound"] < 0.01 for k, d in differences.items() if k.startswith("auc."))
    total = pooled.flow
    assert total["enrolled"] == sum(f.height + 12 for f in frames.values())
    assert total["excluded"] == {"premenopausal": 24, "man aged 50 or younger": 9, "no consent": 3}
    eligible = pl.concat(list(frames.values()), how="diagonal_relaxed")
    for by in ("bone_status", "sex"):
        assert_table1(pooled.table1_numbers[by], table1_reference(eligible, by, ("sex", "bone_status", "age_years",
                                                                                  "height_cm", "bmi")))
    statuses = {row["figure"]: row["status"] for row in pooled.exactness}
    assert statuses["ECE"] == "exact" and statuses["Decision curves (net benefit)"] == "exact"
    assert statuses["AUC of all patients together (per class, macro)"] == "approximate"


def test_pooled_table1_tests_equal_the_tests_on_all_values(exact_sites) -> None:
    from scipy import stats

    paths, frames = exact_sites
    pooled = pool_sites(read_sites(paths)[0], replicates=0, seed=42)
    eligible = pl.concat(list(frames.values()), how="diagonal_relaxed")
    result = next(t for caption, t in pooled.table1 if "by bone status" in caption)
    age = next(r for r in result.rows if r.variable == "age_years")
    groups = [eligible.filter(pl.col("bone_status") == c)["age_years"].to_numpy() for c in CLASSES]
    assert age.p == pytest.approx(stats.f_oneway(*groups).pvalue, abs=1e-12)
    by_sex = next(t for caption, t in pooled.table1 if "by sex" in caption)
    bmi = next(r for r in by_sex.rows if r.variable == "bmi")
    values = [eligible.filter(pl.col("sex") == s)["bmi"].to_numpy() for s in ("M", "F")]
    assert bmi.p == pytest.approx(stats.ttest_ind(*values).pvalue, abs=1e-12)


def test_disclosure_control_merges_withholds_and_states_bounds(private_sites) -> None:
    paths, frames = private_sites
    sites, _ = read_sites(paths)
    gamma = next(s for s in sites if s.name == "gamma").doc
    assert gamma["privacy"]["min_cell"] == 12
    assert other_reasons(12) in gamma["flow"]["excluded"] and "no consent" not in gamma["flow"]["excluded"]
    merged = {m["where"] for m in gamma["privacy"]["merged"]}
    withheld = {w["where"] for w in gamma["privacy"]["withheld"]}
    assert "index_test.hosmer_lemeshow_groups.normal" in merged and "flow.excluded" in merged
    assert "index_test.ece_bins" in withheld
    assert all(b["sum_confidence"] is None for b in gamma["index_test"]["ece_bins"] if 0 < b["n"] < 12)
    assert gamma["privacy"]["withheld"], "a 60-patient site has subgroup cells below 12"
    pooled = pool_sites(sites, replicates=REPLICATES, seed=42)
    differences = compare_with_reference(pooled, _reference(frames), frames, exact=False)
    withheld_patients = pooled.evaluation["ece_pooling"]["patients_in_withheld_bins"]
    # each withheld bin's confidences are known within its width, 1/15: the interval is at most that wide
    assert 0 < differences["ece"]["bound"] <= withheld_patients / 15 / pooled.evaluation["n"] + 1e-12
    statuses = {row["figure"]: row for row in pooled.exactness}
    assert statuses["ECE"]["status"] == "approximate" and "[" in statuses["ECE"]["detail"]
    assert statuses["Participant flow, per centre and in total"]["status"] == "partial"


def test_merge_partition_cannot_be_undone_by_subtraction() -> None:
    shown, merged = merge_partition({"a": 40, "b": 3, "c": 7, "d": 0}, min_cell=5)
    assert shown == {"a": 40, "d": 0, other_reasons(5): 10} and merged == ["b", "c"]
    assert merge_partition({"a": 40, "b": 6}, 5) == ({"a": 40, "b": 6}, [])


def test_withheld_columns_add_a_complement_when_one_is_recoverable() -> None:
    disclosure = Disclosure(5)
    vectors = {"F": np.array([20, 9]), "M": np.array([3, 6]), "X": np.array([0, 0])}
    withheld = withheld_columns(vectors, np.array([23, 15]), disclosure)
    assert set(withheld) == {"M", "F"}, "M alone would be the total minus F"
    vectors = {"a": np.array([2]), "b": np.array([30]), "c": np.array([31]), "d": np.array([4])}
    assert set(withheld_columns(vectors, np.array([67]), disclosure)) == {"a", "d"}  # 6 together: not small


def test_small_bins_merge_with_their_neighbours() -> None:
    bins = [{"lo": i / 5, "hi": (i + 1) / 5, "n": n, "s": float(n)} for i, n in enumerate([0, 2, 9, 3, 1])]
    merged, count = merge_small_bins(bins, 5)
    assert [b["n"] for b in merged] == [0, 15] and count == 3
    assert merged[1]["lo"] == 0.2 and merged[1]["hi"] == 1.0 and merged[1]["s"] == 15.0


def test_external_site_uses_the_given_clinical_model(exact_sites) -> None:
    _, frames = exact_sites
    frame = frames["alpha"]
    model, _ = fit_clinical_logit(predictions_from_frame(frames["beta"], "beta").train)
    external = predictions_from_frame(frame.filter(pl.col("split") != "train"), "alpha")
    assert external.train.height == 0
    summary = build_site_summary(external, site="alpha", flow={"enrolled": 1}, eligible=frame,
                                 provenance=PROVENANCE, settings=SETTINGS, min_cell=5, replicates=0,
                                 clinical_model=model, clinical_source="beta's training split")
    logit = summary["comparators"]["clinical_logit"]
    assert logit["fitted_on"] == "beta's training split" and logit["evaluation"]["n"] == external.evaluated.height
    p, _ = model.predict_proba(external.evaluated)
    from f2b_study.stats import auc as delong

    test = delong.paired_test(external.proba[:, 2], p[:, 2], external.y == 2)
    assert logit["comparison"]["osteoporosis"]["difference"] == pytest.approx(test["difference"], abs=1e-12)
    assert logit["comparison"]["osteoporosis"]["se"] == pytest.approx(test["se"], abs=1e-12)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_pool_cli_writes_the_report_and_its_json(exact_sites, tmp_path: Path) -> None:
    paths, _ = exact_sites
    code, out, err = _run(["pool", *map(str, paths), "--out", str(tmp_path / "pooled"), "--bootstrap", "50"])
    assert code == 0, err
    html = (tmp_path / "pooled" / "report.html").read_text(encoding="utf-8")
    assert "Exact and approximate pooled figures" in html and 'id="exactness"' in html
    assert "SIMULATED LABELS" in html and "Meta-analysis of per-centre AUCs" in html
    document = json.loads((tmp_path / "pooled" / "pooled.json").read_text(encoding="utf-8"))
    assert set(document["decision_curves"]) == {"osteoporosis", "low_bone_mass"}
    assert len(document["decision_curves"]["osteoporosis"]) == 99
    assert "macro AUC, fixed effect" in out


def _resealed(path: Path, target: Path, change) -> Path:
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    return write_summary(seal(doc), target)


@pytest.mark.parametrize(("key", "value", "column"), [
    ("model_sha256", "f" * 64, "provenance.model_sha256"),
    ("tool_version", "9.9", "provenance.tool_version"),
    ("face_pipeline_version", "faces-0", "provenance.face_pipeline_version"),
    ("classes", ["normal", "osteoporosis"], "provenance.classes"),
])
def test_pool_refuses_summaries_of_another_model_or_version(exact_sites, tmp_path: Path, key, value,
                                                            column) -> None:
    paths, _ = exact_sites
    other = _resealed(paths[1], tmp_path / "beta.json", lambda d: d["provenance"].__setitem__(key, value))
    code, _, err = _run(["pool", str(paths[0]), str(other), "--out", str(tmp_path / "out")])
    assert code == 2 and err.count("\n") == 1
    assert str(other) in err and column in err
    assert not (tmp_path / "out" / "report.html").exists()


def test_pool_refuses_an_edited_summary_another_schema_and_repeats(exact_sites, tmp_path: Path) -> None:
    paths, _ = exact_sites
    text = paths[1].read_text(encoding="utf-8")
    edited = tmp_path / "edited.json"
    edited.write_text(text.replace('"enrolled": ', '"enrolled": 1', 1), encoding="utf-8")
    with pytest.raises(InputError, match=r"checksum.*changed after site-summary wrote it"):
        read_summary(edited)
    code, _, err = _run(["pool", str(paths[0]), str(edited), "--out", str(tmp_path / "out")])
    assert code == 2 and str(edited) in err
    old = _resealed(paths[1], tmp_path / "old.json", lambda d: d.__setitem__("schema_version", 0))
    with pytest.raises(InputError, match="schema_version"):
        read_summary(old)
    renamed = _resealed(paths[1], tmp_path / "renamed.json", lambda d: d.__setitem__("site", "alpha"))
    with pytest.raises(InputError, match="site name of its own"):
        read_sites([paths[0], renamed])
    copy = tmp_path / "copy.json"
    copy.write_text(paths[0].read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(InputError, match="this one is"):
        read_sites([paths[0], copy])
    (tmp_path / "not.json").write_text('{"format": "something else"}', encoding="utf-8")
    with pytest.raises(InputError, match="format"):
        read_summary(tmp_path / "not.json")


def test_different_rules_are_a_warning_not_a_refusal(exact_sites, tmp_path: Path) -> None:
    paths, _ = exact_sites
    other = _resealed(paths[1], tmp_path / "beta.json",
                      lambda d: d["settings"].__setitem__("qc", {"min_detection_score": 0.9}))
    _, warnings = read_sites([paths[0], other])
    assert any("photo quality control" in w for w in warnings)
