"""Score a whole store: batches of (store row, map row) pairs, each read and scored by one task,
on joblib workers (all cores) or a dask cluster; memory is bounded by a batch per worker."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from celebamask.errors import CelebaMaskError
from celebamask.score.maps import MapSource, open_maps
from celebamask.score.metrics import DEFAULT_K, DEFAULT_TOLERANCE, METRICS, MetricOptions, score_map_and_area
from celebamask.score.regions import RegionSet, atom_source, region_array, region_set

DEFAULT_BATCH = 32


@dataclass
class ScoreResult:
    """``values[sample, region, metric]`` (NaN where undefined) and ``area[sample, region]`` (pixels)."""

    values: np.ndarray
    area: np.ndarray
    rows: np.ndarray
    sample_ids: np.ndarray
    regions: RegionSet
    metrics: tuple[str, ...]
    provenance: dict[str, Any] = field(default_factory=dict)

    def tidy(self) -> Iterator[tuple[int, str, str, float]]:
        """Rows ``(sample_id, region, metric, value)``, sample-major."""
        for i, sample in enumerate(self.sample_ids.tolist()):
            for r, region in enumerate(self.regions.names):
                for m, metric in enumerate(self.metrics):
                    yield sample, region, metric, float(self.values[i, r, m])

    def to_xarray(self) -> Any:
        """An xarray Dataset (sample × region × metric) with ``score`` and ``area`` (needs xarray)."""
        import xarray as xr

        return xr.Dataset(
            {"score": (("sample", "region", "metric"), self.values), "area": (("sample", "region"), self.area)},
            coords={"sample_id": ("sample", self.sample_ids), "row": ("sample", self.rows),
                    "region": list(self.regions.names), "metric": list(self.metrics)},
            attrs={"provenance": _json_safe(self.provenance)},
        )

    def write(self, path: str | Path) -> None:
        """By extension: ``.csv`` (``sample_id,region,metric,value``; NaN as ``nan``), ``.json``, ``.zarr``."""
        target = os.fspath(path)
        if target.endswith(".csv"):
            with open(target, "w", encoding="utf-8", newline="") as out:
                out.write("sample_id,region,metric,value\n")
                out.writelines(f"{s},{r},{m},{v!r}\n" for s, r, m, v in self.tidy())
        elif target.endswith(".json"):
            import json

            rows = [{"sample_id": s, "region": r, "metric": m, "value": None if v != v else v} for s, r, m, v in self.tidy()]
            Path(target).write_text(json.dumps({"provenance": _json_safe(self.provenance), "scores": rows}))
        elif target.endswith(".zarr"):
            import zarr

            group = zarr.open_group(target, mode="w", attributes={"provenance": _json_safe(self.provenance)})
            for name, data, dims in (("score", self.values, ("sample", "region", "metric")),
                                     ("area", self.area, ("sample", "region")),
                                     ("sample_id", self.sample_ids, ("sample",))):
                group.create_array(name, data=data, dimension_names=dims)
            group.attrs.update({"regions": list(self.regions.names), "metrics": list(self.metrics)})
        else:
            raise CelebaMaskError(target, "output must end in .csv, .json or .zarr")


def _json_safe(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def score_maps(
    store: Any,
    maps: Any,
    *,
    regions: str | RegionSet = "classes",
    region_source: str = "label",
    metrics: tuple[str, ...] | list[str] = METRICS,
    tolerance: float = DEFAULT_TOLERANCE,
    k: int = DEFAULT_K,
    rows: np.ndarray | None = None,
    sample_ids: Any = None,
    reduce: str = "sum",
    batch_size: int = DEFAULT_BATCH,
    jobs: int = 1,
    backend: str = "local",
    scheduler: str | None = None,
    dask_local: int | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScoreResult:
    """Score every map against its store row's regions.

    ``store``: an open store or its path/URL. ``maps``: see :func:`celebamask.score.maps.open_maps`;
    map row i is store row i unless ``sample_ids`` (or a ``sample_id`` array beside the maps)
    names each map's sample. ``rows``: only these store rows (e.g. ``store.split("test")``).
    """
    from celebamask.read.reader import open_store

    opened = store if hasattr(store, "labels") else open_store(store, storage_options=storage_options)
    source = open_maps(maps, sample_ids=sample_ids, reduce=reduce, storage_options=storage_options)
    chosen = regions if isinstance(regions, RegionSet) else region_set(opened, regions, source=region_source)
    options = MetricOptions(tuple(metrics), float(tolerance), int(k))
    store_rows, map_rows = _pairs(opened, source, rows)
    grid = tuple(int(s) for s in opened.labels.shape[1:])
    batches = [(store_rows[i:i + batch_size], map_rows[i:i + batch_size]) for i in range(0, len(store_rows), batch_size)]
    in_memory = not isinstance(source.array, np.memmap) and isinstance(source.array, np.ndarray)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    task = _ScoreTask(opened.location, dict(getattr(opened, "storage_options", {}) or storage_options or {}),
                      chosen, options, None if in_memory else source)
    if jobs == 1 and backend == "local":
        task.cache_store(opened)
        for s_rows, m_rows in batches:
            parts.append(task(s_rows, _local_maps(source, m_rows, grid) if in_memory else m_rows))
            if progress:
                progress(sum(len(p[0]) for p in parts), len(store_rows))
    else:
        from joblib import Parallel, delayed

        with _parallel(backend, scheduler, dask_local):
            runner = Parallel(n_jobs=jobs if backend == "local" else -1, return_as="generator")
            calls = (delayed(task)(s, _local_maps(source, m, grid) if in_memory else m) for s, m in batches)
            for part in runner(calls):
                parts.append(part)
                if progress:
                    progress(sum(len(p[0]) for p in parts), len(store_rows))
    values = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, len(chosen.names), len(options.metrics)))
    area = np.concatenate([p[1] for p in parts]) if parts else np.empty((0, len(chosen.names)), dtype=np.int64)
    provenance = {
        "store": opened.location, "maps": source.describe(grid), "region_source": chosen.source,
        "regions": chosen.describe()["regions"], "metrics": list(options.metrics),
        "grid": list(grid), "tolerance": options.tolerance, "k": options.k, "ties": "in expectation (exact)",
    }
    ids = opened._sample_id_values()[store_rows] if len(store_rows) else np.empty(0, dtype=np.int64)
    return ScoreResult(values, area, store_rows, ids, chosen, options.metrics, provenance)


def _local_maps(source: MapSource, map_rows: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    return source.read(map_rows, grid)  # type: ignore[arg-type]


def _pairs(store: Any, source: MapSource, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(store row, map row) for every map to score, in store-row order."""
    count = len(store)
    if source.sample_ids is not None:
        if len(source.sample_ids) != len(source):
            raise CelebaMaskError(source.location, f"{len(source)} maps but {len(source.sample_ids)} sample ids")
        ids = store._sample_id_values()
        where = {int(s): r for r, s in enumerate(ids.tolist())}
        missing = [int(s) for s in source.sample_ids.tolist() if int(s) not in where]
        if missing:
            raise CelebaMaskError(source.location, f"sample id {missing[0]} is not in the store")
        store_rows = np.array([where[int(s)] for s in source.sample_ids.tolist()], dtype=np.int64)
        map_rows = np.arange(len(source), dtype=np.int64)
        order = np.argsort(store_rows, kind="stable")
        store_rows, map_rows = store_rows[order], map_rows[order]
    else:
        if len(source) != count:
            raise CelebaMaskError(source.location, f"{len(source)} maps for a store of {count} samples "
                                                   "(give sample ids to score a subset)")
        store_rows = map_rows = np.arange(count, dtype=np.int64)
    if rows is not None:
        keep = np.isin(store_rows, np.asarray(rows))
        store_rows, map_rows = store_rows[keep], map_rows[keep]
    return store_rows, map_rows


