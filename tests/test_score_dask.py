"""`celebamask score` on a dask cluster (as `build` has): the same scores as joblib's processes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from celebamask import open_store
from celebamask.cli import main
from celebamask.score.metrics import MetricOptions, score_map
from celebamask.score.regions import LabelAtoms, region_set


def _read_csv(path: Path) -> dict[tuple[int, str, str], float]:
    with open(path, newline="") as handle:
        return {(int(r["sample_id"]), r["region"], r["metric"]): float(r["value"] or "nan") for r in csv.DictReader(handle)}


def test_score_on_a_dask_local_cluster_equals_direct_scores(built_store: Path, tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed", reason="the [dask] extra is not installed")
    store = open_store(built_store)
    maps = np.random.default_rng(5).random((len(store), *store.labels.shape[1:]), dtype=np.float32)
    np.save(tmp_path / "maps.npy", maps)
    out = tmp_path / "dask.csv"
    result = CliRunner().invoke(main, ["score", str(built_store), str(tmp_path / "maps.npy"), "--dask-local", "2",
                                       "--batch-size", "5", "--metrics", "auc,relevance_mass", "--out", str(out),
                                       "--quiet", "--resamples", "10"])
    assert result.exit_code == 0, result.output
    scores = _read_csv(out)
    regions = region_set(store, "classes")
    membership = LabelAtoms(store, regions).membership
    ids = np.asarray(store.group["sample_id"][:])
    options = MetricOptions(("auc", "relevance_mass"))
    for row in range(len(store)):
        direct = score_map(maps[row], np.asarray(store.labels[row]), membership, options)
        got = np.array([[scores[(int(ids[row]), name, metric)] for metric in options.metrics] for name in regions.names])
        np.testing.assert_allclose(got, direct, rtol=0, atol=1e-12, equal_nan=True)


def test_score_dask_backend_without_a_cluster_is_one_line(built_store: Path, tmp_path: Path) -> None:
    store = open_store(built_store)
    np.save(tmp_path / "maps.npy", np.ones((len(store), 8, 8), np.float32))
    result = CliRunner().invoke(main, ["score", str(built_store), str(tmp_path / "maps.npy"), "--backend", "dask",
                                       "--quiet"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: --backend dask: needs")
