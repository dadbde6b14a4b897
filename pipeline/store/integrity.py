"""Cheap proof that a shard's files are there and whole, without decoding them.

A resume must not trust its own record (``shard_done``) alone: a shard file can be lost, emptied
or cut short after it was written. For each file this reads only its size and, for a Zarr v3
shard, its index (16 bytes per chunk and a crc32c): the file exists, is not empty, its index is
intact and every chunk it lists lies inside the file. The chunks' own crc32c are checked by
``verify``, which decodes everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import google_crc32c
import numpy as np
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from celebamask.store.location import StoreTarget

EMPTY = 2**64 - 1  # an index entry of a chunk never written


def _sharding(array: Any) -> dict[str, Any] | None:
    codecs = array.metadata.to_dict().get("codecs", [])
    if len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed":
        return dict(codecs[0].get("configuration", {}))
    return None


def chunk_regions(array: Any) -> list[tuple[str, tuple[slice, ...]]]:
    """Each chunk (shard) file's key with the region of the array it holds."""
    grid = array.metadata.chunk_grid.chunk_shape
    counts = [-(-n // c) for n, c in zip(array.shape, grid)]
    return [(f"{array.path}/{array.metadata.encode_chunk_key(coords)}",
             tuple(slice(k * c, min((k + 1) * c, n)) for k, c, n in zip(coords, grid, array.shape)))
            for coords in np.ndindex(*counts)]


def chunk_keys(array: Any, first_axis_chunk: int | None = None) -> list[str]:
    """The keys of the array's chunk (shard) files; only those of row block ``first_axis_chunk`` if given."""
    grid = array.metadata.chunk_grid.chunk_shape
    return [key for key, region in chunk_regions(array)
            if first_axis_chunk is None or (region and region[0].start == first_axis_chunk * grid[0])]


def file_problem(target: StoreTarget, array: Any, key: str, store: Any = None) -> str | None:
    """What is wrong with one chunk or shard file of ``array``, or None when it looks whole
    (``store``: the target's zarr store, if already open)."""
    store = store if store is not None else target.zarr_store(read_only=True)
    try:
        size = sync(store.getsize(key))
    except FileNotFoundError:
        return "is missing"
    except Exception as exc:  # noqa: BLE001 - a store that cannot tell the size is the finding
        return f"cannot be read ({type(exc).__name__}: {exc})"
    if size == 0:
        return "is empty (0 bytes)"
    sharding = _sharding(array)
    if sharding is None:
        return None if size > 4 else f"is truncated ({size} bytes)"
    chunks_per_shard = int(np.prod([s // c for s, c in zip(array.metadata.chunk_grid.chunk_shape,
                                                           sharding["chunk_shape"])]))
    index_codecs = [c.get("name") for c in sharding.get("index_codecs", [])]
    has_crc = "crc32c" in index_codecs
    index_bytes = chunks_per_shard * 16 + (4 if has_crc else 0)
    if size < index_bytes:
        return f"is truncated ({size} bytes, shorter than its {index_bytes}-byte index)"
    at_end = sharding.get("index_location", "end") == "end"
    request = SuffixByteRequest(index_bytes) if at_end else RangeByteRequest(0, index_bytes)
    try:
        buffer = sync(store.get(key, prototype=default_buffer_prototype(), byte_range=request))
    except Exception as exc:  # noqa: BLE001
        return f"cannot be read ({type(exc).__name__}: {exc})"
    if buffer is None:
        return "is missing"
    raw = buffer.to_bytes()
    if has_crc:
        body, stored = raw[:-4], raw[-4:]
        if np.uint32(google_crc32c.value(body)).tobytes() != stored:
            return "has a damaged index (crc32c mismatch): truncated or overwritten"
    else:
        body = raw
    entries = np.frombuffer(body, dtype="<u8").reshape(-1, 2)
    data_start, data_stop = (0, size - index_bytes) if at_end else (index_bytes, size)
    for position, (offset, length) in enumerate(entries.tolist()):
        if offset == EMPTY and length == EMPTY:
            continue
        if offset < data_start or length > size or offset + length > data_stop:
            return (f"has an impossible index: chunk {position} at bytes {offset}+{length}, "
                    f"the file holds {size} bytes (truncated or damaged)")
    return None


def shard_problems(target: StoreTarget, arrays: Iterable[Any], shard: int) -> list[str]:
    """One line per damaged or missing file of row block ``shard`` in ``arrays``."""
    problems = []
    for array in arrays:
        for key in chunk_keys(array, shard):
            problem = file_problem(target, array, key)
            if problem is not None:
                problems.append(f"{key} {problem}")
    return problems
