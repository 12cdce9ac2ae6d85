"""The whole chain (`study`): two centres -> one STARD report, with flow counts that add up."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from f2b_study.config import load_study
from f2b_study.study import run_study
from tests.conftest import TINY_FACE2BONE, make_mini_cohort

pytestmark = [pytest.mark.xdist_group("pipeline"), pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.slow]


def test_two_centre_study(tmp_path: Path, face_cache: Path) -> None:
    csv = make_mini_cohort(tmp_path / "data", per_class=7)
    frame = pl.read_csv(csv, infer_schema=False)
    for name, part in (("north", frame[::2]), ("south", frame[1::2])):
        part.drop("center").write_csv(tmp_path / "data" / f"{name}.csv")
        (tmp_path / f"{name}.toml").write_text(
            f'name = "{name}"\ncsv = "data/{name}.csv"\nphotos = "data"\n[report]\nsimulated_labels = true\n'
            '[explain]\nmax_images = 6\nfacenet_input = "original"\npixel_max_per_class = 2\n')
    model = {k: v for k, v in TINY_FACE2BONE.items() if k != "input_size"}
    study = load_study([tmp_path / f"{n}.toml" for n in ("north", "south")],
                       {"train": {"epochs": 2, "model": model, "input_size": TINY_FACE2BONE["input_size"]},
                        "report": {"bootstrap": 30, "include_faces": True}})
    result = run_study(study, tmp_path / "out", cache_dir=face_cache)
    flow = result.flow.to_dict()
    assert flow["enrolled"] == 21 and flow["eligible"] == 21
    assert flow["analysed"] + flow["no_photo"] + sum(flow["photo_qc_excluded"].values()) == flow["eligible"]
    assert sum(flow["split"].values()) == flow["analysed"]
    html = (tmp_path / "out" / "shareable" / "report.html").read_text()
    for needle in ("SIMULATED LABELS", "Participant flow", "Multi-centre", "north", "south", "Explainability",
                   "Table 1 by split", "randomly initialised"):
        assert needle in html, needle
    text = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", html)
    assert not any(patient_id in text for patient_id in frame["patient_id"])  # IDs never appear in clear
    study = json.loads((tmp_path / "out" / "shareable" / "study.json").read_text())
    assert set(study["timings_s"]) == {"label", "faces", "train", "screen", "evaluate", "explain", "report"}
    predictions = pl.read_csv(tmp_path / "out" / "private" / "predictions.csv")
    assert set(predictions["split"]) == {"train", "validation"}
    assert set(predictions["center"]) == {"north", "south"}
    assert (tmp_path / "out" / "shareable" / "regions.png").stat().st_size > 1000
    shared = tmp_path / "out" / "shareable"
    text = "".join(p.read_text(errors="ignore") for p in shared.rglob("*") if p.suffix in (".html", ".json", ".csv",
                                                                                            ".svg"))
    assert not any(patient_id in text for patient_id in frame["patient_id"])  # nothing per patient is shareable
    assert (tmp_path / "out" / "shareable" / "tables.xlsx").exists()
    assert not list((tmp_path / "out").rglob("*.key")) and not list((tmp_path / "out").rglob(".pseudonym-key"))
    assert oct((tmp_path / "out" / "private").stat().st_mode & 0o777) == "0o700"
    # --include-faces: identifiable faces for the study team, in the private outputs only
    assert "PRIVATE" in (tmp_path / "out" / "private" / "qc_review.html").read_text()
    assert (tmp_path / "out" / "private" / "example_faces.png").stat().st_size > 5000
    assert not list(shared.rglob("qc_review.html")) and not list(shared.rglob("example_faces*"))
    evaluation = json.loads((tmp_path / "out" / "shareable" / "evaluation.json").read_text())
    assert evaluation["n"] == flow["split"]["validation"]
