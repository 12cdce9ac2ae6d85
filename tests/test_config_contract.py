"""One study, one configuration (issue 12): every command reads every config section that concerns it, the same
way; unknown keys and wrong types stop every command with one line and exit 2; flags beat the config, the config
beats the defaults, and run.json records where each setting came from and rebuilds the same settings."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import polars as pl
import pytest

from f2b_study.cli import main
from f2b_study.config import SECTIONS, load_study, settings_from_record
from f2b_study.errors import InputError
from tests.conftest import TINY_FACE2BONE, make_mini_cohort

MODEL = {k: v for k, v in TINY_FACE2BONE.items() if k != "input_size"}


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_config(folder: Path, csv: Path, **sections: dict) -> Path:
    lines = ['name = "contract"', f'csv = "{csv.name}"', 'photos = "."']
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path = folder / "study.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- refusals: the same one-line error from every command ----------------------------------------------------------

COMMANDS = {
    "label": lambda c, tmp: ("label", str(c), "--out", str(tmp / "l.csv")),
    "table1": lambda c, tmp: ("table1", str(c), "--by", "sex"),
    "preprocess": lambda c, tmp: ("preprocess", str(c), "--out", str(tmp / "p")),
    "train": lambda c, tmp: ("train", str(c), "--out", str(tmp / "t")),
    "screen": lambda c, tmp: ("screen", str(c), "--model", str(tmp / "none"), "--out", str(tmp / "s")),
    "explain": lambda c, tmp: ("explain", str(c), "--model", str(tmp / "none"), "--out", str(tmp / "e")),
    "study": lambda c, tmp: ("study", str(c), "--out", str(tmp / "st")),
}
BAD = [
    ({"qc": {"max_yawn": 3}}, "qc.max_yawn"),
    ({"qc": {"max_yaw": "wide"}}, "qc.max_yaw"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"train": {"epochs": 2.5}}, "a whole number"),
    ({"train": {"facenet_trainable": "some"}}, "'frozen', 'last', 'full'"),
    ({"explain": {"baseline": "noise"}}, "explain.baseline"),
    ({"report": {"simulated_labels": "yes"}}, "true or false"),
    ({"screening": {"osteoporosis_threshold": 1.5}}, "from 0 to 1"),
    ({"rules": {"men_min_age": "fifty"}}, "rules.men_min_age"),
    ({"columns": {"patient": "ID"}}, "columns.patient"),
    ({"trian": {"epochs": 3}}, "[trian]"),
]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(("sections", "needle"), BAD, ids=[needle for _, needle in BAD])
def test_every_command_refuses_a_bad_setting_with_one_line(command: str, sections: dict, needle: str,
                                                           tmp_path: Path) -> None:
    csv = tmp_path / "cohort.csv"
    csv.write_text("patient_id,sex,age_years,t_spine_l1_l4,t_femoral_neck\nA,F,60,-1,-1\n")
    config = write_config(tmp_path, csv, **sections)
    code, _, err = cli(*COMMANDS[command](config, tmp_path))
    assert code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert str(config) in err  # the file that holds the bad value is named


def test_two_centres_giving_one_section_differently_are_refused(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("patient_id,sex,age_years,t_spine_l1_l4,t_femoral_neck\nA,F,60,-1,-1\n")
    (tmp_path / "b.csv").write_text("patient_id,sex,age_years,t_spine_l1_l4,t_femoral_neck\nB,F,60,-1,-1\n")
    (tmp_path / "a.toml").write_text('name = "a"\ncsv = "a.csv"\n[qc]\nmax_yaw = 20\n')
    (tmp_path / "b.toml").write_text('name = "b"\ncsv = "b.csv"\n[qc]\nmax_yaw = 25\n')
    (tmp_path / "c.toml").write_text('name = "c"\ncsv = "b.csv"\n[train]\nepochs = 5\n')
    with pytest.raises(InputError, match=r"b\.toml.*\[qc\].*same \[qc\] as .*a\.toml"):
        load_study([tmp_path / "a.toml", tmp_path / "b.toml"])
    study = load_study([tmp_path / "a.toml", tmp_path / "c.toml"])  # each section from the config that gives it
    assert study.qc.max_yaw == 20 and study.train.epochs == 5
    assert study.resolved["qc"].origins["max_yaw"] == "config"


def test_precedence_origins_and_the_run_record_round_trip(tmp_path: Path) -> None:
    csv = tmp_path / "cohort.csv"
    csv.write_text("patient_id,sex,age_years,t_spine_l1_l4,t_femoral_neck\nA,F,60,-1,-1\n")
    config = write_config(tmp_path, csv, train={"epochs": 7, "batch_size": 16, "model": {"dims": [8, 16, 24, 32]}},
                          rules={"men_min_age": 55})
    study = load_study([config], {"train": {"epochs": 3, "lr": None}})
    assert (study.train.epochs, study.train.batch_size, study.train.lr) == (3, 16, 1e-3)
    origins = study.resolved["train"].origins
    assert (origins["epochs"], origins["batch_size"], origins["lr"]) == ("flag", "config", "default")
    record = json.loads(json.dumps(study.describe()))
    for name in SECTIONS:
        assert settings_from_record(record[name], name) == getattr(study, name)
    assert record["centres"]["contract"]["rules"]["men_min_age"] == {"value": 55, "from": "config"}
    assert load_study([config]).digest() != study.digest()


# -- behaviour: one set of rules, whichever command applies it -----------------------------------------------------

@pytest.fixture(scope="module")
def contract(module_tmp) -> dict[str, Path]:
    """A mini cohort with a config whose [qc], [train], [explain] all differ from the defaults, trained once by
    `train` with nothing but the config."""
    root = module_tmp("contract")
    csv = make_mini_cohort(root, per_class=6)
    config = write_config(
        root, csv,
        qc={"max_yaw": 10.0, "max_pitch": 12.0},  # strict enough to exclude 3 of the 18 portraits
        train={"epochs": 2, "batch_size": 8, "augment": [], "input_size": TINY_FACE2BONE["input_size"],
               "model": MODEL, "patience": 3},
        explain={"max_images": 4, "split": "all", "craft": False, "pixel_maps": False, "baseline": "blur"},
        report={"bootstrap": 20, "simulated_labels": True})
    cache = root / "cache"
    code, _, err = cli("train", str(config), "--out", str(root / "run"), "--cache", str(cache))
    assert code == 0, err
    return {"config": config, "root": root, "cache": cache, "run": root / "run"}




@pytest.mark.slow
@pytest.mark.xdist_group("pipeline")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_train_uses_the_configs_model_and_qc(contract: dict[str, Path]) -> None:
    run = json.loads((contract["run"] / "run.json").read_text())
    assert run["request"]["settings"]["epochs"] == 2 and run["settings"]["train"]["epochs"]["from"] == "config"
    assert run["settings"]["qc"]["max_yaw"] == {"value": 10.0, "from": "config"}
    sidecar = json.loads((contract["run"] / "best" / "model.json").read_text())
    assert sidecar["config"]["input_size"] == TINY_FACE2BONE["input_size"]
    assert sidecar["config"]["dims"] == MODEL["dims"] and sidecar["metadata"]["simulated_labels"] is True
    assert len(json.loads((contract["run"] / "metrics.json").read_text())) <= 2
    qc = pl.read_csv(contract["run"] / "preprocess.csv")
    assert (qc["reason"] == "extreme_pose").sum() > 0, "the config's [qc] did not apply"


@pytest.mark.slow
@pytest.mark.xdist_group("pipeline")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_every_command_applies_the_same_qc_and_explain_settings(contract: dict[str, Path]) -> None:
    root, config, cache = contract["root"], str(contract["config"]), str(contract["cache"])
    trained = pl.read_csv(contract["run"] / "preprocess.csv").select("photo", "status", "reason").sort("photo")
    code, _, err = cli("preprocess", config, "--out", str(root / "pre"), "--cache", cache, "--workers", "1")
    assert code == 0, err
    code, _, err = cli("screen", config, "--model", str(contract["run"]), "--out", str(root / "screen"),
                       "--cache", cache)
    assert code == 0, err
    code, out, err = cli("explain", config, "--model", str(contract["run"]), "--out", str(root / "explain"),
                         "--cache", cache, "--json")
    assert code == 0, err
    for folder in ("pre", "screen"):
        again = pl.read_csv(root / folder / "private" / "preprocess.csv").select("photo", "status", "reason")
        again = again.sort("photo")
        assert again.equals(trained), folder  # the same photos excluded for the same reasons
    explained = json.loads(out)
    assert explained["settings"]["max_images"] == 4 and explained["n_images"] <= 4
    assert explained["settings"]["split"] == "all" and explained["baseline"]["kind"] == "blur"
    assert explained["settings"]["craft"] is None

    # the whole chain: the same rules end to end, and the report says which
    code, _, err = cli("study", config, "--out", str(root / "study"), "--cache", cache)
    assert code == 0, err
    study_qc = pl.read_csv(root / "study" / "private" / "model" / "preprocess.csv").select("photo", "status", "reason")
    assert study_qc.sort("photo").equals(trained)
    study_run = json.loads((root / "study" / "private" / "model" / "run.json").read_text())
    assert study_run["request"]["settings"]["epochs"] == 2
    study_explain = json.loads((root / "study" / "shareable" / "explain" / "explain.json").read_text())
    assert study_explain["settings"]["max_images"] == 4 and study_explain["settings"]["split"] == "all"
    html = (root / "study" / "shareable" / "report.html").read_text()
    assert "|yaw| &gt; 10°" in html and "8:2, stratified by bone status" in html and "seed 42" in html
    assert "channels 8/16/24/32" in html  # the configured model, as the methods state it
    summary = json.loads((root / "study" / "shareable" / "study.json").read_text())
    assert summary["config"]["qc"]["max_yaw"] == {"value": 10.0, "from": "config"}
