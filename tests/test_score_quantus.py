"""The scoring metrics against Quantus 0.6.0 (the field's reference, LGPL: an oracle here, nothing
copied) and scikit-learn; Quantus's known defects pinned, so a release that fixes them is noticed.

Quantus scores one region per call (``s_batch``), so each region of the same maps is its own call.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import quantus
from PIL import Image
from sklearn.metrics import roc_auc_score

from celebamask.score.metrics import METRICS, MetricOptions, score_map
from tests.reference import mask_path

# our metric name -> (Quantus class, its keyword arguments); Quantus' own defaults otherwise
# (its normalise_by_max scales each map by a positive number: no metric here depends on that)
QUANTUS = {
    "pointing_game": (quantus.PointingGame, {}),
    "relevance_mass": (quantus.RelevanceMassAccuracy, {}),
    "attribution_localisation": (quantus.AttributionLocalisation, {}),  # abs=True by default
    "top_k_intersection": (quantus.TopKIntersection, {"k": 100}),
    "relevance_rank_accuracy": (quantus.RelevanceRankAccuracy, {}),
    "auc": (quantus.AUC, {}),
}
SIZE = 32


def _quantus(metric: str, maps: np.ndarray, regions: np.ndarray, batch_size: int = 64, **extra: object) -> np.ndarray:
    """One Quantus metric on (B, H, W) maps and (B, H, W) bool regions, as float64 (B,)."""
    cls, kwargs = QUANTUS[metric]
    a = maps[:, None].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cls(disable_warnings=True, **{**kwargs, **extra})(
            model=None, x_batch=np.zeros_like(a), y_batch=np.zeros(len(a), dtype=int), a_batch=a,
            s_batch=regions[:, None].astype(np.float64), channel_first=True, batch_size=batch_size)
    return np.asarray(scores, dtype=np.float64)


def _partition(rng: np.random.Generator, count: int) -> np.ndarray:
    """A label map of ``count`` Voronoi cells on the SIZE² grid: compact regions of varied area."""
    centres = rng.uniform(0, SIZE, (count, 2))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    distance = (yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2
    return distance.argmin(axis=-1)


def _tie_free_map(rng: np.random.Generator, signed: bool) -> np.ndarray:
    """A smooth map (sum of Gaussian bumps) plus a tiny jitter that makes every value distinct."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    a = np.zeros((SIZE, SIZE))
    for _ in range(4):
        cy, cx, width = rng.uniform(0, SIZE), rng.uniform(0, SIZE), rng.uniform(2, 8)
        a += rng.uniform(0.3, 1.0) * (rng.choice([-1, 1]) if signed else 1) * \
            np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width ** 2))
    a += rng.permutation(SIZE * SIZE).reshape(SIZE, SIZE) * 1e-7
    assert len(np.unique(a)) == a.size
    return a


@pytest.mark.parametrize("signed", [False, True], ids=["positive", "signed"])
def test_agrees_with_quantus_on_tie_free_maps(signed: bool) -> None:
    rng = np.random.default_rng(3 + signed)
    count, classes = 5, 6
    maps = np.stack([_tie_free_map(rng, signed) for _ in range(count)])
    labels = np.stack([_partition(rng, classes) for _ in range(count)])
    membership = np.eye(classes, dtype=bool)
    options = MetricOptions(k=QUANTUS["top_k_intersection"][1]["k"])
    ours = np.stack([score_map(maps[i], labels[i], membership, options) for i in range(count)])  # (B, R, M)
    compared = 0
    for metric in QUANTUS:
        column = METRICS.index(metric)
        for region in range(classes):
            inside = labels == region
            assert inside.reshape(count, -1).any(axis=1).all()  # empty regions: see the defect tests
            theirs = _quantus(metric, maps, inside)
            np.testing.assert_allclose(ours[:, region, column], theirs, rtol=1e-6, atol=1e-9,
                                       err_msg=f"{metric}, region {region}")
            compared += count
    assert compared == count * classes * len(QUANTUS)
    # the maps are not degenerate: the pointing game has hits and misses, AUC spans well past chance
    assert 0 < ours[:, :, METRICS.index("pointing_game")].mean() < 1
    assert np.ptp(ours[:, :, METRICS.index("auc")]) > 0.3


def test_auc_with_ties_agrees_with_sklearn() -> None:
    rng = np.random.default_rng(11)
    for trial in range(6):
        a = rng.integers(0, 4, (SIZE, SIZE)).astype(np.float32)  # four values: ties everywhere
        if trial % 2:
            a = np.maximum(a - 2, 0)  # ReLU'd: most pixels exactly 0
        labels = _partition(rng, 5)
        ours = score_map(a, labels, np.eye(5, dtype=bool), MetricOptions(metrics=("auc",)))[:, 0]
        expected = [roc_auc_score((labels == r).reshape(-1), a.reshape(-1)) for r in range(5)]
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def _one_peak_map() -> np.ndarray:
    """A ReLU'd map: one positive pixel in the middle, every other pixel exactly 0 (4095 tied values)."""
    a = np.zeros((64, 64))
    a[32, 32] = 1.0
    return a


