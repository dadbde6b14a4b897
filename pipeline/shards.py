"""Whole-shard writes and single-chunk reads of the store's sharded arrays, without zarr's async machinery.

zarr-python sends every chunk through asyncio and a thread pool; for one 512² image that
bookkeeping costs about as much as compressing it, and it dominates reading one sample. The
sharding format is fixed by the Zarr v3 specification (encoded chunks back to back, then an
index of (offset, length) uint64 pairs with a crc32c), so a worker that owns a whole shard can
encode it directly, and a reader can fetch one chunk with one read. Only the codec chains
this package creates are handled here; any other array (or codec) goes through zarr itself.
tests/test_shards.py checks both directions against zarr.
"""

from __future__ import annotations

import mmap
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import google_crc32c
import numpy as np
import zarr

from pipeline.codecs import JpegCodec, RgbGradientCodec, rgb_gradient_decode, rgb_gradient_encode
from pipeline.errors import CelebaMaskError

_EMPTY = np.uint64(2**64 - 1)  # index entry of a chunk that was never written
RgbGradientName = RgbGradientCodec.name
_SUPPORTED = {"bytes", "transpose", "blosc", "zstd", "crc32c", RgbGradientName, JpegCodec.name}


@dataclass(frozen=True)
class _Chain:
    """One array's inner chunk codecs, as plain functions."""

    chunk_shape: tuple[int, ...]
    chunks_per_shard: tuple[int, ...]
    dtype: np.dtype
    fill_value: Any
    codecs: tuple[dict[str, Any], ...]

    @property
    def index_bytes(self) -> int:
        return int(np.prod(self.chunks_per_shard)) * 16 + 4

    def encode(self, chunk: np.ndarray) -> list[bytes | np.ndarray]:
        """The encoded chunk as buffers to write back to back (a trailing checksum stays a
        separate 4-byte piece, so the compressed bytes are never copied)."""
        array = chunk
        data: bytes | np.ndarray | None = None
        checksum: list[bytes | np.ndarray] = []
        for codec in self.codecs:
            name, config = codec["name"], codec.get("configuration", {})
            if name == "transpose":
                array = np.ascontiguousarray(array.transpose(config["order"]))
            elif name == RgbGradientName:
                array = rgb_gradient_encode(array)
            elif name == "bytes":
                data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
            elif name == JpegCodec.name:
                import imagecodecs

                data = bytes(imagecodecs.jpeg8_encode(array.reshape(array.shape[-3:]), level=config["quality"]))
            elif name == "crc32c" and self.codecs[-1] is codec:
                assert data is not None
                checksum = [np.uint32(google_crc32c.value(data)).tobytes()]
            elif name == "crc32c":
                assert data is not None
                data = bytes(data) + np.uint32(google_crc32c.value(data)).tobytes()
            else:
                assert data is not None
                data = _compressor(name, config).encode(data)
        assert data is not None
        return [data, *checksum]

    def decode(self, data: bytes | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The chunk's array; decoded straight into ``out`` (C-contiguous, chunk-sized) when the
        chain is just a compressor over the raw bytes."""
        array: np.ndarray | None = None
        for position, codec in reversed(list(enumerate(self.codecs))):
            name, config = codec["name"], codec.get("configuration", {})
            if name == "crc32c":
                body, stored = data[:-4], bytes(data[-4:])  # bytes or a uint8 array
                if np.uint32(google_crc32c.value(body)).tobytes() != stored:
                    raise ValueError("chunk fails its crc32c check (damaged file)")
                data = body
            elif name == "bytes":
                array = np.frombuffer(data, dtype=self.dtype).reshape(self._encoded_shape())
            elif name == JpegCodec.name:
                import imagecodecs

                array = imagecodecs.jpeg8_decode(data).reshape(self.chunk_shape)
            elif name == RgbGradientName:
                assert array is not None
                array = rgb_gradient_decode(array)
            elif name == "transpose":
                assert array is not None
                array = array.transpose(np.argsort(config["order"]))
            elif out is not None and position == 1 and self.codecs[0]["name"] == "bytes":
                _compressor(name, config).decode(data, out=out.reshape(-1).view(np.uint8))
                return out
            else:
                data = _compressor(name, config).decode(data)
        assert array is not None
        if out is not None:
            out[...] = array.reshape(out.shape)
            return out
        return array

    def _encoded_shape(self) -> tuple[int, ...]:
        shape = self.chunk_shape
        for codec in self.codecs:
            if codec["name"] == "transpose":
                shape = tuple(shape[axis] for axis in codec["configuration"]["order"])
        return shape


_COMPRESSORS: dict[str, Any] = {}


def _compressor(name: str, config: dict[str, Any]) -> Any:
    key = f"{name}{sorted(config.items())}"
    if key not in _COMPRESSORS:
        if name == "zstd":
            from numcodecs import Zstd

            _COMPRESSORS[key] = Zstd(level=config.get("level", 0), checksum=config.get("checksum", False))
        else:
            from numcodecs import Blosc

            shuffle = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}
            _COMPRESSORS[key] = Blosc(cname=config["cname"], clevel=config["clevel"],
                                      shuffle=shuffle[config["shuffle"]], blocksize=config.get("blocksize", 0))
    return _COMPRESSORS[key]


def chunk_chain(array: zarr.Array) -> _Chain | None:
    """The array's inner codecs if it is sharded with a chain handled here, else None."""
    codecs = [c.to_dict() for c in array.metadata.codecs]
    if len(codecs) != 1 or codecs[0]["name"] != "sharding_indexed":
        return None
    config = codecs[0]["configuration"]
    inner = tuple(config["codecs"])
    index = [c["name"] for c in config["index_codecs"]]
    if (config.get("index_location", "end") != "end" or index != ["bytes", "crc32c"]
            or not all(c["name"] in _SUPPORTED for c in inner) or array.dtype != np.uint8):
        return None
    if not isinstance(array.store, zarr.storage.LocalStore):
        return None
    chunk_shape = tuple(config["chunk_shape"])
    shard_shape = tuple(array.shards or ())
    return _Chain(chunk_shape, tuple(s // c for s, c in zip(shard_shape, chunk_shape)), np.dtype(array.dtype),
                  array.fill_value, inner)


_POOL: list[ThreadPoolExecutor] = []


def _decode_pool() -> ThreadPoolExecutor:
    """Decoders release the GIL, so a batch decodes on every core."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="celebamask-decode"))
    return _POOL[0]


def _shard_path(array: zarr.Array, shard_coords: tuple[int, ...]) -> str:
    key = array.metadata.encode_chunk_key(shard_coords)
    return os.path.join(str(array.store.root), array.path, key)


def write_whole_shard(array: zarr.Array, start: int, values: np.ndarray) -> bool:
    """Write rows ``start ...`` that fill one shard of ``array`` (the last may be short); False
    if the array is not one handled here (the caller then lets zarr write)."""
    chain = chunk_chain(array)
    if chain is None or chain.chunk_shape[0] != 1 or any(c != 1 for c in chain.chunks_per_shard[1:]):
        return False
    rows_per_shard = chain.chunks_per_shard[0]
    if start % rows_per_shard or len(values) != min(rows_per_shard, array.shape[0] - start):
        return False
    if tuple(values.shape[1:]) != tuple(array.shape[1:]):
        raise ValueError(f"rows of shape {values.shape[1:]} for an array of rows {array.shape[1:]}")
    values = np.asarray(values, dtype=np.uint8)
    offsets_and_lengths = np.full((rows_per_shard, 2), _EMPTY, dtype=np.uint64)
    parts: list[bytes | np.ndarray] = []
    offset = 0
    for row in range(len(values)):
        encoded = chain.encode(values[row : row + 1])
        length = sum(memoryview(piece).nbytes for piece in encoded)
        offsets_and_lengths[row] = (offset, length)
        parts += encoded
        offset += length
    index = offsets_and_lengths.astype("<u8").tobytes()
    parts.append(index + np.uint32(google_crc32c.value(index)).tobytes())
    path = _shard_path(array, (start // rows_per_shard,) + (0,) * (array.ndim - 1))
    _write_file(path, parts)
    return True


def _write_file(path: str, parts: list[bytes | np.ndarray]) -> None:
    """Write through a temporary beside ``path`` and rename: a shard file is either absent or whole."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"  # what a resume clears away if a worker was killed
    try:
        with open(partial, "wb") as handle:
            for piece in parts:
                handle.write(piece)
        os.replace(partial, path)
    except OSError:
        if os.path.exists(partial):
            os.remove(partial)
        raise


class RowReader:
    """Reads one row of a sharded array (one chunk) with one read; shard indexes are cached."""

    def __init__(self, array: zarr.Array) -> None:
        self.array = array
        chain = chunk_chain(array)
        usable = chain is not None and chain.chunk_shape[0] == 1 and all(c == 1 for c in chain.chunks_per_shard[1:])
        self.chain = chain if usable else None
        self._indexes: dict[int, np.ndarray | None] = {}
        self._lock = threading.Lock()

    def __call__(self, row: int) -> np.ndarray:
        if self.chain is None:
            return np.asarray(self.array[row])
        shard, within = divmod(row, self.chain.chunks_per_shard[0])
        path = _shard_path(self.array, (shard,) + (0,) * (self.array.ndim - 1))
        index = self._index(shard, path)
        if index is None or index[within, 0] == _EMPTY:
            return np.full(self.array.shape[1:], self.chain.fill_value, dtype=self.chain.dtype)
        offset, length = (int(v) for v in index[within])
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        if len(data) != length:
            raise CelebaMaskError(path, f"shard ends inside the chunk of row {row}")
        try:
            return self.chain.decode(data).reshape(self.array.shape[1:])
        except ValueError as exc:
            raise CelebaMaskError(path, f"row {row}: {exc}") from exc

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``: each shard file read once, its chunks decoded on every core."""
        return read_rows([(self, start, stop)])[0]

    def _index(self, shard: int, path: str) -> np.ndarray | None:
        with self._lock:
            if shard in self._indexes:
                return self._indexes[shard]
        assert self.chain is not None
        try:
            with open(path, "rb") as handle:
                handle.seek(-self.chain.index_bytes, os.SEEK_END)
                raw = handle.read(self.chain.index_bytes)
        except FileNotFoundError:
            return None  # not written (yet): not cached, a build may still write it
        body, stored = raw[:-4], raw[-4:]
        if np.uint32(google_crc32c.value(body)).tobytes() != stored:
            raise CelebaMaskError(path, "shard index fails its crc32c check (damaged file)")
        index = np.frombuffer(body, dtype="<u8").reshape(-1, 2)
        with self._lock:
            self._indexes[shard] = index
        return index


def read_rows(requests: list[tuple[RowReader, int, int]]) -> list[np.ndarray]:
    """Row ranges of several arrays (a batch's images and labels) decoded together on the thread
    pool, from read-only mappings of the shard files (the files are never copied into memory)."""
    outs: list[np.ndarray] = []
    jobs: list[tuple[_Chain, str, int, np.ndarray, np.ndarray, np.ndarray]] = []
    mappings: list[mmap.mmap] = []
    try:
        for reader, start, stop in requests:
            if reader.chain is None:
                outs.append(np.asarray(reader.array[start:stop]))
                continue
            out = np.empty((stop - start, *reader.array.shape[1:]), dtype=reader.chain.dtype)
            outs.append(out)
            per_shard = reader.chain.chunks_per_shard[0]
            for shard in range(start // per_shard, (stop - 1) // per_shard + 1 if stop > start else 0):
                first, last = max(start, shard * per_shard), min(stop, (shard + 1) * per_shard)
                path = _shard_path(reader.array, (shard,) + (0,) * (reader.array.ndim - 1))
                index = reader._index(shard, path)
                if index is None:
                    out[first - start : last - start] = reader.chain.fill_value
                    continue
                with open(path, "rb") as handle:
                    mappings.append(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
                whole = np.frombuffer(mappings[-1], dtype=np.uint8)
                jobs += [(reader.chain, path, row, whole, index[row - shard * per_shard], out[row - start])
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


def _decode_job(job: tuple[_Chain, str, int, np.ndarray, np.ndarray, np.ndarray]) -> None:
    chain, path, row, whole, entry, out = job
    if entry[0] == _EMPTY:
        out[...] = chain.fill_value
        return
    offset, length = int(entry[0]), int(entry[1])
    try:
        chain.decode(whole[offset : offset + length], out=out)
    except ValueError as exc:
        raise CelebaMaskError(path, f"row {row}: {exc}") from exc
