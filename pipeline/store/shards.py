"""Whole-shard writes and single-chunk reads of the store's sharded arrays, without zarr's async machinery.

zarr-python sends every chunk through asyncio and a thread pool; for one 512² image that
bookkeeping costs about as much as compressing it, and it dominates reading one sample. The
sharding format is fixed by the Zarr v3 specification, so a worker that owns a whole shard
can encode it directly (``chunks.py``, which needs no zarr) and a reader can fetch one chunk
with one read. This module turns zarr's metadata into those plain descriptions; any array
(or codec, or store) not handled here goes through zarr itself. tests/test_shards.py checks
both directions against zarr.
"""

from __future__ import annotations

import itertools
import math
import mmap
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import google_crc32c
import numpy as np
import zarr
from zarr.core.sync import sync

import celebamask.store.codecs  # noqa: F401 - the store's own codecs must be registered before zarr reads them
from celebamask.errors import CelebaMaskError
from celebamask.store.chunks import EMPTY as _EMPTY
from celebamask.store.chunks import SUPPORTED_CODECS, Chain, RowFiles


def row_files(array: zarr.Array) -> RowFiles | None:
    """How a worker writes ``array``'s files directly: a local store, one row-major chunk per file
    (sharded: one row per chunk and one shard per file), codecs handled by chunks.py; else None."""
    if not isinstance(array.store, zarr.storage.LocalStore) or not array.shape:
        return None
    codecs = [c.to_dict() for c in array.metadata.codecs]
    sharded = len(codecs) == 1 and codecs[0]["name"] == "sharding_indexed"
    if sharded:
        config = codecs[0]["configuration"]
        index = [c["name"] for c in config["index_codecs"]]
        if config.get("index_location", "end") != "end" or index != ["bytes", "crc32c"]:
            return None
        inner = tuple(config["codecs"])
        chunk_shape = tuple(config["chunk_shape"])
        shard_shape = tuple(array.shards or ())
        chunks_per_shard = tuple(s // c for s, c in zip(shard_shape, chunk_shape))
        if chunk_shape[0] != 1 or any(c != 1 for c in chunks_per_shard[1:]):
            return None
    else:
        inner = tuple(codecs)
        chunk_shape = tuple(array.chunks)
        chunks_per_shard = (1,) * len(chunk_shape)
        if tuple(chunk_shape[1:]) != tuple(array.shape[1:]):
            return None
    if not all(c["name"] in SUPPORTED_CODECS for c in inner) or array.dtype.kind not in "biuf":
        return None
    key_pattern = _key_pattern(array)
    if key_pattern is None:
        return None
    chain = Chain(chunk_shape, chunks_per_shard, np.dtype(array.dtype), array.fill_value, inner)
    return RowFiles(os.path.join(str(array.store.root), array.path), key_pattern, chain, sharded,
                    int(array.shape[0]), tuple(int(n) for n in array.shape[1:]))


def _key_pattern(array: zarr.Array) -> str | None:
    """The key of file k (first coordinate k, the others 0) with "{}" for k, if zarr agrees."""
    zeros = (0,) * (array.ndim - 1)
    first = array.metadata.encode_chunk_key((0, *zeros))
    marker = array.metadata.encode_chunk_key((987654321, *zeros))
    pattern = marker.replace("987654321", "{}", 1)
    if pattern.format(0) != first or pattern.format(12) != array.metadata.encode_chunk_key((12, *zeros)):
        return None
    return pattern


_POOL: list[ThreadPoolExecutor] = []


def _decode_pool() -> ThreadPoolExecutor:
    """Decoders release the GIL, so a batch decodes on every core."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="celebamask-decode"))
    return _POOL[0]


class RowReader:
    """Reads one row of a sharded array (one chunk) with one read; shard indexes are cached."""

    def __init__(self, array: zarr.Array, must_exist: bool = False) -> None:
        """``must_exist``: the store is complete, so a missing shard file is lost data, not an
        unwritten one, and reading it is an error rather than rows of fill values."""
        self.array = array
        self.must_exist = must_exist
        files = row_files(array)
        # a sharded array of a local store (image, label, masks): one row per chunk, read directly;
        # else zarr reads it
        self.files = files if files is not None and files.sharded else None
        self._indexes: dict[int, np.ndarray | None] = {}
        self._present: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, row: int) -> np.ndarray:
        if self.files is None:
            self.ensure_present(row, row + 1)
            return np.asarray(self.array[row])
        chain = self.files.chain
        shard, within = divmod(row, chain.chunks_per_shard[0])
        path = self.files.path(shard)
        index = self._index(shard, path)
        if index is None or index[within, 0] == _EMPTY:
            return np.full(self.array.shape[1:], chain.fill_value, dtype=chain.dtype)
        offset, length = (int(v) for v in index[within])
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        if len(data) != length:
            raise CelebaMaskError(path, f"shard ends inside the chunk of row {row}")
        try:
            return chain.decode(data).reshape(self.array.shape[1:])
        except ValueError as exc:
            raise CelebaMaskError(path, f"row {row}: {exc}") from exc

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``: each shard file read once, its chunks decoded on every core."""
        return read_rows([(self, start, stop)])[0]

    def ensure_present(self, start: int, stop: int) -> None:
        """Through zarr (an object store, or arrays read by zarr itself) a missing shard reads as fill
        values, so for a complete store every stored object behind rows ``start:stop`` is checked
        once (the build writes every chunk, even all-fill ones)."""
        if not self.must_exist or stop <= start:
            return
        array = self.array
        outer_size = array.metadata.chunk_grid.chunk_shape[0]  # the shard's rows when sharded
        others = _grid_ranges(array)[1:]
        for outer in range(start // outer_size, (stop - 1) // outer_size + 1):
            if outer in self._present:
                continue
            for rest in itertools.product(*others):
                key = _store_key(array, array.metadata.encode_chunk_key((outer, *rest)))
                if not _exists_now(array.store, key):
                    raise CelebaMaskError(_object_name(array, key), f"array {array.path!r}: stored object is "
                                          "missing from a complete store (lost or deleted); rebuild it with --resume")
            with self._lock:
                self._present.add(outer)

    def _index(self, shard: int, path: str) -> np.ndarray | None:
        with self._lock:
            if shard in self._indexes:
                return self._indexes[shard]
        assert self.files is not None  # only the direct path has shard files
        index_bytes = self.files.chain.index_bytes
        try:
            with open(path, "rb") as handle:
                handle.seek(-index_bytes, os.SEEK_END)
                raw = handle.read(index_bytes)
        except FileNotFoundError:
            if self.must_exist:
                raise CelebaMaskError(path, f"array {self.array.path!r}: shard file is missing from a complete "
                                            "store (lost or deleted); rebuild it with --resume") from None
            return None  # not written (yet): not cached, a build may still write it
        body, stored = raw[:-4], raw[-4:]
        if np.uint32(google_crc32c.value(body)).tobytes() != stored:
            raise CelebaMaskError(path, "shard index fails its crc32c check (damaged file)")
        index = np.frombuffer(body, dtype="<u8").reshape(-1, 2)
        with self._lock:
            self._indexes[shard] = index
        return index


def read_whole(array: zarr.Array, must_exist: bool) -> np.ndarray:
    """A whole (small, per-sample) array; for a complete store every chunk object must be there,
    since zarr reads a missing one as fill values (sample ids of 0, no attributes)."""
    data = np.asarray(array[...])
    if must_exist and array.shape:
        expected = [_store_key(array, array.metadata.encode_chunk_key(coords))
                    for coords in itertools.product(*_grid_ranges(array))]
        prefix = _store_key(array, "")
        _forget_listing(array.store, prefix)

        async def listed() -> set[str]:
            return {key async for key in array.store.list_prefix(prefix)}

        present = sync(listed())
        lost = [key for key in expected if key not in present]
        if lost:
            raise CelebaMaskError(_object_name(array, lost[0]),
                                  f"array {array.path!r}: {len(lost)} of {len(expected)} chunk objects are missing "
                                  "from a complete store (lost or deleted); rebuild it with --resume")
    return data


def _grid_ranges(array: zarr.Array) -> list[range]:
    """Every coordinate of the array's stored objects (shards when sharded, else chunks), per dimension."""
    grid = array.metadata.chunk_grid.chunk_shape
    return [range(math.ceil(n / c)) for n, c in zip(array.shape, grid)]


def _store_key(array: zarr.Array, key: str) -> str:
    """A chunk key of ``array`` as a key of its store."""
    return f"{array.path}/{key}" if array.path else key


def _fs_path(store: zarr.abc.store.Store, key: str) -> str:
    """The fsspec path of a store key (only for stores with an ``fs``)."""
    return f"{str(getattr(store, 'path', '')).rstrip('/')}/{key}"


def _forget_listing(store: zarr.abc.store.Store, key: str) -> None:
    """fsspec may answer from a folder listing made before the loss: ask the store itself."""
    fs = getattr(store, "fs", None)
    if fs is not None:
        fs.invalidate_cache(_fs_path(store, key))


def _exists_now(store: zarr.abc.store.Store, key: str) -> bool:
    _forget_listing(store, key)
    return bool(sync(store.exists(key)))


def _object_name(array: zarr.Array, key: str) -> str:
    """A stored object as the user knows it: a file path, or the store URL and key."""
    fs = getattr(array.store, "fs", None)
    if fs is not None:
        return str(fs.unstrip_protocol(_fs_path(array.store, key)))
    return f"{str(array.store).removeprefix('file://').rstrip('/')}/{key}"


def read_rows(requests: list[tuple[RowReader, int, int]]) -> list[np.ndarray]:
    """Row ranges of several arrays (a batch's images and labels) decoded together on the thread
    pool, from read-only mappings of the shard files (the files are never copied into memory)."""
    outs: list[np.ndarray] = []
    jobs: list[tuple[Chain, str, int, np.ndarray, np.ndarray, np.ndarray]] = []
    mappings: list[mmap.mmap] = []
    try:
        for reader, start, stop in requests:
            if reader.files is None:
                reader.ensure_present(start, stop)
                outs.append(np.asarray(reader.array[start:stop]))
                continue
            files, chain = reader.files, reader.files.chain
            out = np.empty((stop - start, *reader.array.shape[1:]), dtype=chain.dtype)
            outs.append(out)
            per_shard = chain.chunks_per_shard[0]
            for shard in range(start // per_shard, (stop - 1) // per_shard + 1 if stop > start else 0):
                first, last = max(start, shard * per_shard), min(stop, (shard + 1) * per_shard)
                path = files.path(shard)
                index = reader._index(shard, path)
                if index is None:
                    out[first - start : last - start] = chain.fill_value
                    continue
                with open(path, "rb") as handle:
                    mappings.append(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
                whole = np.frombuffer(mappings[-1], dtype=np.uint8)
                jobs += [(chain, path, row, whole, index[row - shard * per_shard], out[row - start])
                         for row in range(first, last)]
        list(_decode_pool().map(_decode_job, jobs))
    finally:
        jobs.clear()
        whole = None
        for mapped in mappings:
            try:
                mapped.close()
            except BufferError:  # an error traceback still holds a view; the mapping goes with it
                pass
    return outs


_ROW_BUFFERS = threading.local()


def convert_rows(reader: RowReader, rows: Sequence[int], convert: Callable[[np.ndarray, np.ndarray], object],
                 out: np.ndarray) -> np.ndarray:
    """``convert(row, out[k])`` for each ``rows[k]`` (any order) on the decode pool, each row decoded
    into a buffer of its thread: the batch's decoded rows are never all in memory at once. Label
    maps painted from masks read 4 bytes a pixel and keep 1; decoding a whole batch first costs
    as much again in memory traffic and page faults (bench/masks.py). Needs the direct path."""
    assert reader.files is not None, "convert_rows reads shard files directly"
    chain, per_shard = reader.files.chain, reader.files.chain.chunks_per_shard[0]
    shape = tuple(reader.array.shape[1:])
    mappings: dict[int, mmap.mmap] = {}
    jobs: list[tuple[Chain, str, int, np.ndarray | None, np.ndarray | None, np.ndarray]] = []

    def job(item: tuple[Chain, str, int, np.ndarray | None, np.ndarray | None, np.ndarray]) -> None:
        key = (chain.dtype.str, shape)
        buffer = getattr(_ROW_BUFFERS, "buffers", {}).get(key)
        if buffer is None:
            buffer = np.empty(shape, dtype=chain.dtype)
            _ROW_BUFFERS.buffers = {**getattr(_ROW_BUFFERS, "buffers", {}), key: buffer}
        _, path, row, whole, entry, target = item
        if whole is None or entry is None:  # a shard not written (yet): fill values, as read_rows gives
            buffer[...] = chain.fill_value
        else:
            _decode_job((chain, path, row, whole, entry, buffer))
        convert(buffer, target)

    try:
        for k, row in enumerate(int(r) for r in rows):
            shard = row // per_shard
            path = reader.files.path(shard)
            index = reader._index(shard, path)
            if index is None:
                jobs.append((chain, path, row, None, None, out[k]))
                continue
            if shard not in mappings:
                with open(path, "rb") as handle:
                    mappings[shard] = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            whole = np.frombuffer(mappings[shard], dtype=np.uint8)
            jobs.append((chain, path, row, whole, index[row - shard * per_shard], out[k]))
        list(_decode_pool().map(job, jobs))
    finally:
        jobs.clear()
        whole = None
        for mapped in mappings.values():
            try:
                mapped.close()
            except BufferError:  # an error traceback still holds a view; the mapping goes with it
                pass
    return out


def _decode_job(job: tuple[Chain, str, int, np.ndarray, np.ndarray, np.ndarray]) -> None:
    chain, path, row, whole, entry, out = job
    if entry[0] == _EMPTY:
        out[...] = chain.fill_value
        return
    offset, length = int(entry[0]), int(entry[1])
    try:
        chain.decode(whole[offset : offset + length], out=out)
    except ValueError as exc:
        raise CelebaMaskError(path, f"row {row}: {exc}") from exc