def test_quantus_breaks_ties_by_sort_order_ours_in_expectation() -> None:
    """Quantus' TopKIntersection and RelevanceRankAccuracy take tied pixels in ``np.argsort`` order:
    a band of 8 rows at the top of the image scores near 1, the same band at the bottom near 0.
    Ours takes every order of the ties equally: both bands (n pixels of P) score (n - 1) / (P - 1)."""
    a = _one_peak_map()
    top = np.zeros(a.shape, bool)
    top[:8] = True
    bottom = top[::-1].copy()
    n, pixels = int(top.sum()), a.size
    for metric, extra in (("top_k_intersection", {"k": n}), ("relevance_rank_accuracy", {})):
        theirs = _quantus(metric, np.stack([a, a]), np.stack([top, bottom]), **extra)
        assert theirs[0] > 0.8 and theirs[1] < 0.2, (metric, theirs)  # the defect: position decides
        atoms = top * 1 + bottom * 2
        ours = score_map(a, atoms, np.eye(3, dtype=bool)[1:], MetricOptions(metrics=(metric,), k=n))[:, 0]
        np.testing.assert_allclose(ours, [(n - 1) / (pixels - 1)] * 2, rtol=0, atol=1e-12)


def test_quantus_pointing_game_scores_an_empty_region_as_a_hit() -> None:
    """It writes NaN into a bool array, which becomes True; ours is NaN (undefined)."""
    a = _one_peak_map()
    empty = np.zeros(a.shape, bool)
    elsewhere = np.zeros(a.shape, bool)
    elsewhere[:4] = True  # not at the maximum: a miss for both
    theirs = _quantus("pointing_game", np.stack([a, a]), np.stack([empty, elsewhere]))
    assert theirs.tolist() == [1.0, 0.0]
    ours = score_map(a, elsewhere * 1 + 0, np.array([[False, False], [False, True]]),
                     MetricOptions(metrics=("pointing_game",)))[:, 0]  # region 0 has no atom: empty
    assert np.isnan(ours[0]) and ours[1] == 0.0


def test_quantus_weighted_pointing_game_crashes() -> None:
    a = _one_peak_map()
    hit = np.zeros(a.shape, bool)
    hit[30:35, 30:35] = True
    with pytest.raises(TypeError, match="boolean array indexing"):
        _quantus("pointing_game", np.stack([a, a]), np.stack([hit, hit]), weighted=True)


def test_quantus_weighted_attribution_localisation_depends_on_batch_size() -> None:
    """Its area ratio divides by ``x_batch[2:].size``: (batch - 2) inputs, not one; inf below 3."""
    rng = np.random.default_rng(5)
    maps = np.stack([_tie_free_map(rng, False) for _ in range(4)])
    regions = np.stack([_partition(rng, 3) == 0 for _ in range(4)])
    by_batch = {size: _quantus("attribution_localisation", maps, regions, batch_size=size, weighted=True)
                for size in (2, 3, 4)}
    assert np.isinf(by_batch[2]).all()
    np.testing.assert_allclose(by_batch[3][:3], 2 * by_batch[4][:3], rtol=1e-9)  # 1 vs 2 inputs counted
    unweighted = _quantus("attribution_localisation", maps, regions)
    ours = np.array([score_map(m, r * 1, np.array([[False, True]]))[0, METRICS.index("attribution_localisation")]
                     for m, r in zip(maps, regions)])
    np.testing.assert_allclose(ours, unweighted, rtol=1e-6)  # unweighted, the two agree whatever the batch


def test_unpainted_masks_as_region_source(built_store: Path, synthetic_source: Path) -> None:
    """Scored against each class's own mask (overlaps kept), an occluded class has a region other
    than its painted label; both match sums over the source PNGs and the label, computed here."""
    from celebamask import open_store
    from celebamask.score.run import score_maps

    store = open_store(built_store)
    count = 8
    rng = np.random.default_rng(2)
    maps = rng.random((count, 512, 512)).astype(np.float32)
    ids = np.asarray(store.sample_ids[:count])
    metrics = ("relevance_mass", "pointing_game")
    masks = score_maps(store, maps, sample_ids=ids, region_source="masks", metrics=metrics, batch_size=3)
    label = score_maps(store, maps, sample_ids=ids, region_source="label", metrics=metrics)
    assert masks.provenance["region_source"] == "masks" and label.provenance["region_source"] == "label"
    names = list(masks.regions.names)
    differing = 0
    for i, sample in enumerate(ids.tolist()):
        a = maps[i].astype(np.float64)
        painted = np.asarray(store.labels[i])
        for name in ("skin", "hair", "eye_g", "l_eye", "nose", "hat", "cloth"):
            path = mask_path(synthetic_source, int(sample), name)
            own = np.array(Image.open(path).convert("RGB"))[:, :, 0] > 0 if path.exists() else np.zeros(a.shape, bool)
            on_label = painted == store.class_id(name)
            r_masks, r_label = names.index(name), list(label.regions.names).index(name)
            assert masks.area[i, r_masks] == own.sum() and label.area[i, r_label] == on_label.sum()
            for result, r, region in ((masks, r_masks, own), (label, r_label, on_label)):
                mass = result.values[i, r, 0]
                if region.any():
                    assert mass == pytest.approx(a[region].sum() / a.sum(), rel=1e-9)
                    assert result.values[i, r, 1] == float(region[a == a.max()].any())
                else:
                    assert np.isnan(mass)
            differing += int(own.sum() != on_label.sum())
    assert differing > 0  # some class was occluded by a later one: the two sources really differ
