"""A sample's scores depend on its map and its label only: not on the batch size, the number of
jobs, where the maps live, the order the maps come in, or which other rows are scored with it.

Every run is also checked against ``score_map`` called directly on the store's label row and the
map (read here with plain zarr indexing), so a batch that pairs a map with the wrong row fails
even when every run makes the same mistake.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from celebamask import open_store
from celebamask.score.metrics import MetricOptions, score_map
from celebamask.score.regions import LabelAtoms, region_set
from celebamask.score.run import ScoreResult, score_maps

GRID = 512


def _maps(count: int, seed: int = 0) -> np.ndarray:
    """Half tie-free (random), half Grad-CAM-like (a few levels, most pixels exactly 0)."""
    rng = np.random.default_rng(seed)
    maps = rng.random((count, GRID, GRID), dtype=np.float32)
    maps[1::2] = np.maximum(np.round(maps[1::2] * 4) - 2, 0)
    return maps


def _direct(store, maps: np.ndarray, map_rows, store_rows) -> np.ndarray:
    """(samples, regions, metrics) by score_map on each label row read here, not through score_maps."""
    regions = region_set(store, "classes")
    membership = LabelAtoms(store, regions).membership
    labels = np.asarray(store.labels.get_orthogonal_selection((np.asarray(store_rows),)))
    return np.stack([score_map(maps[m], labels[i], membership, MetricOptions())
                     for i, m in enumerate(map_rows)])


def _same(result: ScoreResult, reference: ScoreResult, what: str) -> None:
    np.testing.assert_array_equal(result.rows, reference.rows, err_msg=what)
    np.testing.assert_array_equal(result.sample_ids, reference.sample_ids, err_msg=what)
    np.testing.assert_array_equal(result.values, reference.values, err_msg=what)  # bit for bit, NaN where NaN
    np.testing.assert_array_equal(result.area, reference.area, err_msg=what)


@pytest.fixture(scope="module")
def scored(built_store: Path, tmp_path_factory: pytest.TempPathFactory):
    store = open_store(built_store)
    maps = _maps(len(store))
    folder = tmp_path_factory.mktemp("maps")
    np.save(folder / "maps.npy", maps)
    zarr.open_array(folder / "maps.zarr", mode="w", shape=maps.shape, chunks=(5, GRID, GRID),
                    dtype=maps.dtype)[...] = maps
    reference = score_maps(store, maps, batch_size=len(store))
    return store, maps, folder, reference


def test_the_reference_run_equals_score_map_on_each_row(scored) -> None:
    store, maps, _, reference = scored
    rows = np.arange(len(store))
    np.testing.assert_array_equal(reference.values, _direct(store, maps, rows, rows))
    assert np.isnan(reference.values).any() and not np.isnan(reference.values).all()  # empty regions exist


@pytest.mark.parametrize("where", ["memory", "npy", "zarr"])
def test_batch_size_and_jobs_change_nothing(scored, where: str) -> None:
    store, maps, folder, reference = scored
    source = {"memory": maps, "npy": folder / "maps.npy", "zarr": folder / "maps.zarr"}[where]
    runs = [(1, 1), (7, 1), (len(store), 2), (7, 2)] + ([(1, 2)] if where == "npy" else [])
    for batch, jobs in runs:
        _same(score_maps(store, source, batch_size=batch, jobs=jobs), reference, f"{where} batch {batch} jobs {jobs}")


def test_map_order_does_not_change_a_samples_score(scored) -> None:
    store, maps, folder, reference = scored
    ids = np.asarray(store.sample_ids[:])
    order = np.random.default_rng(4).permutation(len(store))
    for batch, jobs in ((5, 1), (3, 2)):
        shuffled = score_maps(store, maps[order], sample_ids=ids[order], batch_size=batch, jobs=jobs)
        _same(shuffled, reference, f"shuffled maps, batch {batch} jobs {jobs}")


def test_row_selection_does_not_change_a_samples_score(scored) -> None:
    store, maps, _, reference = scored
    chosen = np.array([17, 1, 5, 6, 7, 8, 23])  # unsorted; a run across a shard edge (size 8) and strays
    kept = np.sort(chosen)
    for batch, jobs in ((1, 1), (3, 1), (len(chosen), 2)):
        subset = score_maps(store, maps, rows=chosen, batch_size=batch, jobs=jobs)
        np.testing.assert_array_equal(subset.rows, kept)
        np.testing.assert_array_equal(subset.values, reference.values[kept], err_msg=f"batch {batch} jobs {jobs}")
        np.testing.assert_array_equal(subset.area, reference.area[kept])


def test_maps_for_some_samples_only(scored) -> None:
    """Maps matched by sample id, fewer than the store's rows, in reverse order."""
    store, maps, _, reference = scored
    ids = np.asarray(store.sample_ids[:])
    rows = np.array([20, 9, 8, 2])
    result = score_maps(store, maps[rows], sample_ids=ids[rows], batch_size=3)
    np.testing.assert_array_equal(result.rows, np.sort(rows))
    np.testing.assert_array_equal(result.values, reference.values[np.sort(rows)])


def test_two_maps_of_one_sample_each_get_their_own_score(scored) -> None:
    """Two models' maps for sample 3 beside one for sample 5: rows 3, 3, 5 (not the run 3, 4, 5)."""
    store, maps, _, _ = scored
    ids = np.asarray(store.sample_ids[:])
    extra = _maps(3, seed=9)
    for batch in (1, 3):
        result = score_maps(store, extra, sample_ids=ids[[3, 3, 5]], batch_size=batch)
        np.testing.assert_array_equal(result.rows, [3, 3, 5])
        np.testing.assert_array_equal(result.values, _direct(store, extra, [0, 1, 2], [3, 3, 5]))


def test_masks_source_is_independent_of_batches_and_jobs(scored) -> None:
    store, maps, folder, _ = scored
    metrics = ("relevance_mass", "top_k_intersection", "auc")
    one = score_maps(store, maps, region_source="masks", metrics=metrics, batch_size=len(store))
    for batch, jobs in ((1, 1), (7, 2)):
        _same(score_maps(store, folder / "maps.npy", region_source="masks", metrics=metrics, batch_size=batch,
                         jobs=jobs), one, f"masks batch {batch} jobs {jobs}")
