"""CRAFT: Jensen–Shannon divergence, NMF concepts, Sobol total indices (Jansen), crops, the whole analysis on tiny
models, and the explainability tables."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from f2b_study import CLASSES
from f2b_study.explain.craft import (
    CraftConfig,
    UnsupportedModel,
    adapter_for,
    concept_importance,
    crop_boxes,
    fit_concepts,
    jansen_total_indices,
    make_crops,
    relative_error,
    run_craft,
    sobol_design,
)
from f2b_study.explain.tables import js_divergence, table6, table7, table8, value_column

torch.set_num_threads(1)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_jsd_is_zero_for_identical_maps_and_one_bit_for_disjoint_maps() -> None:
    rng = np.random.default_rng(0)
    p = rng.random((7, 7))
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(p, 3 * p) == pytest.approx(0.0, abs=1e-12)  # maps are normalised first
    left, right = np.zeros((4, 4)), np.zeros((4, 4))
    left[:, :2], right[:, 2:] = rng.random((4, 2)), rng.random((4, 2))
    assert js_divergence(left, right) == pytest.approx(1.0, abs=1e-12)
    q = rng.random((7, 7))
    value = js_divergence(p, q)
    assert 0 < value < 1 and value == pytest.approx(js_divergence(q, p))
    assert value == pytest.approx(jensenshannon(p.ravel(), q.ravel(), base=2) ** 2)  # scipy's distance, squared
    assert np.isnan(js_divergence(np.zeros(4), np.ones(4)))
    table = table8({"craft_attribution": {"normal": left, "osteopenia": right, "osteoporosis": left}}, CLASSES)
    rows = table.to_dicts()
    assert rows[0]["comparison"] == "normal–osteopenia" and rows[0]["craft_attribution_js_divergence"] == 1.0
    assert rows[1]["craft_attribution_js_divergence"] == pytest.approx(0.0, abs=1e-12)
    assert rows[0]["craft_attribution_js_distance"] == pytest.approx(1.0)


def test_nmf_concepts_are_non_negative_and_reconstruct_the_activations() -> None:
    rng = np.random.default_rng(1)
    activations = rng.random((60, 4)) @ rng.random((4, 32))  # rank 4, non-negative
    nmf, u, w = fit_concepts(activations, 4, seed=0)
    assert u.shape == (60, 4) and w.shape == (4, 32)
    assert (u >= 0).all() and (w >= 0).all()
    assert relative_error(activations, u, w) < 0.01
    assert np.allclose(nmf.transform(activations[:5]), u[:5], atol=0.05 * u.max())
    with pytest.raises(ValueError, match="non-negative"):
        fit_concepts(-activations, 4)
    _, u_small, _ = fit_concepts(activations[:3], 6)
    assert u_small.shape[1] == 3  # never more concepts than crops


def test_jansen_estimator_recovers_the_ishigami_total_indices() -> None:
    # Ishigami (a = 7, b = 0.1) on [-π, π]³: total indices 0.5576, 0.4424, 0.2437 (Saltelli et al. 2008)
    n = 4096
    masks = sobol_design(3, n, seed=0)
    x = -np.pi + 2 * np.pi * masks
    y = np.sin(x[:, 0]) + 7 * np.sin(x[:, 1]) ** 2 + 0.1 * x[:, 2] ** 4 * np.sin(x[:, 0])
    total = jansen_total_indices(y, n, 3)
    assert total == pytest.approx([0.5576, 0.4424, 0.2437], abs=0.02)
    assert np.all(jansen_total_indices(np.ones(len(masks)), n, 3) == 0)  # constant output: nothing to explain


def test_sobol_index_of_a_concept_the_head_ignores_is_zero() -> None:
    w = np.eye(4)  # concept k = channel k

    def head(pooled: torch.Tensor) -> torch.Tensor:  # uses channels 0, 1, 2 only
        s = 2 * pooled[:, 0] + pooled[:, 1] ** 2 + pooled[:, 0] * pooled[:, 2]
        return torch.stack([s, -s, torch.zeros_like(s)], dim=1)

    u = np.random.default_rng(2).random((10, 4)) + 0.1
    for output in ("logit", "probability"):
        importance = concept_importance(head, u, w, 0, nb_design=64, output=output)
        assert importance[3] == 0.0
        assert (importance[:3] > 0.01).all()
        assert importance[0] > importance[2]  # channel 0 enters twice


def test_crops_span_the_face_and_drop_background_windows() -> None:
    boxes = crop_boxes(100, 2, 0.6)
    assert boxes == [(0, 0, 60), (0, 40, 60), (40, 0, 60), (40, 40, 60)]
    assert crop_boxes(100, 1, 0.5) == [(25, 25, 50)]
    faces = torch.rand(3, 3, 20, 20)
    masks = np.zeros((3, 20, 20), bool)
    masks[:, :10, :] = True  # only the upper half is face: the lower crops are dropped
    crops, owners = make_crops(faces, masks, CraftConfig(crop_grid=2, crop_fraction=0.5))
    assert crops.shape == (6, 3, 20, 20) and sorted(owners.tolist()) == [0, 0, 1, 1, 2, 2]


def _tiny(name: str, **extra):
    from f2b_study.models.registry import create_model

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_model(name, **extra).eval()


def _faces(n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:size, :size]
    mask = ((yy - size / 2) / (0.45 * size)) ** 2 + ((xx - size / 2) / (0.4 * size)) ** 2 <= 1
    faces = (rng.integers(0, 256, (n, size, size, 3)) * mask[None, :, :, None]).astype(np.uint8)
    return faces, np.repeat(mask[None], n, axis=0), np.arange(n) % 3


def test_craft_on_a_tiny_face2bone() -> None:
    model = _tiny("face2bone", dims=(8, 8, 16, 16), depths=(1, 1, 1, 1), heads=(1, 1, 2, 2), ssam_heads=2,
                  kan_hidden=(4,), input_size=64, facenet_size=80)
    faces, masks, labels = _faces(9, 64)
    adapter = adapter_for(model)
    x = torch.randn(2, 3, 64, 64)
    pooled, values, attention = adapter.activations(x)
    assert (pooled >= 0).all() and (values >= 0).all() and attention.shape == (2, 4)
    assert torch.allclose(adapter.head(pooled), model(x), atol=1e-5)  # the cut reassembles the network
    seen: list[int] = []
    model.facenet.register_forward_hook(lambda module, inputs, out: seen.append(len(inputs[0])))
    result = run_craft(model, faces, masks, labels, CLASSES, mean=MEAN, std=STD,
                       config=CraftConfig(n_concepts=3, nb_design=16))
    assert result.skipped is None and [c.cls for c in result.classes] == list(CLASSES)
    assert seen == [3, 3, 3]  # FaceNet once per face: its 4 crops borrow the face's embedding
    for item in result.classes:
        assert item.n_images == 3 and item.n_crops == 12
        assert item.components.shape == (3, 16) and (item.components >= 0).all()
        assert item.importance.shape == (3,) and (item.importance >= 0).all()
        assert item.concept_maps.shape == (3, 2, 2) and (item.concept_maps >= 0).all()
        assert (item.attribution_map >= 0).all() and item.attention_map.shape == (2, 2)
    table = table8(result.maps(), CLASSES)
    assert {"craft_attribution_js_divergence", "ssam_attention_js_divergence"} <= set(table.columns)
    assert table["craft_attribution_js_divergence"].is_between(0, 1).all()
    described = result.describe()
    assert described["classes"][0]["n_concepts"] == 3 and described["map_size"] == [2, 2]
    from f2b_study.models.runtime import InputTransform, face_embeddings

    embeddings = face_embeddings(model, faces, transform=InputTransform(faces.shape[1], MEAN, STD),
                                 device=torch.device("cpu")).numpy()
    again = run_craft(model, faces, masks, labels, CLASSES, mean=MEAN, std=STD,
                      config=CraftConfig(n_concepts=3, nb_design=16), face_embeddings=embeddings)
    assert np.allclose(again.classes[1].importance, result.classes[1].importance, atol=1e-5)


def test_craft_runs_on_resnets_and_says_why_it_skips_others() -> None:
    resnet = _tiny("resnet18", input_size=64)
    faces, masks, labels = _faces(6, 64)
    result = run_craft(resnet, faces, masks, labels, CLASSES, mean=MEAN, std=STD,
                       config=CraftConfig(n_concepts=2, nb_design=8))
    assert result.adapter.startswith("ResNet") and len(result.classes) == 3
    assert result.classes[0].attention_map is None and "ssam_attention" not in result.maps()
    no_ssam = _tiny("face2bone-no-ssam", dims=(8, 8, 16, 16), depths=(1, 1, 1, 1), heads=(1, 1, 2, 2),
                    kan_hidden=(4,), input_size=64)
    with pytest.raises(UnsupportedModel, match="no SSAM"):
        adapter_for(no_ssam)
    skipped = run_craft(no_ssam, faces, masks, labels, CLASSES, mean=MEAN, std=STD)
    assert skipped.classes == [] and "SSAM" in skipped.skipped


def _patients(n_per_class: int = 6, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    regions = ("forehead", "periorbital", "midface", "nasolabial", "jawline")
    rows = []
    for cls in CLASSES:
        direction = rng.normal(size=(5, 3))
        for i in range(n_per_class):
            values = direction + 0.3 * rng.normal(size=(5, 3))  # patients of a class share a direction
            row = {"patient_id": f"{cls}{i}", "bone_status": cls, "sex": "F" if i % 2 else "M"}
            row.update({value_column(r, o): values[a, b] for a, r in enumerate(regions)
                        for b, o in enumerate(CLASSES)})
            rows.append(row)
    return pl.DataFrame(rows), regions


def test_table6_mean_sd_per_region_class_and_sex() -> None:
    patients, regions = _patients()
    table = table6(patients, regions, CLASSES)
    assert table.height == 4 * 3 * 5  # outputs (reference + 3) × subgroups (all, F, M) × regions
    row = table.filter((pl.col("explained_output") == "reference class") & (pl.col("subgroup") == "all")
                       & (pl.col("region") == "midface")).row(0, named=True)
    expected = patients.filter(pl.col("bone_status") == "osteopenia")[value_column("midface", "osteopenia")]
    assert row["osteopenia_n"] == 6 and row["osteopenia_mean"] == pytest.approx(expected.mean())
    assert row["osteopenia_sd"] == pytest.approx(expected.std())  # sample SD
    assert "±" in row["osteopenia"]
    fixed = table.filter((pl.col("explained_output") == "osteoporosis") & (pl.col("subgroup") == "sex F")
                         & (pl.col("region") == "jawline")).row(0, named=True)
    women = patients.filter((pl.col("bone_status") == "normal") & (pl.col("sex") == "F"))
    assert fixed["normal_n"] == 3
    assert fixed["normal_mean"] == pytest.approx(women[value_column("jawline", "osteoporosis")].mean())


def test_table7_intra_class_pairs_are_more_alike_when_classes_share_a_direction() -> None:
    patients, regions = _patients(8)
    table, summary = table7(patients, regions, CLASSES)
    intra = table.filter(pl.col("analysis") == "intra-class")
    inter = table.filter(pl.col("analysis") == "inter-class")
    assert intra["n_pairs"].to_list() == [28, 28, 28] and inter["n_pairs"].to_list() == [64, 64, 64]
    assert intra["mean"].min() > inter["mean"].max()
    overall = table.filter(pl.col("analysis") == "intra vs inter").row(0, named=True)
    assert overall["p"] < 0.001 and overall["welch_t"] > 0 and overall["welch_df"] > 0
    assert "Welch" in summary["test"] and summary["zero_or_missing_vectors_left_out"] == 0
    # a zero vector has no direction: left out and counted
    zeroed = patients.with_columns(pl.when(pl.col("patient_id") == "normal0").then(0.0).otherwise(pl.col(c)).alias(c)
                                   for c in patients.columns if c.startswith("shap_"))
    _, summary = table7(zeroed, regions, CLASSES)
    assert summary["zero_or_missing_vectors_left_out"] == 1
