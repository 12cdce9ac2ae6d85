"""The fused inference copy of FaceNet (models/facenet_inference.py) computes facenet-pytorch's function, and
FaceNetBranch uses it only where no gradient, no autocast and no training can tell the difference."""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
from torch import nn

from f2b_study.models import create_model, onednn
from f2b_study.models.facenet_inference import build_inference_net, plain_facenet

TOL = 1e-5  # on L2-normalised embeddings: float32 reordering of the folded sums, nothing more


def realistic_statistics(net: nn.Module, seed: int = 0) -> None:
    """BatchNorm running statistics and affine terms away from their (0, 1) defaults, so folding them is tested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)


@pytest.fixture(scope="module")
def face2bone() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("face2bone", input_size=64, dims=(16, 32, 64, 128), depths=(1, 1, 1, 1),
                             heads=(1, 2, 4, 8), ssam_heads=4, kan_hidden=(8,)).eval()
    realistic_statistics(model.facenet.net)
    return model


@pytest.mark.parametrize("mkldnn", [True, False])
@pytest.mark.parametrize(("batch", "size"), [(1, 160), (5, 160), (3, 96)])
def test_fused_network_equals_facenet_pytorch(face2bone: nn.Module, monkeypatch, mkldnn: bool, batch: int,
                                               size: int) -> None:
    if mkldnn and not onednn.available():
        pytest.skip("this torch build has no oneDNN fused convolution")
    monkeypatch.setattr(onednn, "AVAILABLE", mkldnn)
    net = face2bone.facenet.net
    fused = build_inference_net(net)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch)).contiguous(
        memory_format=torch.channels_last)
    with torch.inference_mode():
        reference, fast = net(x), fused(x)
    assert fast.shape == reference.shape == (batch, 512)
    gap = (fast - reference).abs().max().item()
    assert gap <= TOL, f"fused FaceNet differs from facenet-pytorch's forward by {gap:.3g}"
    assert not net.training and all(not p.requires_grad for p in fused.parameters())


def test_face2bone_outputs_are_the_same_with_and_without_the_fused_facenet(face2bone: nn.Module) -> None:
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        fast = face2bone(x)
        assert "_inference_cache" in face2bone.facenet.__dict__  # the fused path did run
        with plain_facenet():
            reference = face2bone(x)
    torch.testing.assert_close(fast, reference, rtol=TOL, atol=TOL)


def load_other_weights(model: nn.Module) -> None:
    other = copy.deepcopy(model.facenet.net)
    realistic_statistics(other, seed=7)
    model.facenet.net.load_state_dict(other.state_dict())  # in place, as a checkpoint load does


def replace_a_parameter(model: nn.Module) -> None:
    linear = model.facenet.net.last_linear
    linear.weight = nn.Parameter(torch.randn_like(linear.weight), requires_grad=False)


@pytest.mark.parametrize("change", [load_other_weights, replace_a_parameter])
def test_changed_weights_rebuild_the_fused_copy(face2bone: nn.Module, change) -> None:
    model = copy.deepcopy(face2bone)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        before = model.face_embedding(x)
    change(model)
    with torch.inference_mode():
        after = model.face_embedding(x)
        with plain_facenet():
            reference = model.face_embedding(x)
    assert (after - before).abs().max() > 1e-3  # a stale copy would still give the old embedding
    torch.testing.assert_close(after, reference, rtol=TOL, atol=TOL)


def test_gradients_training_and_autocast_use_facenet_pytorchs_forward(face2bone: nn.Module) -> None:
    model = copy.deepcopy(face2bone)
    model.facenet.__dict__.pop("_inference_cache", None)
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    model.face_embedding(x).sum().backward()  # pixel maps differentiate through FaceNet
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert "_inference_cache" not in model.facenet.__dict__
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model.face_embedding(x)
    assert "_inference_cache" not in model.facenet.__dict__
    trainable = copy.deepcopy(model)
    trainable.facenet.trainable = "full"
    trainable.train()
    with torch.no_grad():
        trainable.face_embedding(x)
    assert "_inference_cache" not in trainable.facenet.__dict__


def test_the_fused_copy_is_never_saved_or_copied(face2bone: nn.Module) -> None:
    model = copy.deepcopy(face2bone)
    keys = set(model.state_dict())
    with torch.inference_mode():
        model(torch.randn(1, 3, 64, 64))
    assert "_inference_cache" in model.facenet.__dict__
    assert set(model.state_dict()) == keys  # checkpoints keep facenet-pytorch's layout
    derived = {"_inference_cache", "_inference_modules"}
    assert not derived & set(copy.deepcopy(model).facenet.__dict__)
    assert not derived & set(model.facenet.__getstate__())  # what pickling takes
    buffer = io.BytesIO()
    torch.save(model, buffer)  # whole-module pickling (Ray ships models this way) must not meet oneDNN tensors
    assert buffer.tell() > 0


def test_weights_created_in_inference_mode_keep_facenet_pytorchs_forward() -> None:
    # Such tensors keep no version counter, so an in-place change could not invalidate a fused copy.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("face2bone", input_size=64, dims=(16, 32, 64, 128), depths=(1, 1, 1, 1),
                             heads=(1, 2, 4, 8), ssam_heads=4, kan_hidden=(8,)).eval()
        model.face_embedding(torch.randn(1, 3, 64, 64))
    assert "_inference_cache" not in model.facenet.__dict__
