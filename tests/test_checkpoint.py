"""Checkpoints (safetensors + JSON sidecar) and pretrained-weight loading with provenance."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from f2b_study import __version__
from f2b_study.errors import InputError
from f2b_study.models import create_model, facenet_provenance, load_checkpoint, read_sidecar, save_checkpoint
from f2b_study.models.checkpoint import checkpoint_paths, seal

torch.set_num_threads(1)

TINY = {"dims": (8, 8, 16, 16), "depths": (1, 1, 1, 1), "heads": (1, 1, 2, 2), "ssam_heads": 2, "kan_hidden": (4,),
        "input_size": 32, "facenet_size": 96}


def tiny_face2bone(**extra) -> torch.nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_model("face2bone", **{**TINY, **extra})


@pytest.fixture(scope="module")
def saved(module_tmp) -> tuple[torch.nn.Module, Path]:
    model = tiny_face2bone().eval()
    directory = module_tmp("ckpt") / "run"
    save_checkpoint(model, directory, preprocessing_version="faces-2", seed=42, training_cohort_hash="abc123",
                    metadata={"best_epoch": 3})
    return model, directory


def copy_checkpoint(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    target.mkdir()
    for name in ("model.safetensors", "model.json"):
        (target / name).write_bytes((directory / name).read_bytes())
    return target


def rewrite_sidecar(directory: Path, **changes) -> None:
    """Change sidecar fields and re-seal it (as a save would), so the check under test is the one that refuses."""
    sidecar = json.loads((directory / "model.json").read_text())
    sidecar.update(changes)
    (directory / "model.json").write_text(json.dumps(seal(sidecar)))


def test_sidecar_records_what_rebuilds_and_traces_the_model(saved) -> None:
    _, directory = saved
    assert sorted(p.name for p in directory.iterdir()) == ["model.json", "model.safetensors"]
    sidecar = read_sidecar(directory)
    assert sidecar["arch"] == "face2bone"
    assert sidecar["config"]["dims"] == [8, 8, 16, 16] and sidecar["config"]["num_classes"] == 3
    assert sidecar["classes"] == ["normal", "osteopenia", "osteoporosis"]
    assert sidecar["preprocessing"]["input_size"] == 32
    assert sidecar["preprocessing_version"] == "faces-2"
    assert sidecar["seed"] == 42 and sidecar["training_cohort_hash"] == "abc123"
    assert sidecar["package_version"] == __version__ and sidecar["torch_version"] == torch.__version__
    assert sidecar["facenet_weights"]["source"] == "random-init"
    assert sidecar["imagenet_weights"] is None
    assert sidecar["metadata"] == {"best_epoch": 3}
    assert sidecar["created"].endswith("+00:00")
    assert sidecar["weights_sha256"] == hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()


def test_load_by_directory_or_either_file_gives_the_same_network(saved) -> None:
    model, directory = saved
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        for path in (directory, directory / "model.safetensors", directory / "model.json"):
            loaded, _ = load_checkpoint(path)
            assert torch.equal(loaded(x), expected)
            assert facenet_provenance(loaded)["source"] == "random-init"


def test_single_file_target_writes_a_sidecar_beside_it(tmp_path) -> None:
    model = create_model("resnet18", input_size=32)
    sidecar = save_checkpoint(model, tmp_path / "best.safetensors")
    assert sidecar == tmp_path / "best.json"
    _, data = load_checkpoint(tmp_path / "best.json")
    assert data["arch"] == "resnet18" and data["imagenet_weights"] == {"source": "random-init"}


@pytest.mark.parametrize("problem", ["missing sidecar", "garbled sidecar", "not an object", "missing field",
                                     "unknown format", "unknown arch", "weights changed", "not safetensors",
                                     "missing tensor", "wrong shapes", "missing weights"])
def test_loading_refuses_anything_else(saved, tmp_path, problem: str) -> None:
    _, directory = saved
    target = copy_checkpoint(directory, tmp_path)
    weights, sidecar = target / "model.safetensors", target / "model.json"
    if problem == "missing sidecar":
        sidecar.unlink()
    elif problem == "garbled sidecar":
        sidecar.write_text('{"arch": "face2bone", ')
    elif problem == "not an object":
        sidecar.write_text("[1, 2]")
    elif problem == "missing field":
        data = json.loads(sidecar.read_text())
        del data["config"]
        sidecar.write_text(json.dumps(data))
    elif problem == "unknown format":
        rewrite_sidecar(target, format="someone-else/9")
    elif problem == "unknown arch":
        rewrite_sidecar(target, arch="resnet50")
    elif problem == "weights changed":
        weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    elif problem == "not safetensors":
        weights.write_bytes(b"PK\x03\x04 a zip, as torch.save writes")
        rewrite_sidecar(target, weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    elif problem in ("missing tensor", "wrong shapes"):
        from safetensors.torch import load_file

        state = load_file(str(weights))
        if problem == "missing tensor":
            state.pop(next(iter(state)))
        else:
            state["head.layers.0.base_weight"] = torch.zeros(5, 5)
        save_file(state, str(weights))
        rewrite_sidecar(target, weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    elif problem == "missing weights":
        weights.unlink()
    with pytest.raises(InputError):
        load_checkpoint(target)


def test_config_that_does_not_fit_the_weights_is_refused(saved, tmp_path) -> None:
    _, directory = saved
    target = copy_checkpoint(directory, tmp_path)
    data = json.loads((target / "model.json").read_text())
    data["config"]["dims"] = [8, 8, 16, 24]
    (target / "model.json").write_text(json.dumps(seal(data)))
    with pytest.raises(InputError, match=r"wrong shape|missing|unexpected"):
        load_checkpoint(target)


def test_pickled_checkpoints_are_refused_by_name(tmp_path) -> None:
    for name in ("model.pt", "model.pth", "weights.bin"):
        with pytest.raises(InputError, match="never loads pickled"):
            checkpoint_paths(tmp_path / name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_checkpoint_loads_on_cpu_and_the_reverse(tmp_path) -> None:
    model = tiny_face2bone().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    save_checkpoint(model.cuda(), tmp_path / "from_gpu")
    on_cpu, _ = load_checkpoint(tmp_path / "from_gpu", map_location="cpu")
    with torch.no_grad():
        torch.testing.assert_close(on_cpu(x), expected)
    save_checkpoint(on_cpu, tmp_path / "from_cpu")
    on_gpu, _ = load_checkpoint(tmp_path / "from_cpu", map_location="cuda")
    assert next(on_gpu.parameters()).is_cuda
    with torch.no_grad():
        torch.testing.assert_close(on_gpu(x.cuda()).cpu(), expected, rtol=1e-3, atol=1e-3)


def test_cpu_checkpoint_loads_onto_the_requested_device(saved) -> None:
    _, directory = saved
    loaded, _ = load_checkpoint(directory, map_location=torch.device("cpu"))
    assert all(p.device.type == "cpu" for p in loaded.parameters())


# --- pretrained weights ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def facenet_release_file(module_tmp) -> Path:
    """A stand-in for 20180402-114759-vggface2.pt: an InceptionResnetV1 state dict with the 8631-class logits,
    without BatchNorm step counters (files converted from TensorFlow lack them)."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(11)
    net = InceptionResnetV1(classify=True, num_classes=8631)
    path = module_tmp("weights") / "20180402-114759-vggface2.pt"
    torch.save({k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}, path)
    return path


