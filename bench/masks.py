"""``make bench`` (second part): what keeping every class's own mask costs, and how fast label maps
render from it.

- The build with masks (the default) against ``--no-masks``, alternated round by round on the
  same synthetic source; time as the median of the within-round ratio (wall and CPU), bytes as
  the ratio of the two stores' sizes. Targets: ≤ 1.05 time, ≤ 1.02 bytes.
- ``store.label_maps(rows, config=...)`` for each preset, read and painted from ``masks`` in
  batches of one shard: maps per CPU second of this process (all its threads: what one core
  renders) and per wall second. Target: ≥ 1,000 maps/s on one core. The paint alone (bits
  already in memory) is reported beside it.

Results are printed and written to ``bench/results-masks.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.run import HERE, _bytes_under, _cpu_seconds, _meets, _stop_joblib_workers, ensure_source, machine, warm_up
from celebamask import open_store
from celebamask.build.orchestrator import available_cores, build_store
from celebamask.config import load_config
from celebamask.store.maskbits import paint_bits

RENDER_CONFIGS = ("default", "official", "face-parsing")
TARGETS = {
    "masks_time_ratio": ("≤", 1.05),
    "masks_cpu_ratio": ("≤", 1.05),
    "masks_bytes_ratio": ("≤", 1.02),
    "label_maps_per_cpu_s": ("≥", 1000.0),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.masks", description=__doc__)
    parser.add_argument("--count", type=int, default=1000, help="synthetic samples (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="alternated rounds; medians are reported")
    parser.add_argument("--jobs", type=int, default=available_cores(), help="cores for the builds")
    parser.add_argument("--work", type=Path, default=HERE / "work", help="sources and stores")
    parser.add_argument("--out", type=Path, default=HERE / "results-masks.json")
    args = parser.parse_args(argv)

    source = ensure_source(args.work / f"source-{args.count}", args.count, args.jobs)
    stores = {"masks": args.work / f"store-{args.count}-masks.zarr",
              "no_masks": args.work / f"store-{args.count}-no-masks.zarr"}
    warm_up(source, args.work, args.jobs)
    builds = measure_builds(source, stores, args.jobs, args.repeats)
    sizes = {name: _bytes_under(path) for name, path in stores.items()}
    renders = measure_label_maps(stores["masks"], args.repeats)
    results: dict[str, Any] = {
        "machine": machine(),
        "count": args.count,
        "jobs": args.jobs,
        "repeats": args.repeats,
        "builds": builds,
        "bytes": sizes,
        "masks_bytes_per_sample": _bytes_under(stores["masks"] / "masks") / args.count,
        "label_maps": renders,
    }
    values = {
        "masks_time_ratio": builds["time_ratio"],
        "masks_cpu_ratio": builds["cpu_ratio"],
        "masks_bytes_ratio": sizes["masks"] / sizes["no_masks"],
        "label_maps_per_cpu_s": min(r["maps_per_cpu_s"] for r in renders.values()),
    }
    results["targets"] = {name: {"target": f"{op} {bound}", "value": values[name], "met": _meets(op, values[name], bound)}
                          for name, (op, bound) in TARGETS.items()}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwrote {args.out}")
    return 0


def measure_builds(source: Path, stores: dict[str, Path], jobs: int, repeats: int) -> dict[str, Any]:
    """Both builds each round, in alternating order (masks first in odd rounds), each into a new folder
    with freshly started workers, as a CLI run is."""
    seconds: dict[str, list[float]] = {name: [] for name in stores}
    cpu: dict[str, list[float]] = {name: [] for name in stores}
    for round_number in range(repeats):
        order = list(stores) if round_number % 2 == 0 else list(reversed(stores))
        for name in order:
            _stop_joblib_workers()
            shutil.rmtree(stores[name], ignore_errors=True)
            os.sync()
            cpu_before, started = _cpu_seconds(), time.perf_counter()
            build_store(source, stores[name], jobs=jobs, masks=name == "masks")
            seconds[name].append(time.perf_counter() - started)
            _stop_joblib_workers()  # so the workers' CPU time is counted (a child's counts once it has exited)
            cpu[name].append(_cpu_seconds() - cpu_before)
            print(f"round {round_number + 1}/{repeats}  build {name:<9} {seconds[name][-1]:7.2f} s", flush=True)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "median_seconds": {name: statistics.median(values) for name, values in seconds.items()},
        # the load of a shared machine drifts between rounds more than between neighbouring runs
        "time_ratio": statistics.median(a / b for a, b in zip(seconds["masks"], seconds["no_masks"])),
        "cpu_ratio": statistics.median(a / b for a, b in zip(cpu["masks"], cpu["no_masks"])),
    }


def measure_label_maps(path: Path, repeats: int) -> dict[str, dict[str, float]]:
    """Every row through ``store.label_maps`` in shard-sized batches, per preset (one untimed pass
    first); checked against the stored label for the store's own config."""
    store = open_store(path)
    count = len(store)
    batch = store.images.shards[0] if store.images.shards else 64
    own = store.label_maps(np.arange(min(batch, count)))
    if not np.array_equal(own, np.asarray(store.labels[0 : len(own)])):
        raise SystemExit("label_maps with the store's own config differs from the stored label")
    results: dict[str, dict[str, float]] = {}
    for name in RENDER_CONFIGS:
        config = load_config(name)
        walls, cpus, paints = [], [], []
        for attempt in range(repeats + 1):
            wall, cpu = 0.0, 0.0
            for start in range(0, count, batch):
                rows = np.arange(start, min(start + batch, count))
                cpu_before, started = _cpu_seconds(), time.perf_counter()
                store.label_maps(rows, config=config)
                wall += time.perf_counter() - started
                cpu += _cpu_seconds() - cpu_before
            if attempt:  # the first pass warms the page cache and the paint table
                walls.append(wall)
                cpus.append(cpu)
        bits = store._mask_rows(store._masks_array("bench"), np.arange(min(batch, count)))
        for _ in range(repeats):
            cpu_before = _cpu_seconds()
            paint_bits(bits, config)
            paints.append(_cpu_seconds() - cpu_before)
        results[name] = {
            "maps_per_wall_s": count / statistics.median(walls),
            "maps_per_cpu_s": count / statistics.median(cpus),
            "paint_only_maps_per_cpu_s": len(bits) / max(statistics.median(paints), 1e-9),
        }
        print(f"label_maps {name:<13} {results[name]['maps_per_cpu_s']:8.0f} maps/CPU s", flush=True)
    return results


