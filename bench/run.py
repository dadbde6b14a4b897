"""``make bench``: one run that measures the build against the common-practice peer and the decode floor,
and scoring against Quantus (bench/score.py).

Everything that is compared is measured in the same run, alternated (A B C … A B C …), and
summarised by medians, because the machine is shared and absolute timings drift. Results are
printed as a table and written to ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.floor import run_floor
from bench.peer import read_peer_sample, run_peer
from bench.score import print_row as print_score_row
from bench.score import run_score_bench
from celebamask import open_store
from celebamask.build.orchestrator import available_cores, build_store
from celebamask.sources.index import index_source, locate_source
from celebamask.synth.generate import generate_source

HERE = Path(__file__).resolve().parent
PRESETS = ("lossless", "lossless-compact", "jpeg:95")
TARGETS = {
    "build_over_floor": ("≤", 1.25),
    "peer_over_build": ("≥", 2.5),
    "random_read_over_folder": ("≤", 1.0),
    "sequential_samples_per_s": ("≥", 1500.0),
    "peak_rss_per_worker_mib": ("<", 1024.0),
    "jobs2_over_jobs1": ("≥", 1.8),
    "score_maps_per_s": ("≥", 50.0),
    "score_maps_per_s_idle_cores": ("≥", 50.0),
    "score_quantus_over_ours": ("≥", 50.0),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--count", type=int, default=1000, help="synthetic samples (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="alternated rounds; medians are reported")
    parser.add_argument("--jobs", type=int, default=available_cores(), help="cores for build, peer and floor")
    parser.add_argument("--reads", type=int, default=200, help="random single-sample reads per store")
    parser.add_argument("--work", type=Path, default=HERE / "work", help="sources, stores and peer output")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args(argv)

    source = ensure_source(args.work / f"source-{args.count}", args.count, args.jobs)
    index = index_source(locate_source(source))
    floor_tasks = [(os.path.join(source, s.image), [os.path.join(source, m) for m in s.masks.values()])
                   for s in index.samples]
    masks = sum(len(s.masks) for s in index.samples)
    stores = {preset: args.work / f"store-{args.count}-{preset.replace(':', '')}.zarr" for preset in PRESETS}
    peer_out = args.work / f"peer-{args.count}"
    one_job = args.work / f"store-{args.count}-jobs1.zarr"
    rss = WorkerPeakRss()

    def build(name: str, preset: str, jobs: int, target: Path) -> tuple[Callable[[], None], Callable[[], None], Callable[[], None]]:
        def prepare() -> None:
            _stop_joblib_workers()  # every build pays for starting its workers, as a CLI run does
            shutil.rmtree(target, ignore_errors=True)  # a new folder, as a first build writes into

        def run() -> None:
            report = build_store(source, target, jobs=jobs, image_codec=preset)
            startup.setdefault(name, []).append(report.startup_seconds)

        def finish() -> None:
            rss.sample()  # the workers are still running, and keep their peak
            _stop_joblib_workers()  # so their CPU time is counted (a child's counts once it has exited)
        return prepare, run, finish

    startup: dict[str, list[float]] = {}  # per build run: seconds before its first shard task could start

    def nothing() -> None:
        pass

    # Each run: what to do before the clock starts, what is timed, and what to do after it stops.
    runs: dict[str, tuple[Callable[[], None], Callable[[], None], Callable[[], None]]] = {  # the build sits between its comparisons
        "floor": (nothing, lambda: run_floor(floor_tasks, args.jobs), nothing),
        "build": build("build", "lossless", args.jobs, stores["lossless"]),
        "build_jobs1": build("build_jobs1", "lossless", 1, one_job),
        "peer": (lambda: shutil.rmtree(peer_out, ignore_errors=True), lambda: run_peer(source, peer_out, args.count, args.jobs),
                 nothing),
        "floor_pillow": (nothing, lambda: run_floor(floor_tasks, args.jobs, pillow_only=True), nothing),
        "build_compact": build("build_compact", "lossless-compact", args.jobs, stores["lossless-compact"]),
        "build_jpeg95": build("build_jpeg95", "jpeg:95", args.jobs, stores["jpeg:95"]),
    }
    warm_up(source, args.work, args.jobs)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    load_before: dict[str, list[float]] = {name: [] for name in runs}  # other users of the machine
    # CPU seconds of this process and its (exited) children: unlike wall time, not lengthened by
    # waiting for cores that other users of the machine hold
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for round_number in range(args.repeats):
        for name, (prepare, run, finish) in runs.items():
            prepare()
            os.sync()  # what earlier runs wrote goes to disk now, not from kernel threads during this run
            load_before[name].append(round(os.getloadavg()[0], 2))
            cpu_before = _cpu_seconds()
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
            finish()
            cpu[name].append(_cpu_seconds() - cpu_before)
            print(f"round {round_number + 1}/{args.repeats}  {name:<14} {seconds[name][-1]:7.2f} s", flush=True)
    median = {name: statistics.median(values) for name, values in seconds.items()}

    def ratio(numerator: str, denominator: str) -> float:
        """Median over rounds of the ratio within each round: the load of a shared machine drifts
        between rounds more than between neighbouring runs."""
        return statistics.median(a / b for a, b in zip(seconds[numerator], seconds[denominator]))

    def best_ratio(numerator: str, denominator: str) -> float:
        """Ratio of the fastest runs: the least disturbed by other users of the machine."""
        return min(seconds[numerator]) / min(seconds[denominator])

    _check_labels_agree(stores["lossless"], peer_out)
    reads = measure_reads(stores, peer_out, args.count, args.reads, args.repeats)
    scoring = run_score_bench(stores["lossless"], args.work, args.jobs, args.repeats)
    sizes = {preset: store_sizes(path, args.count) for preset, path in stores.items()}
    peer_bytes = _bytes_under(peer_out)
    results = {
        "machine": machine(),
        "count": args.count,
        "masks": masks,
        "jobs": args.jobs,
        "repeats": args.repeats,
        "seconds": seconds,
        "load_average_before_run": load_before,
        "median_seconds": median,
        "samples_per_second": {name: args.count / value for name, value in median.items()},
        "best_seconds": {name: min(values) for name, values in seconds.items()},
        "ratios": {
            "build_over_floor": ratio("build", "floor"),
            "build_over_floor_pillow": ratio("build", "floor_pillow"),
            "peer_over_build": ratio("peer", "build"),
            "jobs2_over_jobs1": ratio("build_jobs1", "build"),
            "random_read_over_folder": reads["random_ms"]["lossless"] / reads["random_ms"]["peer_folder"],
            # the same, less the build's fixed start (indexing, store creation, starting worker
            # processes): what a build of many more samples tends to
            "build_after_startup_over_floor": statistics.median(
                (b - s) / f for b, s, f in zip(seconds["build"], startup["build"], seconds["floor"])),
        },
        "build_startup_seconds": {name: statistics.median(values) for name, values in startup.items()},
        "cpu_seconds": cpu,
        "cpu_ratios": {
            "build_over_floor": statistics.median(b / f for b, f in zip(cpu["build"], cpu["floor"])),
            "peer_over_build": statistics.median(p / b for p, b in zip(cpu["peer"], cpu["build"])),
        },
        "ratios_of_best_runs": {
            "build_over_floor": best_ratio("build", "floor"),
            "build_over_floor_pillow": best_ratio("build", "floor_pillow"),
            "peer_over_build": best_ratio("peer", "build"),
            "jobs2_over_jobs1": best_ratio("build_jobs1", "build"),
        },
        "reads": reads,
        "scoring": scoring,
        "sizes": sizes,
        "peer_folder_bytes_per_sample": peer_bytes / args.count,
        "peak_rss_per_worker_mib": rss.peak_mib(),
    }
    results["targets"] = {
        name: {"target": f"{op} {bound}", "value": value, "met": _meets(op, value, bound)}
        for name, (op, bound) in TARGETS.items()
        for value in [_target_value(results, name)]
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwrote {args.out}")
    return 0


def ensure_source(path: Path, count: int, jobs: int) -> Path:
    """The synthetic source of ``count`` samples, generated once and reused."""
    marker = path / ".complete"
    if not marker.exists():
        shutil.rmtree(path, ignore_errors=True)
        print(f"generating {count} synthetic samples in {path} (once; reused by later runs)", flush=True)
        generate_source(path, count, seed=0, jobs=jobs, progress=False)
        marker.write_text(f"{count}\n")
    return path


def warm_up(source: Path, work: Path, jobs: int) -> None:
    """Read every source file once (the page cache then holds them for every contender) and run
    one tiny build, so no contender pays for first-time imports or a cold disk."""
    for path in source.rglob("*"):
        if path.is_file():
            path.read_bytes()
    build_store(source, work / "warm-up.zarr", jobs=jobs, limit=8, shard_size=4, overwrite=True)
    shutil.rmtree(work / "warm-up.zarr", ignore_errors=True)


def measure_reads(stores: dict[str, Path], peer_out: Path, count: int, reads: int, repeats: int) -> dict[str, Any]:
    """Random single samples (image + label + id through the public reader, ``store[row]``), store
    and peer folder alternated row by row; then whole-store sequential reads with ``store.batch``
    in batches of one shard (after one untimed pass), and the peer folder read in order."""
    rows = np.random.default_rng(1).integers(0, count, reads).tolist()
    opened = {preset: open_store(path) for preset, path in stores.items()}
    random_ms: dict[str, list[float]] = {name: [] for name in [*opened, "peer_folder"]}
    for row in rows:
        for preset, store in opened.items():
            started = time.perf_counter()
            store[row]
            random_ms[preset].append((time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
        read_peer_sample(peer_out, int(opened["lossless"].sample_ids[row]))
        random_ms["peer_folder"].append((time.perf_counter() - started) * 1e3)

    sequential: dict[str, list[float]] = {name: [] for name in [*opened, "peer_folder"]}
    for store in opened.values():  # one untimed pass each: a training loop reads the store epoch after epoch
        for start in range(0, count, 64):
            store.batch(start, start + 64)
    for index in range(count):  # and the peer's folder, alike
        read_peer_sample(peer_out, index)
    for _ in range(repeats):
        for preset, store in opened.items():
            batch = store.images.shards[0] if store.images.shards else 64
            started = time.perf_counter()
            for start in range(0, count, batch):
                store.batch(start, start + batch)
            sequential[preset].append(count / (time.perf_counter() - started))
        started = time.perf_counter()
        for index in range(count):
            read_peer_sample(peer_out, index)
        sequential["peer_folder"].append(count / (time.perf_counter() - started))
    return {
        "random_ms": {name: statistics.median(values) for name, values in random_ms.items()},
        "sequential_samples_per_s": {name: statistics.median(values) for name, values in sequential.items()},
    }


def store_sizes(path: Path, count: int) -> dict[str, float]:
    image, label = _bytes_under(path / "image"), _bytes_under(path / "label")
    raw_image = count * 512 * 512 * 3
    return {
        "bytes_per_sample": _bytes_under(path) / count,
        "image_bytes_per_sample": image / count,
        "label_bytes_per_sample": label / count,
        "image_ratio_vs_raw": raw_image / image,
        "label_ratio_vs_raw": count * 512 * 512 / label,
    }


class WorkerPeakRss:
    """Peak resident memory of the build's workers: VmHWM, the high-water mark the kernel keeps
    for each process, so reading it once after a build (its workers are still alive) gives the
    peak without polling during the timed run."""

    def __init__(self) -> None:
        self.peaks: dict[int, int] = {}

    def sample(self) -> None:
        """Read VmHWM of every child of this process."""
        me = str(os.getpid())
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status") as handle:
                    fields = dict(line.split(":", 1) for line in handle if ":" in line)
            except OSError:
                continue
            if fields.get("PPid", "").strip() == me and "VmHWM" in fields:
                kib = int(fields["VmHWM"].split()[0])
                self.peaks[int(entry)] = max(self.peaks.get(int(entry), 0), kib)

    def peak_mib(self) -> float:
        return max(self.peaks.values(), default=0) / 1024


def _cpu_seconds() -> float:
    """User and system CPU time of this process and of its children that have exited."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _stop_joblib_workers() -> None:
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def _check_labels_agree(store_path: Path, peer_out: Path) -> None:
    """Both sides must produce the same label maps, or the timings compare different work."""
    store = open_store(store_path)
    for row in (0, len(store) // 2, len(store) - 1):
        _, peer_label = read_peer_sample(peer_out, int(store.sample_ids[row]))
        if not np.array_equal(np.asarray(store.labels[row]), peer_label):
            raise SystemExit(f"label of row {row} differs between the build and the peer")


def _bytes_under(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _target_value(results: dict[str, Any], name: str) -> float:
    if name == "sequential_samples_per_s":
        return results["reads"]["sequential_samples_per_s"]["lossless"]
    if name == "peak_rss_per_worker_mib":
        return results["peak_rss_per_worker_mib"]
    if name == "score_maps_per_s":
        return results["scoring"]["maps_per_second"]
    if name == "score_maps_per_s_idle_cores":
        return results["scoring"]["maps_per_second_of_idle_cores"]
    if name == "score_quantus_over_ours":
        return results["scoring"].get("quantus_over_ours", float("nan"))
    return results["ratios"][name]


def _meets(op: str, value: float, bound: float) -> bool:
    return {"≤": value <= bound, "≥": value >= bound, "<": value < bound}[op]


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cores": available_cores(), "python": platform.python_version(),
            "load_average_at_end": [round(x, 2) for x in load]}


def print_table(results: dict[str, Any]) -> None:
    count, med = results["count"], results["median_seconds"]
    m = results["machine"]
    print(f"\n{count} synthetic samples ({results['masks']} masks), {results['jobs']} jobs, "
          f"medians of {results['repeats']} alternated rounds; {m['cpu']}, load {m['load_average_at_end']}")
    print(f"\n{'run':<16}{'median s':>9}{'best s':>8}{'samples/s':>11}  (median)")
    for name, value in med.items():
        print(f"{name:<16}{value:9.2f}{results['best_seconds'][name]:8.2f}{count / value:11.1f}")
    print(f"\n{'preset':<18}{'bytes/sample':>13}{'image ×raw':>11}{'random ms':>10}{'seq samples/s':>14}")
    reads = results["reads"]
    for preset, size in results["sizes"].items():
        print(f"{preset:<18}{size['bytes_per_sample']:13.0f}{size['image_ratio_vs_raw']:11.2f}"
              f"{reads['random_ms'][preset]:10.2f}{reads['sequential_samples_per_s'][preset]:14.0f}")
    print(f"{'peer JPEG+PNG':<18}{results['peer_folder_bytes_per_sample']:13.0f}{'(lossy)':>11}"
          f"{reads['random_ms']['peer_folder']:10.2f}{reads['sequential_samples_per_s']['peer_folder']:14.0f}")
    print(f"\nbuild/floor against the Pillow-only floor: {results['ratios']['build_over_floor_pillow']:.2f}"
          "  (value: median over rounds of the ratio within each round; best runs: ratio of the fastest runs)")
    print(f"build/floor less the build's start-up ({results['build_startup_seconds']['build']:.2f} s: indexing, "
          f"store creation, starting worker processes): {results['ratios']['build_after_startup_over_floor']:.2f}")
    cpu = results["cpu_ratios"]
    print(f"in CPU time (this process and its workers, median of the ratio within each round): build/floor "
          f"{cpu['build_over_floor']:.2f}, peer/build {cpu['peer_over_build']:.2f}")
    print_score_row(results["scoring"])
    best = results["ratios_of_best_runs"]
    print(f"\n{'target':<28}{'value':>10}  {'goal':<10}{'met':<5}{'best runs':>10}")
    for name, target in results["targets"].items():
        shown = f"{best[name]:10.2f}" if name in best else ""
        print(f"{name:<28}{target['value']:10.2f}  {target['target']:<10}{'yes' if target['met'] else 'NO':<5}{shown}")
    loads = [load for values in results["load_average_before_run"].values() for load in values]
    print(f"\n1-minute load average before the runs: {min(loads):.2f} … {max(loads):.2f} on {m['cores']} cores "
          "(above ~2, other work was sharing the machine)")
