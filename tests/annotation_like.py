"""Arrays shaped like the annotation arrays (split, attributes, per-class areas, valid), added to a
copy of a built store so the readers' handling of them is tested whatever the build writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import zarr

SPLIT_NAMES = ["train", "val", "test"]
ATTRIBUTE_NAMES = [f"attribute_{k}" for k in range(5)]


def copy_with_annotation_like_arrays(built: Path, target: Path, invalid_rows: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """Copy ``built`` to ``target`` and add the arrays; returns what was written, by array name."""
    shutil.copytree(built, target)
    group = zarr.open_group(target, mode="r+")
    labels = group["label"][:]
    count = labels.shape[0]
    class_count = max(c["id"] for c in group.attrs["classes"]) + 1
    rng = np.random.default_rng(11)
    written = {
        "split": rng.integers(0, len(SPLIT_NAMES), count).astype(np.uint8),
        "attributes": rng.integers(0, 2, (count, len(ATTRIBUTE_NAMES))).astype(np.int8),
        "class_area": np.stack([np.bincount(row.ravel(), minlength=class_count)[:class_count] for row in labels])
        .astype(np.uint32),
        "valid": np.array([row not in invalid_rows for row in range(count)]),
    }
    layout = {
        "split": ((), {"names": SPLIT_NAMES}),
        "attributes": (("attribute",), {"names": ATTRIBUTE_NAMES}),
        "class_area": (("class",), {}),
        "valid": ((), {}),
    }
    for name, values in written.items():
        if name == "valid":  # written by every build: overwrite the values
            group[name][:] = values
            continue
        if name in group:  # the real annotation array of the build: replace it with the known values
            del group[name]
        dims, attrs = layout[name]
        array = group.create_array(name, shape=values.shape, chunks=values.shape, dtype=values.dtype,
                                   dimension_names=("sample", *dims), attributes=attrs)
        array[:] = values
    return written