def test_facenet_weights_load_from_a_file_with_sha256_recorded(facenet_release_file) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no random-init warning when weights are given
        model = tiny_face2bone(facenet_weights=facenet_release_file)
    record = facenet_provenance(model)
    assert record["source"] == "file" and record["dataset"] == "VGGFace2"
    assert record["sha256"] == hashlib.sha256(facenet_release_file.read_bytes()).hexdigest()
    state = torch.load(facenet_release_file, weights_only=True)
    assert torch.equal(model.facenet.net.last_linear.weight, state["last_linear.weight"])
    assert not hasattr(model.facenet.net, "logits")


def test_random_init_facenet_is_loud_and_recorded() -> None:
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        model = create_model("face2bone-no-kan", **TINY)
    assert facenet_provenance(model)["source"] == "random-init"
    assert "RANDOMLY INITIALISED" in facenet_provenance(model)["warning"]


@pytest.mark.parametrize("content", ["garbage", "wrong keys", "pickled object"])
def test_bad_facenet_weight_files_are_input_errors(tmp_path, content: str) -> None:
    path = tmp_path / "weights.pt"
    if content == "garbage":
        path.write_bytes(b"not a torch file")
    elif content == "wrong keys":
        torch.save({"conv.weight": torch.zeros(3)}, path)
    else:
        torch.save(torch.nn.Linear(2, 2), path)  # a pickled module: weights_only=True refuses it
    with pytest.raises(InputError):
        tiny_face2bone(facenet_weights=path)
    with pytest.raises(InputError, match="existing"):
        tiny_face2bone(facenet_weights=tmp_path / "absent.pt")


def test_comparator_imagenet_weights_load_from_a_local_file(tmp_path) -> None:
    import torchvision

    torch.manual_seed(5)
    imagenet = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(imagenet.state_dict(), path)
    model = create_model("resnet18", weights=path)
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert model.fc.out_features == 3
    record = model.f2b_weights["imagenet"]
    assert record["source"] == "file" and record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_vit_imagenet_weights_are_interpolated_to_another_input_size(tmp_path) -> None:
    import torchvision

    torch.manual_seed(6)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in torchvision.models.vit_b_16(num_classes=1000).state_dict().items()},
              str(path))
    model = create_model("vit_b_16", input_size=112, weights=path)
    assert model.encoder.pos_embedding.shape == (1, 50, 768)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 112, 112)).shape == (1, 3)