def print_table(results: dict[str, Any]) -> None:
    builds, m = results["builds"], results["machine"]
    print(f"\n{results['count']} synthetic samples, {results['jobs']} jobs, medians of {results['repeats']} "
          f"alternated rounds; {m['cpu']}, load {m['load_average_at_end']}")
    print(f"\n{'build':<12}{'median s':>9}{'bytes':>14}")
    for name in ("masks", "no_masks"):
        print(f"{name:<12}{builds['median_seconds'][name]:9.2f}{results['bytes'][name]:14,}")
    print(f"masks array: {results['masks_bytes_per_sample']:.0f} bytes a sample")
    print(f"\n{'label_maps config':<20}{'maps/CPU s':>11}{'maps/wall s':>12}{'paint only':>11}")
    for name, row in results["label_maps"].items():
        print(f"{name:<20}{row['maps_per_cpu_s']:11.0f}{row['maps_per_wall_s']:12.0f}"
              f"{row['paint_only_maps_per_cpu_s']:11.0f}")
    print(f"\n{'target':<24}{'value':>10}  {'goal':<10}{'met':<5}")
    for name, target in results["targets"].items():
        print(f"{name:<24}{target['value']:10.3f}  {target['target']:<10}{'yes' if target['met'] else 'NO':<5}")


if __name__ == "__main__":
    raise SystemExit(main())
