"""Checkpoint integrity (issue 14): non-finite weights, sidecar edits, sizes checked before allocation, old format."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from f2b_study.errors import InputError
from f2b_study.models import create_model, load_checkpoint, save_checkpoint
from f2b_study.models.checkpoint import (
    FORMAT,
    seal,
    sidecar_digest,
    upgrade_checkpoint,
    validate_checkpoint,
)

torch.set_num_threads(1)

TINY = {"dims": (8, 8, 16, 16), "depths": (1, 1, 1, 1), "heads": (1, 1, 2, 2), "ssam_heads": 2, "kan_hidden": (4,),
        "input_size": 32, "facenet_size": 96}


@pytest.fixture(scope="module")
def saved(module_tmp) -> Path:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("face2bone", **TINY).eval()
    directory = module_tmp("ckpt") / "run"
    save_checkpoint(model, directory, preprocessing_version="faces-2", seed=1)
    return directory


@pytest.fixture
def copy(saved: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(saved, target)
    return target


def _edit(directory: Path, reseal: bool, change) -> None:
    sidecar = json.loads((directory / "model.json").read_text())
    change(sidecar)
    (directory / "model.json").write_text(json.dumps(seal(sidecar) if reseal else sidecar))


def test_a_saved_checkpoint_validates_and_loads(saved: Path) -> None:
    sidecar = validate_checkpoint(saved)
    assert sidecar["format"] == FORMAT and sidecar["sidecar_sha256"] == sidecar_digest(sidecar)
    model, loaded = load_checkpoint(saved)
    assert loaded == sidecar and model.f2b_config["input_size"] == 32


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_file_and_tensor(tmp_path: Path, value: float) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("face2bone", **TINY)
    with torch.no_grad():
        model.head.layers[0].base_weight[0, 0] = value
    save_checkpoint(model, tmp_path / "bad")
    for check in (validate_checkpoint, load_checkpoint):
        with pytest.raises(InputError) as error:
            check(tmp_path / "bad")
        message = str(error.value)
        assert "model.safetensors" in message and "head.layers.0.base_weight" in message
        assert "finite" in message and "\n" not in message


@pytest.mark.parametrize("edit", ["input_size", "preprocessing", "mean", "classes", "seed"])
def test_any_edit_to_the_sidecar_is_refused(copy: Path, edit: str) -> None:
    def change(sidecar: dict) -> None:
        if edit == "input_size":
            sidecar["config"]["input_size"] = 64
        elif edit == "preprocessing":
            sidecar["preprocessing"]["input_size"] = 64
        elif edit == "mean":
            sidecar["config"]["mean"] = [0.5, 0.5, 0.5]
        elif edit == "classes":
            sidecar["classes"] = ["osteoporosis", "osteopenia", "normal"]
        else:
            sidecar["seed"] = 7

    _edit(copy, reseal=False, change=change)
    for check in (validate_checkpoint, load_checkpoint):
        with pytest.raises(InputError, match=r"model\.json.*sidecar_sha256.*edited"):
            check(copy)


def test_a_resealed_preprocessing_that_contradicts_the_config_is_refused(copy: Path) -> None:
    _edit(copy, reseal=True, change=lambda s: s["preprocessing"].update(input_size=64))
    with pytest.raises(InputError, match="preprocessing"):
        validate_checkpoint(copy)


@pytest.mark.parametrize(("setting", "value"), [
    ("dims", [8, 8, 16, 10**9]), ("input_size", 10**6), ("depths", [1] * 1000), ("num_classes", 1),
    ("alpha", "NaN"), ("kan_grid", True), ("surprise", 1),
])
def test_settings_out_of_bounds_are_refused_before_building(copy: Path, setting: str, value) -> None:
    def change(sidecar: dict) -> None:
        sidecar["config"][setting] = value

    _edit(copy, reseal=True, change=change)
    if value == "NaN":  # JSON's NaN literal, which json.dumps does not write for a string
        text = (copy / "model.json").read_text().replace('"NaN"', "NaN")
        (copy / "model.json").write_text(text)
    with pytest.raises(InputError) as error:
        validate_checkpoint(copy)
    assert "model.json" in str(error.value)


def test_a_huge_config_within_the_bounds_is_refused_without_allocating(copy: Path) -> None:
    # every number is within the per-setting bounds, but the network would hold ~10^11 numbers (hundreds of GB):
    # counted on the meta device, refused before any real tensor is made
    _edit(copy, reseal=True, change=lambda s: s["config"].update(dims=[16384] * 4, heads=[1] * 4, depths=[8] * 4))
    for check in (validate_checkpoint, load_checkpoint):
        with pytest.raises(InputError, match=r"at most .* numbers"):
            check(copy)


def test_weights_that_do_not_fit_a_resealed_config_are_refused_before_loading(copy: Path) -> None:
    _edit(copy, reseal=True, change=lambda s: s["config"].update(dims=[8, 8, 16, 24]))
    with pytest.raises(InputError, match="wrong shape"):
        validate_checkpoint(copy)


def test_an_oversized_or_nan_sidecar_is_refused(copy: Path) -> None:
    sidecar = json.loads((copy / "model.json").read_text())
    (copy / "model.json").write_text(json.dumps(sidecar) + " " * (2 << 20))
    with pytest.raises(InputError, match="few kB"):
        validate_checkpoint(copy)
    (copy / "model.json").write_text(json.dumps(sidecar).replace('"seed": 1', '"seed": Infinity'))
    with pytest.raises(InputError, match="JSON"):
        validate_checkpoint(copy)


def test_the_old_format_is_refused_with_a_way_out(copy: Path) -> None:
    sidecar = json.loads((copy / "model.json").read_text())
    sidecar.pop("sidecar_sha256")
    sidecar["format"] = "f2b-study-checkpoint/1"
    (copy / "model.json").write_text(json.dumps(sidecar))
    with pytest.raises(InputError, match=r"retrain.*upgrade_checkpoint"):
        load_checkpoint(copy)
    upgrade_checkpoint(copy)
    model, upgraded = load_checkpoint(copy)
    assert upgraded["format"] == FORMAT and model.f2b_config["input_size"] == 32
    with pytest.raises(InputError, match="nothing to upgrade"):
        upgrade_checkpoint(copy)
