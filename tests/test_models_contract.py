"""The model contract, over every registry entry (docs/methods.md, Model), plus the Face2Bone-specific interface."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch

from f2b_study.errors import InputError
from f2b_study.models import create_model, get_spec, list_models, load_checkpoint, preprocessing, save_checkpoint

torch.set_num_threads(1)

# Small configurations keep the CPU suite fast; the architecture code paths are the defaults' (FaceNet is the real
# InceptionResnetV1, only fed 96 px; its last block trains so the gradient check covers it).
TINY_FACE2BONE = {"dims": (16, 16, 32, 32), "depths": (1, 1, 1, 1), "heads": (2, 2, 2, 2), "ssam_heads": 2,
                  "kan_hidden": (8,), "input_size": 64, "facenet_size": 96, "facenet_trainable": "last"}
TINY = {
    "face2bone": TINY_FACE2BONE, "face2bone-no-fsa": TINY_FACE2BONE, "face2bone-no-ssam": TINY_FACE2BONE,
    "face2bone-no-kan": TINY_FACE2BONE,
    "resnet18": {"input_size": 64}, "resnet34": {"input_size": 64},
    # torchvision's own definitions at 32 px: VGG's classifier (120M+ parameters) and ViT-B/16 stay big.
    "vgg16": {"input_size": 32}, "vgg19": {"input_size": 32}, "vit_b_16": {"input_size": 32},
}
SLOW = {"vgg16", "vgg19", "vit_b_16"}


def build(name: str, seed: int = 0, **extra) -> torch.nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-init FaceNet warning has its own test
        return create_model(name, **{**TINY[name], **extra})


def batch(model: torch.nn.Module, n: int = 3, seed: int = 1) -> torch.Tensor:
    size = preprocessing(model)["input_size"]
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_registry_covers_the_paper_and_tiny_configs_cover_the_registry() -> None:
    assert list_models() == ["face2bone", "face2bone-no-fsa", "face2bone-no-ssam", "face2bone-no-kan", "vgg16",
                             "vgg19", "resnet18", "resnet34", "vit_b_16"]
    assert set(TINY) == set(list_models())


@pytest.fixture(scope="module", params=[pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                        for n in list_models()])
def entry(request) -> tuple[str, torch.nn.Module]:
    return request.param, build(request.param)


def test_forward_shape_and_finite_outputs(entry) -> None:
    _, model = entry
    model.eval()
    with torch.no_grad():
        logits = model(batch(model))
    assert logits.shape == (3, 3)
    assert torch.isfinite(logits).all()


def test_gradients_reach_every_trainable_parameter(entry) -> None:
    name, model = entry
    if name == "vit_b_16":  # torchvision zero-initialises ViT's head, which zeroes every upstream gradient
        model = copy.deepcopy(model)
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(batch(model, 4))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 1])).backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    no_grad = [n for n, p in trainable.items() if p.grad is None]
    assert not no_grad, f"{name}: no gradient for {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in trainable.values())
    nonzero = sum(bool(p.grad.abs().sum() > 0) for p in trainable.values())
    assert nonzero >= 0.9 * len(trainable)  # a dead ReLU may zero a few, not the bulk
    if name.startswith("face2bone") and name != "face2bone-no-ssam":
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        assert frozen and all(n.startswith("facenet.net.") for n in frozen)
        assert model.facenet.net.block8.conv2d.weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_save_load_gives_identical_outputs(entry, tmp_path) -> None:
    name, model = entry
    model.eval()
    x = batch(model)
    with torch.no_grad():
        before = model(x)
    save_checkpoint(model, tmp_path / "ckpt", preprocessing_version="test-1", seed=0)
    loaded, sidecar = load_checkpoint(tmp_path / "ckpt")
    assert sidecar["arch"] == name and not loaded.training
    with torch.no_grad():
        after = loaded(x)
    assert torch.equal(before, after)


def test_cpu_determinism_with_a_seed(entry) -> None:
    name, model = entry
    twin = build(name)  # same seed as the fixture's model: the same initial parameters
    for (n1, t1), (n2, t2) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(t1, t2), n1

    def step(m: torch.nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
        m.train()
        m.zero_grad(set_to_none=True)
        torch.manual_seed(7)  # dropout masks
        logits = m(batch(m, 2))
        logits.square().mean().backward()
        grads = [p.grad.clone() for p in m.parameters() if p.grad is not None]
        m.zero_grad(set_to_none=True)
        return logits.detach(), grads

    twin.load_state_dict(model.state_dict())  # BatchNorm buffers moved in earlier tests
    logits_a, grads_a = step(model)
    logits_b, grads_b = step(twin)
    assert torch.equal(logits_a, logits_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b, strict=True))


def test_batch_size_invariance_in_eval_mode(entry) -> None:
    _, model = entry
    model.eval()
    x = batch(model, 4)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


# --- registry behaviour ---------------------------------------------------------------------------------------

def test_unknown_model_and_unknown_setting_are_input_errors() -> None:
    with pytest.raises(InputError, match="unknown model 'resnet50'"):
        create_model("resnet50")
    with pytest.raises(InputError, match="unknown setting"):
        create_model("resnet18", depth=3)
    with pytest.raises(InputError, match="no FaceNet branch"):
        create_model("resnet18", facenet_weights="x.pt")
    with pytest.raises(InputError, match="not divisible"):
        create_model("face2bone-no-ssam", dims=(48, 90, 192, 384))  # 90 channels in 4 heads
    with pytest.raises(InputError, match="multiple of 16"):
        create_model("vit_b_16", input_size=100)
    with pytest.raises(InputError, match="trainable mode"):
        create_model("face2bone", facenet_trainable="half")


def test_spec_config_is_json_round_trippable_and_carries_preprocessing() -> None:
    spec = get_spec("face2bone")
    config = spec.config(3, dims=(8, 8, 16, 16), input_size=112)
    assert json.loads(json.dumps(config)) == config
    assert config["dims"] == [8, 8, 16, 16] and config["depths"] == [2, 2, 4, 2]
    assert preprocessing(config) == {"input_size": 112, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                     "interpolation": "bilinear"}


# --- Face2Bone specifics ----------------------------------------------------------------------------------------

def test_default_face2bone_wires_up() -> None:
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        model = create_model("face2bone")
    n_params = sum(p.numel() for p in model.parameters())
    n_facenet = sum(p.numel() for p in model.facenet.parameters())
    assert 29.5e6 < n_params < 30.5e6 and 23.4e6 < n_facenet < 23.6e6  # docs/methods.md: 30.0M incl. FaceNet 23.5M
    assert model.f2b_weights["facenet"]["source"] == "random-init"
    assert model.facenet_frozen and not any(p.requires_grad for p in model.facenet.parameters())
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 96, 96))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_frozen_facenet_stays_in_eval_mode_when_the_model_trains() -> None:
    model = build("face2bone", facenet_trainable="frozen").train()
    assert not any(m.training for m in model.facenet.net.modules())
    assert model.image.training
    last = build("face2bone", facenet_trainable="last").train()
    assert last.facenet.net.block8.training and not last.facenet.net.repeat_1.training


def test_precomputed_face_embedding_skips_facenet_and_gives_the_same_logits() -> None:
    model = build("face2bone", facenet_trainable="frozen").eval()
    x = batch(model)
    with torch.no_grad():
        embedding = model.face_embedding(x)
        assert embedding.shape == (3, 512)
        torch.testing.assert_close(embedding.norm(dim=1), torch.ones(3))
        torch.testing.assert_close(model(x, face_embedding=embedding), model(x))
    trainable = build("face2bone", facenet_trainable="last").train()
    with pytest.raises(ValueError, match="no gradient"):
        trainable(x, face_embedding=embedding)


def test_explainability_interface_reproduces_the_forward_pass() -> None:
    model = build("face2bone").eval()
    x = batch(model)
    with torch.no_grad():
        logits = model(x)
        values, attention = model.concept_activations(x)
        assert values.shape == (3, 32, 2, 2) and (values >= 0).all()
        torch.testing.assert_close(attention.sum(-1), torch.ones(3, 2))
        torch.testing.assert_close(model.ssam_values(x), values)
        torch.testing.assert_close(model.ssam_attention(x), attention)
        pooled = model.pooled_features(x)
        assert pooled.shape == (3, 32) and (pooled >= 0).all()
        torch.testing.assert_close(model.head_from_pooled(pooled), logits)
        torch.testing.assert_close(model.head_from_values(values, attention), logits)
        # Masking a channel of V changes the logits through h: what CRAFT's concept masking relies on.
        masked = values.clone()
        masked[:, :16] = 0
        assert not torch.allclose(model.head_from_values(masked, attention), logits)
    no_ssam = build("face2bone-no-ssam")
    assert no_ssam.facenet is None and not no_ssam.facenet_frozen
    with pytest.raises(RuntimeError, match="no SSAM"):
        no_ssam.ssam_values(x)


def test_ablation_switches_change_what_they_name() -> None:
    full, no_fsa, no_kan = build("face2bone"), build("face2bone-no-fsa"), build("face2bone-no-kan")
    assert any(type(m).__name__ == "FSABlock" for m in full.modules())
    assert not any(type(m).__name__ == "FSABlock" for m in no_fsa.modules())
    assert any(type(m).__name__ == "ConvBlock" for m in no_fsa.modules())
    assert type(full.head).__name__ == "KAN" and type(no_kan.head).__name__ == "MLPHead"
    stage_widths = [s[-1].norm1.normalized_shape[0] for s in full.image.stages]
    assert stage_widths == [s[-1].conv1.out_channels for s in no_fsa.image.stages]


def test_overrides_change_the_architecture_and_survive_a_checkpoint(tmp_path) -> None:
    model = build("face2bone", dims=(8, 16, 16, 24), heads=(1, 2, 2, 3), ssam_heads=3, alpha=0.25,
                  kan_grid=7, input_size=48)
    save_checkpoint(model, tmp_path / "c", seed=3)
    loaded, sidecar = load_checkpoint(tmp_path / "c")
    assert sidecar["config"]["dims"] == [8, 16, 16, 24] and sidecar["config"]["kan_grid"] == 7
    assert loaded.head.layers[0].grid_size == 7 and loaded.image.out_channels == 24
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())


# --- `f2b-study models` ------------------------------------------------------------------------------------------

def test_models_command_lists_every_entry_with_counts(capsys) -> None:
    from f2b_study.cli import main

    assert main(["models", "--json", "--input-size", "112"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["models"]}
    assert list(rows) == list_models()
    assert rows["resnet18"]["params"] == 11_178_051  # torchvision's ResNet18 with a 3-class head
    assert rows["face2bone"]["trainable_params"] < rows["face2bone"]["params"]  # FaceNet frozen by default
    assert rows["face2bone-no-ssam"]["gmacs"] < rows["face2bone"]["gmacs"]  # no FaceNet branch
    assert all(row["input_size"] == 112 and row["gflops"] == pytest.approx(2 * row["gmacs"]) for row in rows.values())
    assert main(["models", "--input-size", "8"]) == 2
    from f2b_study.commands.models import format_table

    unavailable = {"name": "vit_b_16", "params": None, "input_size": 100, "description": "not available: why"}
    assert "vit_b_16" in format_table([rows["resnet18"], unavailable])


def test_demo_config_is_small_frozen_and_runs_at_112_px() -> None:
    from f2b_study.models.face2bone import DEMO_CONFIG

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("face2bone", **DEMO_CONFIG)
    assert model.facenet_frozen and preprocessing(model)["input_size"] == 112
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) < 2_000_000
    x = batch(model, 2)
    with torch.no_grad():
        embedding = model.eval().face_embedding(x)
    logits = model.train()(x, face_embedding=embedding)
    assert logits.shape == (2, 3)