class _ScoreTask:
    """Scores one batch: reads its label (or mask) rows and its maps. Picklable; opens the store once per process."""

    _stores: dict[str, Any] = {}

    def __init__(self, location: str, storage_options: dict[str, Any], regions: RegionSet,
                 options: MetricOptions, maps: MapSource | None) -> None:
        self.location, self.storage_options = location, storage_options
        self.regions, self.options = regions, options
        self.maps = None if maps is None else (maps.location, maps.reduce, maps.sample_ids) \
            if isinstance(maps.array, np.memmap) else maps

    def cache_store(self, store: Any) -> None:
        _ScoreTask._stores[self.location] = store

    def _store(self) -> Any:
        if self.location not in _ScoreTask._stores:
            from celebamask.read.reader import open_store

            _ScoreTask._stores[self.location] = open_store(self.location, storage_options=self.storage_options)
        return _ScoreTask._stores[self.location]

    def _maps(self) -> MapSource:
        if isinstance(self.maps, tuple):  # a .npy: each process maps the file itself
            self.maps = open_maps(self.maps[0], sample_ids=self.maps[2], reduce=self.maps[1])
        return self.maps  # type: ignore[return-value]

    def __call__(self, store_rows: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        store = self._store()
        grid = tuple(int(s) for s in store.labels.shape[1:])
        if maps.ndim == 1:  # map rows to read here
            maps = self._maps().read(maps, grid)  # type: ignore[arg-type]
        regions = _read_region_rows(store, self.regions, store_rows)
        atoms_of = atom_source(store, self.regions)
        values = np.empty((len(store_rows), len(self.regions.names), len(self.options.metrics)))
        area = np.empty((len(store_rows), len(self.regions.names)), dtype=np.int64)
        for i in range(len(store_rows)):
            atoms, membership = atoms_of(regions[i])
            values[i], area[i] = score_map_and_area(maps[i], atoms, membership, self.options)
        return values, area


def _read_region_rows(store: Any, regions: RegionSet, rows: np.ndarray) -> np.ndarray:
    array = region_array(store, regions)
    if regions.source == "label" and len(rows) and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
        return _label_run(store, int(rows[0]), int(rows[0]) + len(rows))  # a run; not 3, 3, 5 (two maps of one sample)
    if regions.source == "label":
        return np.stack([store._read_row(array, int(r)) for r in rows])
    reader = _row_reader(store, array)
    for row in rows:
        reader.ensure_present(int(row), int(row) + 1)  # a lost shard is an error, not empty masks
    return np.asarray(array.get_orthogonal_selection((np.asarray(rows),)))


def _label_run(store: Any, start: int, stop: int) -> np.ndarray:
    return _row_reader(store, store.labels).rows(start, stop)


def _row_reader(store: Any, array: Any) -> Any:
    """The store's cached reader of ``array`` (its shard indexes and checked shards are kept)."""
    from celebamask.store.shards import RowReader

    readers = store.__dict__.setdefault("_row_readers", {})
    if array.path not in readers:
        readers[array.path] = RowReader(array, must_exist=store.complete)
    return readers[array.path]


@contextlib.contextmanager
def _parallel(backend: str, scheduler: str | None, dask_local: int | None) -> Iterator[None]:
    """joblib's own processes, or a dask.distributed cluster (``scheduler`` or a LocalCluster of ``dask_local``)."""
    if backend == "local":
        yield
        return
    if backend != "dask":
        raise ValueError(f"backend must be 'local' or 'dask', not {backend!r}")
    try:
        from dask.distributed import Client, LocalCluster
        from joblib import parallel_config
    except ImportError as exc:
        raise CelebaMaskError("--backend dask", "needs the [dask] extra (dask.distributed)") from exc
    if not (scheduler or dask_local):
        raise CelebaMaskError("--backend dask", "needs --scheduler ADDRESS or --dask-local N")
    cluster = LocalCluster(n_workers=dask_local, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR) if dask_local else None
    client = Client(cluster) if cluster is not None else Client(scheduler)
    try:
        with parallel_config(backend="dask"):
            yield
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
