"""Arrays the coordinator writes whole, from what the sources gave it."""

from __future__ import annotations

import zarr

from celebamask.dataset import POSE_NAMES, SPLIT_NAMES, SPLIT_STARTS
from celebamask.sources.annotations import Annotations
from celebamask.store.layout import cf_flag_meanings, create_whole_array


def write_annotation_arrays(group: zarr.Group, annotations: Annotations, shard_size: int) -> list[str]:
    """Write the arrays of the files that were present, each at once (chunked by shard); return their names."""
    written: list[str] = []
    if annotations.celeba_index is not None and annotations.celeba_file is not None:
        create_whole_array(group, "celeba_index", annotations.celeba_index, (), -1, shard_size,
                           {"description": "0-based index into CelebA's 202,599 images (orig_idx)"})
        # Zarr's variable-length "string" type: zarr-python and xarray read it as text without custom
        # code. tensorstore reads no Zarr string type; there the name is f"{celeba_index + 1:06d}.jpg".
        create_whole_array(group, "celeba_file", annotations.celeba_file, (), "", shard_size,
                           {"description": "CelebA file name (orig_file, 1-based: celeba_index + 1)"})
        create_whole_array(group, "split", annotations.split, (), 255, shard_size,  # type: ignore[arg-type]
                           {"names": list(SPLIT_NAMES), "thresholds": list(SPLIT_STARTS),
                            "long_name": "CelebA split", "flag_values": list(range(len(SPLIT_NAMES))),
                            "flag_meanings": cf_flag_meanings(SPLIT_NAMES),
                            "description": "g_partition.py split by celeba_index: names[value]"})
        written += ["celeba_index", "celeba_file", "split"]
    if annotations.attributes is not None:
        create_whole_array(group, "attributes", annotations.attributes, ("attribute",), -1, shard_size,
                           {"names": list(annotations.attribute_names),
                            "description": "CelebA attributes: 1 present, 0 absent (the file's 1 / -1)"})
        written.append("attributes")
    if annotations.pose is not None:
        # Dimension "angle", not "pose": xarray takes an array named like its dimension for a coordinate.
        create_whole_array(group, "pose", annotations.pose, ("angle",), float("nan"), shard_size,
                           {"names": list(POSE_NAMES), "units": "degrees"})
        written.append("pose")
    return written
