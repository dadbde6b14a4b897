"""The scoring metrics against brute force: every order of tied values enumerated, pairs counted."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from celebamask.errors import CelebaMaskError
from celebamask.score.metrics import METRICS, MetricOptions, score_map


def _tie_orders(a: np.ndarray) -> list[list[int]]:
    """Every descending order of the pixels: the product of the permutations inside each tie group."""
    groups = [list(np.flatnonzero(a == value)) for value in sorted(set(a.tolist()), reverse=True)]
    orders = []
    for parts in itertools.product(*(itertools.permutations(group) for group in groups)):
        orders.append([pixel for part in parts for pixel in part])
    return orders


def _brute(a: np.ndarray, region: np.ndarray, k: int) -> dict[str, float]:
    a, region = a.reshape(-1).astype(float), region.reshape(-1)
    n, pixels = int(region.sum()), a.size
    if n == 0:
        return dict.fromkeys(METRICS, float("nan"))
    orders = _tie_orders(a)
    top = lambda m: np.mean([sum(region[p] for p in order[:m]) for order in orders])  # noqa: E731
    pos, neg = a[region], a[~region]
    auc = float("nan") if n == pixels else (
        sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg)))
    ratio = lambda part, whole: part / whole if whole != 0 else float("nan")  # noqa: E731
    return {
        "pointing_game": float(region[a == a.max()].any()),
        "relevance_mass": ratio(a[region].sum(), a.sum()),
        "energy_pointing_game": ratio(np.maximum(a, 0)[region].sum(), np.maximum(a, 0).sum()),
        "attribution_localisation": ratio(np.abs(a)[region].sum(), np.abs(a).sum()),
        "top_k_intersection": top(min(k, pixels)) / min(k, pixels),
        "relevance_rank_accuracy": top(n) / n,
        "auc": auc,
    }


@pytest.mark.parametrize("seed", range(12))
def test_every_metric_equals_brute_force_over_tie_orders(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(-1, 3, (3, 3)).astype(np.float32)  # few values: many ties
    atoms = rng.integers(0, 3, (3, 3))
    atoms.flat[0] = 3 if seed % 2 else atoms.flat[0]  # sometimes a one-pixel atom
    membership = np.zeros((6, 4), bool)
    membership[np.arange(4), np.arange(4)] = True  # each atom alone (atom 3 may be empty)
    membership[4, [0, 2]] = True  # a union
    membership[5, :] = True  # everything: AUC undefined
    k = int(rng.integers(1, 9))
    scores = score_map(a, atoms, membership, MetricOptions(k=k))
    for row, region_atoms in enumerate(membership):
        expected = _brute(a, np.isin(atoms, np.flatnonzero(region_atoms)), k)
        for column, name in enumerate(METRICS):
            np.testing.assert_allclose(scores[row, column], expected[name], rtol=0, atol=1e-9,
                                       err_msg=f"{name}, region {row}, seed {seed}")


def test_tolerance_pointing_game_by_hand() -> None:
    a = np.zeros((9, 9))
    a[4, 4] = 1.0
    atoms = np.zeros((9, 9), int)
    atoms[4, 7] = 1  # 3 px from the maximum
    atoms[0, 0] = 2  # sqrt(32) ≈ 5.66 px away
    membership = np.eye(3, dtype=bool)
    for tolerance, hits in ((0, [1, 0, 0]), (2.9, [1, 0, 0]), (3, [1, 1, 0]), (5.6, [1, 1, 0]), (5.7, [1, 1, 1]),
                            (6, [1, 1, 1])):
        scores = score_map(a, atoms, membership, MetricOptions(metrics=("pointing_game",), tolerance=tolerance))
        assert scores[:, 0].tolist() == hits, tolerance


def test_score_maps_over_a_store_is_independent_of_batches_and_jobs(built_store, tmp_path) -> None:
    from celebamask import open_store
    from celebamask.score.run import score_maps

    store = open_store(built_store)
    count = min(6, len(store))
    rng = np.random.default_rng(0)
    maps = rng.random((count, 64, 64)).astype(np.float32)  # another size: resized to the label grid
    path = tmp_path / "maps.npy"
    np.save(path, maps)
    ids = np.asarray(store.sample_ids[:count])
    one = score_maps(store, path, sample_ids=ids, batch_size=count)
    other = score_maps(store, path, sample_ids=ids, batch_size=2, jobs=2)
    with pytest.raises(CelebaMaskError, match="6 maps for a store of"):
        score_maps(store, path)  # a wrong N is one line naming the maps file
    np.testing.assert_array_equal(one.values, other.values)
    labels = store.labels[:count]
    names = list(one.regions.names)
    mass = one.metrics.index("relevance_mass")
    for i in range(count):  # recompute the region mass from the resized map and the label, directly
        assert one.values.shape[1:] == (len(names), len(one.metrics))
        present = [store.classes[j].name for j in range(len(store.classes))]
        for name in present[:3]:
            class_id = next(c.id for c in store.classes if c.name == name)
            area = int((labels[i] == class_id).sum())
            r = names.index(name)
            assert one.area[i, r] == area
            assert np.isnan(one.values[i, r, mass]) == (area == 0)
    out = tmp_path / "scores.csv"
    one.write(out)
    lines = out.read_text().splitlines()
    assert lines[0] == "sample_id,region,metric,value"
    assert len(lines) == 1 + count * len(names) * len(one.metrics)


def test_score_command_writes_the_long_csv_and_refuses_a_wrong_count(built_store, tmp_path) -> None:
    from click.testing import CliRunner

    from celebamask import open_store
    from celebamask.cli import main

    count = len(open_store(built_store))
    maps = tmp_path / "maps.npy"
    np.save(maps, np.random.default_rng(1).random((count, 2, 32, 32)).astype(np.float32))
    out = tmp_path / "s.csv"
    result = CliRunner().invoke(main, ["score", str(built_store), str(maps), "--out", str(out), "--quiet",
                                       "--metrics", "auc,pointing_game", "--reduce", "abs-sum"])
    assert result.exit_code == 0, result.output
    assert "skin" in result.output and out.read_text().startswith("sample_id,region,metric,value\n")
    np.save(maps, np.zeros((count + 1, 8, 8), np.float32))
    wrong = CliRunner().invoke(main, ["score", str(built_store), str(maps), "--quiet"])
    assert wrong.exit_code == 1 and f"error: {maps}:" in wrong.output


def test_float32_sorts_as_float64_and_minus_zero_ties_plus_zero() -> None:
    """A float32 map is sorted as integer keys (value bits and atom): the same scores as the same
    values in float64 (sorted by argsort), -0.0 tied with +0.0, and atoms past 8 bits."""
    rng = np.random.default_rng(21)
    levels = np.array([-2.5, -1.0, -0.0, 0.0, 0.25, 3.0], dtype=np.float32)
    for count_atoms in (3, 256, 300):  # 2, 8 and 9 bits of atom in the key
        a = levels[rng.integers(0, len(levels), (40, 40))]
        atoms = rng.integers(0, count_atoms, (40, 40))
        membership = rng.random((7, count_atoms)) < 0.3
        membership[0] = False
        membership[0, atoms[0, 0]] = True  # one atom alone
        as32 = score_map(a, atoms, membership, MetricOptions(k=77))
        as64 = score_map(a.astype(np.float64), atoms, membership, MetricOptions(k=77))
        np.testing.assert_array_equal(as32, as64)
        zeros = np.where(a == 0, np.float32(0.0), a)  # every -0.0 made +0.0: nothing may change
        np.testing.assert_array_equal(score_map(zeros, atoms, membership, MetricOptions(k=77)), as32)


def test_tie_free_float32_map_against_direct_counts() -> None:
    """Distinct float32 values: top-k and own-top-n are plain counts of a sorted order, AUC sklearn's."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(22)
    a = (rng.permutation(64 * 64) / 4096).astype(np.float32).reshape(64, 64) - 0.3  # distinct, signed
    atoms = rng.integers(0, 5, a.shape)
    membership = np.eye(5, dtype=bool)
    k = 300
    scores = score_map(a, atoms, membership, MetricOptions(k=k))
    descending = np.argsort(-a.reshape(-1))
    for r in range(5):
        region = (atoms == r).reshape(-1)
        n = int(region.sum())
        assert scores[r, METRICS.index("top_k_intersection")] == pytest.approx(region[descending[:k]].sum() / k, abs=1e-12)
        assert scores[r, METRICS.index("relevance_rank_accuracy")] == pytest.approx(region[descending[:n]].sum() / n,
                                                                                    abs=1e-12)
        assert scores[r, METRICS.index("auc")] == pytest.approx(roc_auc_score(region, a.reshape(-1)), abs=1e-12)
        assert scores[r, METRICS.index("pointing_game")] == float(region[descending[0]])
