"""The scoring row of ``make bench``: ``celebamask.score_maps`` against Quantus 0.6.0, same run.

Ours: every one of the seven metrics for every class region of the store (19 on the default
table), over one 512² map per sample, read from a ``.npy`` as a user's maps would be, on
``jobs`` cores. Quantus: the six metrics it has, one call per (metric, region) as its API
requires, on a subset of maps (it takes seconds per map), one map per process on the same cores.
Runs alternate (ours, Quantus, ours, …); medians. The ratio compares seconds per map: ours doing
seven metrics, Quantus six, so it understates our lead a little. Quantus is a test-only
dependency (LGPL; an oracle, nothing copied): without it only our row is printed.

Three families of maps, row by row: smooth (tie-free in float64, a few float32 ties), signed
smooth, and Grad-CAM-like (a coarse ReLU'd map upsampled: large areas exactly 0).

``python -m bench.score`` runs this row alone (building a store once in ``bench/work``).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

from celebamask import open_store
from celebamask.score.maps import resize_bilinear
from celebamask.score.metrics import METRICS
from celebamask.score.run import score_maps

HERE = Path(__file__).resolve().parent
QUANTUS_METRICS = ("pointing_game", "relevance_mass", "attribution_localisation", "top_k_intersection",
                   "relevance_rank_accuracy", "auc")
GRID = 512


def ensure_maps(path: Path, count: int) -> Path:
    """``count`` maps of 512² float32 in a ``.npy``, generated once (seeded) and reused."""
    marker = path.with_suffix(".complete")
    if marker.exists():
        return path
    print(f"generating {count} attribution maps in {path} (once; reused by later runs)", flush=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, GRID, GRID))
    rng = np.random.default_rng(0)
    for i in range(count):
        out[i] = _map(rng, i % 3)
    out.flush()
    del out
    marker.write_text(f"{count}\n")
    return path


def _map(rng: np.random.Generator, family: int) -> np.ndarray:
    if family == 2:  # Grad-CAM-like: a 16² layer, ReLU'd, upsampled: about half the pixels exactly 0
        return np.maximum(resize_bilinear(rng.normal(size=(16, 16)), (GRID, GRID)), 0).astype(np.float32)
    smooth = resize_bilinear(rng.normal(size=(8, 8)), (GRID, GRID)) + rng.normal(scale=1e-3, size=(GRID, GRID))
    return (smooth if family == 1 else smooth - smooth.min()).astype(np.float32)


def _quantus_one(task: tuple[str, str, int]) -> np.ndarray:
    """Quantus on one map: (regions, 6) for every class region, one call per metric and region."""
    import quantus

    store_path, maps_path, row = task
    store = open_store(store_path)
    label = np.asarray(store.labels[row])
    a = np.array(np.load(maps_path, mmap_mode="r")[row], dtype=np.float64)[None, None]  # not a memmap: Quantus wants an ndarray
    metrics = {"pointing_game": quantus.PointingGame, "relevance_mass": quantus.RelevanceMassAccuracy,
               "attribution_localisation": quantus.AttributionLocalisation, "top_k_intersection": quantus.TopKIntersection,
               "relevance_rank_accuracy": quantus.RelevanceRankAccuracy, "auc": quantus.AUC}
    classes = sorted(store.classes, key=lambda c: c.id)
    out = np.full((len(classes), len(QUANTUS_METRICS)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r, info in enumerate(classes):
            region = (label == info.id)[None, None].astype(np.float64)
            if not region.any():
                continue  # Quantus scores an empty region as a hit or crashes; ours is NaN: not compared
            for m, name in enumerate(QUANTUS_METRICS):
                out[r, m] = metrics[name](disable_warnings=True)(
                    model=None, x_batch=np.zeros_like(a), y_batch=np.zeros(1, dtype=int), a_batch=a, s_batch=region,
                    channel_first=True)[0]
    return out


def warm_up(store_path: Path, maps_path: Path, count: int) -> None:
    """Read the maps file once (the page cache then holds it, as for a second run over the same
    maps) and score a few rows, so no run pays for first-time imports."""
    with open(maps_path, "rb") as handle:
        while handle.read(1 << 24):
            pass
    score_maps(store_path, maps_path, rows=np.arange(min(count, 4)))


def _stop_joblib_workers() -> None:
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def run_score_bench(store_path: Path, work: Path, jobs: int, repeats: int, quantus_maps: int | None = None) -> dict[str, Any]:
    """Alternated timed runs of ours (every map) and Quantus (the first ``quantus_maps``, default ``jobs``)."""
    count = len(open_store(store_path))
    maps_path = ensure_maps(work / f"score-maps-{count}.npy", count)
    try:
        import quantus  # noqa: F401
    except ImportError:
        quantus_maps = 0
        print("Quantus is not installed (pip install -e '.[test]'): scoring row without the comparison")
    subset = min(count, jobs if quantus_maps is None else quantus_maps)
    rows = _subset_rows(count, subset)
    warm_up(store_path, maps_path, count)
    from bench.run import _cpu_seconds

    ours_s: list[float] = []
    ours_cpu: list[float] = []
    theirs_s: list[float] = []
    theirs_cpu: list[float] = []
    result = theirs = None
    for round_number in range(repeats):
        _stop_joblib_workers()  # every run starts its workers, as a CLI run does
        cpu_before, started = _cpu_seconds(), time.perf_counter()
        result = score_maps(store_path, maps_path, jobs=jobs)
        ours_s.append(time.perf_counter() - started)
        _stop_joblib_workers()  # so the workers' CPU time is counted (a child's counts once it has exited)
        ours_cpu.append(_cpu_seconds() - cpu_before)
        line = f"round {round_number + 1}/{repeats}  score          {ours_s[-1]:7.2f} s ({count / ours_s[-1]:.1f} maps/s)"
        if subset:
            cpu_before, started = _cpu_seconds(), time.perf_counter()
            pool = Pool(min(jobs, subset))
            theirs = np.stack(pool.map(_quantus_one, [(str(store_path), str(maps_path), int(r)) for r in rows],
                                       chunksize=1))
            theirs_s.append(time.perf_counter() - started)
            pool.close()
            pool.join()  # reaped, so its CPU time is counted
            theirs_cpu.append(_cpu_seconds() - cpu_before)
            line += f"   quantus {theirs_s[-1]:7.2f} s for {subset} maps"
        print(line, flush=True)
    assert result is not None
    out: dict[str, Any] = {
        "maps": count, "grid": GRID, "regions": len(result.regions.names), "metrics": len(result.metrics),
        "jobs": jobs, "seconds": ours_s, "median_seconds": statistics.median(ours_s),
        "maps_per_second": count / statistics.median(ours_s),
        # the machine is shared: CPU seconds say what the same work takes on idle cores
        "cpu_seconds": ours_cpu,
        "maps_per_second_of_idle_cores": count / (statistics.median(ours_cpu) / jobs),
    }
    if subset:
        per_map_ratio = [(t / subset) / (o / count) for o, t in zip(ours_s, theirs_s)]
        out.update({
            "quantus_maps": subset, "quantus_metrics": len(QUANTUS_METRICS), "quantus_seconds": theirs_s,
            "quantus_median_seconds": statistics.median(theirs_s),
            "quantus_maps_per_second": subset / statistics.median(theirs_s),
            "quantus_over_ours": statistics.median(per_map_ratio),  # median of the ratio within each round
            "quantus_cpu_seconds": theirs_cpu,
            "quantus_over_ours_cpu": statistics.median((t / subset) / (o / count) for o, t in zip(ours_cpu, theirs_cpu)),
            "max_difference_on_smooth_maps": _agreement(result, theirs, rows),
        })
    return out


def _subset_rows(count: int, subset: int) -> np.ndarray:
    """``subset`` rows spread over the store, the three families (row % 3) taken in turn."""
    base = np.linspace(0, max(count - 3, 0), subset).astype(np.int64) // 3 * 3
    return np.minimum(base + np.arange(subset) % 3, count - 1)


def _agreement(result: Any, theirs: np.ndarray | None, rows: np.ndarray) -> float | None:
    """Largest |ours - Quantus| over the order-free metrics on the smooth maps (both sides did the
    same work); NaN-free regions only. None when no smooth map was in the subset."""
    if theirs is None:
        return None
    diffs = []
    for i, row in enumerate(rows.tolist()):
        if row % 3 != 0:
            continue
        for m, name in enumerate(QUANTUS_METRICS):
            if name in ("relevance_mass", "attribution_localisation", "auc"):
                ours = result.values[row, :, METRICS.index(name)]
                ok = ~np.isnan(theirs[i, :, m])
                diffs.append(float(np.max(np.abs(ours[ok] - theirs[i, ok, m]), initial=0)))
    return max(diffs) if diffs else None


def print_row(score: dict[str, Any]) -> None:
    print(f"\n{'scoring':<16}{'median s':>9}{'best s':>8}{'maps/s':>11}  ({score['maps']} maps {score['grid']}², "
          f"{score['metrics']} metrics × {score['regions']} regions, {score['jobs']} jobs)")
    print(f"{'score':<16}{score['median_seconds']:9.2f}{min(score['seconds']):8.2f}{score['maps_per_second']:11.1f}"
          f"  ({score['maps_per_second_of_idle_cores']:.1f} maps/s on {score['jobs']} idle cores, from CPU seconds)")
    if "quantus_maps" in score:
        print(f"{'quantus 0.6.0':<16}{score['quantus_median_seconds']:9.2f}{min(score['quantus_seconds']):8.2f}"
              f"{score['quantus_maps_per_second']:11.3f}  ({score['quantus_maps']} maps, {score['quantus_metrics']} "
              f"metrics, one call per metric and region)")
        agreement = score["max_difference_on_smooth_maps"]
        print(f"quantus/ours per map: {score['quantus_over_ours']:.0f}× wall, {score['quantus_over_ours_cpu']:.0f}× CPU"
              + ("" if agreement is None else f"; largest difference on the smooth maps (mass, localisation, AUC): "
                 f"{agreement:.1e}"))


def main(argv: list[str] | None = None) -> int:
    from bench.run import ensure_source

    from celebamask.build.orchestrator import available_cores, build_store

    parser = argparse.ArgumentParser(prog="python -m bench.score", description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=available_cores())
    parser.add_argument("--quantus-maps", type=int, default=None, help="maps Quantus scores (default: --jobs)")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    args = parser.parse_args(argv)
    store = args.work / f"store-{args.count}-lossless.zarr"
    if not (store / "zarr.json").exists() or not open_store(store).complete:
        source = ensure_source(args.work / f"source-{args.count}", args.count, args.jobs)
        build_store(source, store, jobs=args.jobs, image_codec="lossless", overwrite=True)
    print_row(run_score_bench(store, args.work, args.jobs, args.repeats, args.quantus_maps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
