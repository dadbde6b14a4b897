"""Arrays the coordinator writes whole, from what the sources gave it."""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from celebamask.dataset import POSE_NAMES, SPLIT_NAMES, SPLIT_STARTS
from celebamask.sources.annotations import Annotations
from celebamask.store.layout import ANNOTATION_ARRAYS, cf_flag_meanings, create_whole_array

# Every array the coordinator writes in full when it creates the store (workers never touch them).
COORDINATOR_ARRAYS = ("sample_id", "flags", *ANNOTATION_ARRAYS)

# name -> (values, dimension names after "sample", fill value, attributes)
ArraySpec = tuple[np.ndarray, tuple[str, ...], Any, dict[str, Any]]


def annotation_arrays(annotations: Annotations) -> dict[str, ArraySpec]:
    """The arrays of the annotation files that were present, as ``write_annotation_arrays`` writes
    them; a resume rewrites a damaged chunk of one from the same values."""
    arrays: dict[str, ArraySpec] = {}
    if annotations.celeba_index is not None and annotations.celeba_file is not None:
        arrays["celeba_index"] = (annotations.celeba_index, (), -1,
                                  {"description": "0-based index into CelebA's 202,599 images (orig_idx)"})
        # Zarr's variable-length "string" type: zarr-python and xarray read it as text without custom
        # code. tensorstore reads no Zarr string type; there the name is f"{celeba_index + 1:06d}.jpg".
        arrays["celeba_file"] = (annotations.celeba_file, (), "",
                                 {"description": "CelebA file name (orig_file, 1-based: celeba_index + 1)"})
        arrays["split"] = (annotations.split, (), 255,  # type: ignore[assignment]
                           {"names": list(SPLIT_NAMES), "thresholds": list(SPLIT_STARTS),
                            "long_name": "CelebA split", "flag_values": list(range(len(SPLIT_NAMES))),
                            "flag_meanings": cf_flag_meanings(SPLIT_NAMES),
                            "description": "g_partition.py split by celeba_index: names[value]"})
    if annotations.attributes is not None:
        arrays["attributes"] = (annotations.attributes, ("attribute",), -1,
                                {"names": list(annotations.attribute_names),
                                 "description": "CelebA attributes: 1 present, 0 absent (the file's 1 / -1)"})
    if annotations.pose is not None:
        # Dimension "angle", not "pose": xarray takes an array named like its dimension for a coordinate.
        arrays["pose"] = (annotations.pose, ("angle",), float("nan"), {"names": list(POSE_NAMES), "units": "degrees"})
    return arrays


def write_annotation_arrays(group: zarr.Group, annotations: Annotations, shard_size: int) -> list[str]:
    """Write the arrays of the files that were present, each at once (chunked by shard); return their names."""
    arrays = annotation_arrays(annotations)
    for name, (values, dimension_names, fill_value, attributes) in arrays.items():
        create_whole_array(group, name, values, dimension_names, fill_value, shard_size, attributes)
    return list(arrays)
