"""The orchestrator: index the source, create the store, build shards in parallel, mark complete.

Each joblib task is one shard's samples: it reads and decodes them, merges the masks, resizes,
and writes that shard whole. Workers never share a shard and hold at most one shard in memory;
the coordinator alone writes metadata, and writes ``complete: true`` last.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed

from pipeline.codecs import DEFAULT_IMAGE_CODEC, parse_image_codec
from pipeline.config import ClassConfig, load_config
from pipeline.errors import CelebaMaskError
from pipeline.merge import decode_mask, paint_label
from pipeline.resize import decode_image, resize_label
from pipeline.source import Sample, SourceFiles, SourceRef, index_source, locate_source
from pipeline.store import bytes_on_disk, create_store, mark_complete, prepare_target, write_shard

DEFAULT_SHARD_SIZE = 64


@dataclass(frozen=True)
class BuildReport:
    store: str
    samples: int
    shards: int
    seconds: float
    bytes_on_disk: int

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def tool_version() -> str:
    return _version("celebamask")


def build_sample(files: SourceFiles, sample: Sample, config: ClassConfig) -> tuple[np.ndarray, np.ndarray]:
    """Decode one sample: (image at config.size, label map at config.size)."""
    image = decode_image(files.read(sample.image), files.display(sample.image), config.size)
    masks = {name: decode_mask(files.read(rel), files.display(rel)) for name, rel in sample.masks.items()}
    label = resize_label(paint_label(masks, config), config.size)
    return image, label


def build_shard(ref: SourceRef, samples: Sequence[Sample], config: ClassConfig, store: str, start: int) -> int:
    """One joblib task: build every sample of the shard beginning at row ``start`` and write it."""
    size = config.size
    images = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    labels = np.empty((len(samples), size, size), dtype=np.uint8)
    with ref.open() as files:
        for row, sample in enumerate(samples):
            images[row], labels[row] = build_sample(files, sample, config)
    write_shard(store, start, {"image": images, "label": labels})
    return len(samples)


def build_store(
    source: str | Path,
    store: str | Path,
    *,
    config: str | Path = "default",
    jobs: int | None = None,
    limit: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    image_codec: str = DEFAULT_IMAGE_CODEC,
) -> BuildReport:
    """Build ``store`` from ``source``; ``progress(done, total)`` is called as shards finish."""
    started = time.perf_counter()
    class_config = load_config(config)
    if shard_size < 1:
        raise CelebaMaskError(store, f"shard size must be at least 1, got {shard_size}")
    if limit is not None and limit < 1:
        raise CelebaMaskError(source, f"--limit must be at least 1, got {limit}")
    jobs = available_cores() if jobs is None or jobs < 1 else jobs
    image_codec = parse_image_codec(image_codec).spec
    store = os.path.abspath(os.fspath(store))
    prepare_target(store, overwrite)

    ref = locate_source(source)
    index = index_source(ref)
    samples = index.samples[:limit] if limit else index.samples
    options = {"size": class_config.size, "shard_size": shard_size, "limit": limit, "jobs": jobs,
               "image_codec": image_codec}
    provenance: dict[str, Any] = {
        "tool": "celebamask",
        "tool_version": tool_version(),
        "library_versions": {name: _version(name) for name in
                             ("zarr", "numcodecs", "numpy", "pillow", "deflate", "simplejpeg", "imagecodecs")},
        "config": {"name": class_config.name, "path": class_config.path, "text": class_config.source_text},
        "options": options,
        "source": {"location": ref.location, "root": ref.root, "is_zip": ref.is_zip},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    create_store(store, [s.index for s in samples], class_config, shard_size, {"provenance": provenance},
                 image_codec=image_codec)

    shards = [(start, samples[start : start + shard_size]) for start in range(0, len(samples), shard_size)]
    tasks = (delayed(build_shard)(ref, chunk, class_config, store, start) for start, chunk in shards)
    done = 0
    if progress:
        progress(0, len(samples))
    for written in Parallel(n_jobs=min(jobs, len(shards)), return_as="generator_unordered")(tasks):
        done += written
        if progress:
            progress(done, len(samples))

    counts = {
        "samples": len(samples),
        "source_samples": len(index.samples),
        "masks": sum(len(s.masks) for s in samples),
        "mask_files_per_class": _class_counts(samples),
        "shards": len(shards),
        "ignored_source_files": len(index.ignored_files),
    }
    provenance.update(counts=counts, finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    mark_complete(store, {"provenance": provenance})
    return BuildReport(store, len(samples), len(shards), time.perf_counter() - started, bytes_on_disk(store))


def _class_counts(samples: Sequence[Sample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sample in samples:
        for name in sample.masks:
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
