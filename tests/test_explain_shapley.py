"""Exact region Shapley values: the weights, efficiency, null players and symmetry on models built for it, equality
with shap's Exact explainer on the same value function, and the baselines."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from f2b_study.explain.baselines import blur_baseline, blur_faces, mean_baseline
from f2b_study.explain.shapley import (
    coalition_table,
    composites,
    region_shapley,
    shapley_from_values,
    shapley_matrix,
)

torch.set_num_threads(1)

SIZE = 20
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def band_masks(n: int, size: int = SIZE) -> np.ndarray:
    """Five horizontal bands of 4 rows each, inside columns 2..17 (so a background border stays outside)."""
    masks = np.zeros((5, size, size), bool)
    for k in range(5):
        masks[k, 4 * k:4 * k + 4, 2:size - 2] = True
    return np.repeat(masks[None], n, axis=0)


def faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.uint8)


class BandModel(nn.Module):
    """Logits from the mean of channel 0 over some bands' pixels only (read by indexing: other pixels are never
    touched), passed through a non-linearity so the game is not additive."""

    def __init__(self, bands: tuple[int, ...]) -> None:
        super().__init__()
        self.rows = [list(range(4 * k, 4 * k + 4)) for k in bands]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = sum(x[:, 0, rows, 2:SIZE - 2].mean(dim=(1, 2)) for rows in self.rows)
        return torch.stack([s, torch.tanh(2 * s) - s ** 2, -s], dim=1)


def test_weights_sum_to_one_and_the_table_orders_coalitions_by_bits() -> None:
    table = coalition_table(5)
    assert table.shape == (32, 5) and not table[0].any() and table[31].all() and list(table[5]) == [1, 0, 1, 0, 0]
    m = shapley_matrix(5)
    # φ_i of v = 1{i ∈ S}: player i alone carries everything
    for i in range(5):
        v = table[:, i].astype(float)[:, None]
        assert np.allclose(shapley_from_values(v)[:, 0], np.eye(5)[i])
    # efficiency for any game: Σ_i M[s, i] is +1 for the full coalition, −1 for the empty one, 0 otherwise
    assert np.allclose(m.sum(axis=1), np.r_[-1, np.zeros(30), 1])
    # the weight of a coalition of size k without i is k!(n-k-1)!/n!
    assert math.isclose(-m[0, 0], math.factorial(0) * math.factorial(4) / math.factorial(5))


def test_composites_take_the_baseline_only_in_absent_regions() -> None:
    images = torch.arange(2 * 3 * SIZE * SIZE, dtype=torch.float32).reshape(2, 3, SIZE, SIZE)
    base = torch.full((1, 3, SIZE, SIZE), -1.0)
    masks = torch.from_numpy(band_masks(2))
    out = composites(images, base, masks, torch.from_numpy(coalition_table(5)))
    assert out.shape == (2, 32, 3, SIZE, SIZE)
    assert torch.equal(out[:, 31], images)  # all present: the image itself
    inside = masks.any(dim=1)[:, None].expand(-1, 3, -1, -1)
    assert (out[:, 0][inside] == -1).all() and torch.equal(out[:, 0][~inside], images[~inside])  # background kept
    only_band2 = out[:, 4]  # coalition {2}
    band2 = masks[:, 2][:, None].expand(-1, 3, -1, -1)
    assert torch.equal(only_band2[band2], images[band2]) and (only_band2[inside & ~band2] == -1).all()


def test_a_model_that_reads_one_region_gives_the_others_exactly_zero() -> None:
    x = faces(5)
    result = region_shapley(BandModel((1,)), x, band_masks(5), x.astype(np.float32).mean(axis=0), mean=MEAN,
                            std=STD, output="logit", batch_size=64)
    values = result.values
    assert values.shape == (5, 5, 3)
    others = [0, 2, 3, 4]
    assert np.all(values[:, others] == 0.0)  # null players: exactly, not approximately
    assert np.abs(values[:, 1]).max() > 1e-3
    gap = values.sum(axis=1) - (result.f_all - result.f_none)
    assert np.abs(gap).max() < 1e-12 and result.efficiency_gap < 1e-12
    # the one region carries the whole change
    assert np.allclose(values[:, 1], result.f_all - result.f_none, atol=1e-12)


def test_symmetric_regions_get_equal_values_and_efficiency_holds_for_probabilities() -> None:
    # both bands hold the same pixels and the model treats them alike: they are symmetric players
    x = faces(3, seed=1)
    x[:, 12:16] = x[:, 4:8]
    base = np.full((SIZE, SIZE, 3), 30.0, np.float32)
    result = region_shapley(BandModel((1, 3)), x, band_masks(3), base, mean=MEAN, std=STD, output="probability")
    values = result.values
    assert np.allclose(values[:, 1], values[:, 3], rtol=1e-9, atol=1e-12)
    assert np.all(values[:, [0, 2, 4]] == 0.0)
    assert np.abs(values[:, 1]).max() > 1e-4
    assert result.efficiency_gap < 1e-12
    # probabilities sum to 1, so each region's values over the three outputs sum to 0
    assert np.allclose(values.sum(axis=2), 0, atol=1e-7)


def test_per_image_baselines_and_batch_size_do_not_change_the_values() -> None:
    x = faces(4, seed=2)
    masks = band_masks(4)
    base = blur_faces(x, masks.any(axis=1), sigma=2.0)
    model = BandModel((0, 2, 4))
    one = region_shapley(model, x, masks, base, mean=MEAN, std=STD, batch_size=32)
    many = region_shapley(model, x, masks, base, mean=MEAN, std=STD, batch_size=1024)
    assert np.allclose(one.values, many.values, atol=1e-12)
    shared = region_shapley(model, x, masks, base[0], mean=MEAN, std=STD)
    assert np.allclose(shared.values[0], one.values[0], atol=1e-12)  # image 0 with its own blur either way


@pytest.mark.slow  # shap's first explanation compiles (several seconds)
def test_equals_shap_exact_explainer_on_the_same_value_function() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shap's own deprecation noise on import
        import shap

    from f2b_study.models.registry import create_model

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("face2bone", dims=(8, 8, 16, 16), depths=(1, 1, 1, 1), heads=(1, 1, 2, 2),
                             ssam_heads=2, kan_hidden=(4,), input_size=SIZE * 2, facenet_size=80).eval()
    size = SIZE * 2
    x = np.random.default_rng(3).integers(0, 256, (2, size, size, 3)).astype(np.uint8)
    masks = np.repeat(np.repeat(band_masks(2), 2, axis=2), 2, axis=3)
    base = x.astype(np.float32).mean(axis=0)
    ours = region_shapley(model, x, masks, base, mean=MEAN, std=STD)

    for i in range(len(x)):
        def value(z: np.ndarray, i: int = i) -> np.ndarray:
            batch = numpy_composites(x[i], masks[i], base, z.astype(bool))
            with torch.inference_mode():
                return torch.softmax(model(batch), dim=1).numpy().astype(np.float64)

        explainer = shap.explainers.Exact(value, shap.maskers.Independent(np.zeros((1, 5)), max_samples=1))
        explanation = explainer(np.ones((1, 5)))
        assert np.allclose(explanation.values[0], ours.values[i], atol=1e-6)
        assert np.allclose(explanation.base_values[0], ours.f_none[i], atol=1e-6)


def test_facenet_sees_the_composite_unless_told_otherwise() -> None:
    from f2b_study.models.registry import create_model

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("face2bone", dims=(8, 8, 16, 16), depths=(1, 1, 1, 1), heads=(1, 1, 2, 2),
                             ssam_heads=2, kan_hidden=(4,), input_size=SIZE * 2, facenet_size=80).eval()
    with torch.no_grad():
        model.ssam.key.weight.mul_(1000)  # a sharp face key: the output then clearly depends on the embedding
    seen: list[int] = []
    model.facenet.register_forward_hook(lambda module, inputs, out: seen.append(len(inputs[0])))
    size = SIZE * 2
    x = np.random.default_rng(4).integers(0, 256, (2, size, size, 3)).astype(np.uint8)
    masks = np.repeat(np.repeat(band_masks(2), 2, axis=2), 2, axis=3)
    base = np.zeros((size, size, 3), np.float32)
    masked = region_shapley(model, x, masks, base, mean=MEAN, std=STD, output="logit")
    original = region_shapley(model, x, masks, base, mean=MEAN, std=STD, output="logit", facenet_input="original")
    assert masked.facenet_input == "masked" and original.facenet_input == "original"
    assert seen == [64, 2]  # FaceNet ran on the 2 × 32 composites, then on the 2 unmasked faces only
    from f2b_study.models.runtime import InputTransform, face_embeddings

    transform = InputTransform(size, MEAN, STD)
    embeddings = face_embeddings(model, x, transform=transform, device=torch.device("cpu")).numpy()
    given = region_shapley(model, x, masks, base, mean=MEAN, std=STD, output="logit", facenet_input="original",
                           embeddings=embeddings)
    assert np.allclose(given.values, original.values, atol=1e-6) and len(seen) == 3  # no FaceNet pass of its own
    assert np.allclose(masked.f_all, original.f_all, atol=1e-5)  # the full image: the same input either way
    assert not np.allclose(masked.f_none, original.f_none, atol=1e-4)  # the baseline face: FaceNet differs
    assert masked.efficiency_gap < 1e-9 and original.efficiency_gap < 1e-9
    described = masked.describe()
    assert described["coalitions"] == 32 and described["players"][1] == "periorbital"


def test_baselines_record_their_choice() -> None:
    x = faces(6)
    mean = mean_baseline(x, source="training split of run")
    assert mean.describe()["kind"] == "mean" and mean.describe()["n_faces"] == 6
    assert "mean of 6" in mean.describe()["description"]
    assert np.allclose(mean.for_faces(x[:2]), x.mean(axis=0))
    blur = blur_baseline(SIZE)
    assert blur.describe()["kind"] == "blur" and blur.describe()["sigma_px"] == SIZE / 16
    assert blur.for_faces(x[:2]).shape == (2, SIZE, SIZE, 3)


def test_blur_is_normalised_inside_the_face() -> None:
    # a uniform face on black stays uniform when blurred: the background does not darken its edge
    face = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    mask = np.zeros((1, SIZE, SIZE), bool)
    mask[0, 3:17, 4:16] = True
    face[mask] = 200
    out = blur_faces(face, mask, sigma=3.0)
    assert np.allclose(out[mask], 200, atol=1e-3) and (out[~mask] == 0).all()
    textured = face.copy()
    textured[0, 3:17:2, 4:16] = 100
    blurred = blur_faces(textured, mask, sigma=3.0)
    assert blurred[mask].std() < textured[mask].std() / 3


def numpy_composites(face: np.ndarray, masks: np.ndarray, base: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    """An independent composite builder (numpy, one coalition row at a time): the model's normalised input of
    each coalition in ``rows`` ((C, 5) bool), the face's pixels where a region is present, the baseline's elsewhere."""
    images = []
    for row in rows:
        image = face.astype(np.float32).copy()
        for k in np.flatnonzero(~row):
            image[masks[k]] = base[masks[k]]
        images.append(image)
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2) / 255.0
    return (batch - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def every_composite_values(model: nn.Module, x: np.ndarray, masks: np.ndarray, base: np.ndarray,
                           facenet_input: str) -> np.ndarray:
    """The straightforward game: every image's 32 composites built in numpy and all run through the model (FaceNet
    on the composite, or on the unmasked face for "original"); (N, 32, K) probabilities."""
    out = []
    for i in range(len(x)):
        batch = numpy_composites(x[i], masks[i], base[i] if base.ndim == 4 else base, coalition_table(5))
        with torch.inference_mode():
            kwargs = {}
            if facenet_input == "original":
                kwargs["face_embedding"] = model.face_embedding(batch[-1:]).expand(32, -1)  # coalition 31 = the face
            out.append(torch.softmax(model(batch, **kwargs), dim=1).numpy().astype(np.float64))
    return np.stack(out)


@pytest.mark.parametrize("facenet_input", ["masked", "original"])
@pytest.mark.parametrize("shared_baseline", [True, False])
def test_reusing_identical_composites_gives_the_values_of_running_every_composite(facenet_input: str,
                                                                                   shared_baseline: bool) -> None:
    from f2b_study.models.registry import create_model

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("face2bone", dims=(8, 8, 16, 16), depths=(1, 1, 1, 1), heads=(1, 1, 2, 2),
                             ssam_heads=2, kan_hidden=(4,), input_size=SIZE * 2, facenet_size=80).eval()
    with torch.no_grad():
        model.ssam.key.weight.mul_(100)  # a sharp face key: FaceNet's input matters
    size = SIZE * 2
    masks = np.repeat(np.repeat(band_masks(5), 2, axis=2), 2, axis=3)
    inside = masks.any(axis=1)
    x = np.random.default_rng(5).integers(1, 256, (5, size, size, 3)).astype(np.uint8)
    x[~inside] = 0  # standardised faces: black outside the regions, the same for every image
    base = np.full((size, size, 3), 90.0, np.float32)
    if not shared_baseline:
        base = np.stack([base + 7 * i for i in range(5)])
    own_base = base if base.ndim == 4 else np.broadcast_to(base, x.shape)
    masks[1, 3] = False  # image 1: region 3 empty (e.g. not found): it changes nothing
    x[2][masks[2, 0]] = own_base[2][masks[2, 0]]  # image 2: region 0 already looks like the baseline
    ours = region_shapley(model, x, masks, base, mean=MEAN, std=STD, batch_size=64, facenet_input=facenet_input)
    expected = every_composite_values(model, x, masks, base, facenet_input)
    np.testing.assert_allclose(ours.coalition_values, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.values, shapley_from_values(expected), atol=1e-5, rtol=0)
    assert np.all(ours.values[1, 3] == 0.0) and np.all(ours.values[2, 0] == 0.0)  # exactly: null players
    # 32 composites per image, 16 for images 1 and 2; with a shared baseline and FaceNet on the composite, the
    # empty coalition once for images 0, 2, 3, 4 (image 1 keeps its own pixels in its empty region 3)
    shared_empty = shared_baseline and facenet_input == "masked"
    assert ours.model_evaluations == 3 * 32 + 2 * 16 - (3 if shared_empty else 0)
    assert ours.describe()["model_evaluations"] == ours.model_evaluations
