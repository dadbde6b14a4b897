"""Encode, decode and write the store's chunk files directly, without importing zarr.

The layout is fixed by the Zarr v3 specification: a chunk is its codec chain's output; a shard
file holds encoded chunks back to back and ends with an index of (offset, length) uint64 pairs
and its crc32c. The coordinator reads each array's codecs from zarr's metadata (``shards.py``)
and hands workers a :class:`RowFiles` per array: plain data, so a worker process imports only
numpy and the codecs and starts in a fraction of the time zarr's import takes.
Only the codec chains this package creates are handled; tests/test_shards.py checks both
directions against zarr.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import google_crc32c
import numpy as np

from celebamask.errors import CelebaMaskError
from celebamask.store.prediction import (
    RGB_GRADIENT_CODEC,
    rgb_gradient_decode,
    rgb_gradient_encode,
)

EMPTY = np.uint64(2**64 - 1)  # index entry of a chunk that was never written
JPEG_CODEC = "celebamask.jpeg"
SUPPORTED_CODECS = {"bytes", "transpose", "blosc", "zstd", "crc32c", RGB_GRADIENT_CODEC, JPEG_CODEC}
PARTIAL_SUFFIX = ".partial"  # temporaries of a killed writer end so; a resume clears them
# <chunk>.<pid>.partial (write_file) and zarr's own <name without suffix>.<uuid hex>.partial
_WRITER_TEMPORARY = re.compile(r"(?:^|/)(?:\d+|zarr(?:\.json)?|(?:source_)?stamps\.json(?:\.gz)?)\.[0-9a-f]+"
                               + re.escape(PARTIAL_SUFFIX) + "$")


def is_writer_temporary(key: str) -> bool:
    """Whether ``key`` (or a file name) is a temporary a killed writer leaves (:func:`write_file`'s,
    zarr's): a store file's name, a pid or uuid, ``.partial``. A file of the user's that only ends
    in .partial is not one."""
    return _WRITER_TEMPORARY.search(key) is not None


@dataclass(frozen=True)
class Chain:
    """One array's chunk codecs (inside the shard, for a sharded array), as plain functions."""

    chunk_shape: tuple[int, ...]
    chunks_per_shard: tuple[int, ...]  # all 1 for an array that is not sharded
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
            elif name == RGB_GRADIENT_CODEC:
                array = rgb_gradient_encode(array)
            elif name == "bytes":
                little = array.astype(array.dtype.newbyteorder("<"), copy=False)
                data = np.ascontiguousarray(little).reshape(-1).view(np.uint8)
            elif name == JPEG_CODEC:
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
                data = compressor(name, config).encode(data)
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
                array = np.frombuffer(data, dtype=self.dtype.newbyteorder("<")).reshape(self._encoded_shape())
            elif name == JPEG_CODEC:
                import imagecodecs

                array = imagecodecs.jpeg8_decode(data).reshape(self.chunk_shape)
            elif name == RGB_GRADIENT_CODEC:
                assert array is not None
                array = rgb_gradient_decode(array)
            elif name == "transpose":
                assert array is not None
                array = array.transpose(np.argsort(config["order"]))
            elif out is not None and position == 1 and self.codecs[0]["name"] == "bytes" and self._native_bytes:
                compressor(name, config).decode(data, out=out.reshape(-1).view(np.uint8))
                return out
            else:
                data = compressor(name, config).decode(data)
        assert array is not None
        if out is not None:
            out[...] = array.reshape(out.shape)
            return out
        return array

    @property
    def _native_bytes(self) -> bool:
        """The dtype is little-endian, as the bytes codec stores it, so a compressor can write the
        stored bytes straight into an array of it."""
        return self.dtype.itemsize == 1 or self.dtype == self.dtype.newbyteorder("<")

    def _encoded_shape(self) -> tuple[int, ...]:
        shape = self.chunk_shape
        for codec in self.codecs:
            if codec["name"] == "transpose":
                shape = tuple(shape[axis] for axis in codec["configuration"]["order"])
        return shape


_COMPRESSORS: dict[str, Any] = {}


def compressor(name: str, config: dict[str, Any]) -> Any:
    """The numcodecs codec behind a zarr ``zstd`` or ``blosc`` codec configuration (cached)."""
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


@dataclass(frozen=True)
class RowFiles:
    """How one array of a local store keeps its rows: file k holds rows k*rows_per_file onwards,
    as one v3 shard (``sharded``) or as one plain chunk. Made by the coordinator from zarr's
    metadata; a worker writes whole files with it and never opens zarr."""

    folder: str  # the array's folder
    key_pattern: str  # the file's key in the folder with "{}" for the file number, e.g. "c/{}/0/0"
    chain: Chain
    sharded: bool
    rows: int  # rows in the array
    row_shape: tuple[int, ...]

    @property
    def rows_per_file(self) -> int:
        return self.chain.chunks_per_shard[0] if self.sharded else self.chain.chunk_shape[0]

    def path(self, file_number: int) -> str:
        return os.path.join(self.folder, *self.key_pattern.format(file_number).split("/"))

    def write(self, start: int, values: np.ndarray) -> None:
        """Rows ``start ...`` that fill one file (the array's last file may hold fewer rows)."""
        rows = RowWriter(self, start, len(values))
        for row, value in enumerate(values):
            rows.add(row, value)
        rows.write()


class RowWriter:
    """The rows of one file of an array, given one at a time, then written whole.

    In a shard each row is encoded as it is given: a sample's image is compressed while its pixels
    are still in the CPU's cache, not after the shard's other samples have pushed them out (with
    two workers that costs the build ~6%). A plain chunk is encoded whole at the end.
    """

    def __init__(self, files: RowFiles, start: int, count: int) -> None:
        per_file = files.rows_per_file
        if start % per_file or count != min(per_file, files.rows - start):
            raise ValueError(f"rows {start}..{start + count} are not one whole file of {per_file} rows")
        self.files, self.start = files, start
        self._encoded: list[list[bytes | np.ndarray] | None] = [None] * count
        # a plain chunk is always whole: rows past the array's end keep the fill value
        self._values = None if files.sharded else np.full((per_file, *files.row_shape), files.chain.fill_value,
                                                          dtype=files.chain.dtype)

    def add(self, row: int, value: np.ndarray) -> None:
        value = np.asarray(value, dtype=self.files.chain.dtype)
        if tuple(value.shape) != self.files.row_shape:
            raise ValueError(f"a row of shape {value.shape} for an array of rows {self.files.row_shape}")
        if self._values is not None:
            self._values[row] = value
        else:
            self._encoded[row] = self.files.chain.encode(value[None])

    def write(self) -> None:
        if self._values is not None:
            parts = self.files.chain.encode(self._values)
        else:
            parts = self._shard()
        write_file(self.files.path(self.start // self.files.rows_per_file), parts)

    def _shard(self) -> list[bytes | np.ndarray]:
        offsets_and_lengths = np.full((self.files.rows_per_file, 2), EMPTY, dtype=np.uint64)
        parts: list[bytes | np.ndarray] = []
        offset = 0
        for row, encoded in enumerate(self._encoded):
            if encoded is None:
                raise ValueError(f"row {self.start + row} of {self.files.folder} was never given")
            length = sum(memoryview(piece).nbytes for piece in encoded)
            offsets_and_lengths[row] = (offset, length)
            parts += encoded
            offset += length
        index = offsets_and_lengths.astype("<u8").tobytes()
        parts.append(index + np.uint32(google_crc32c.value(index)).tobytes())
        return parts


def cannot_write_shard(store: str, start: int, exc: OSError) -> CelebaMaskError:
    """The one line for a shard that could not be written (a full disk, a folder gone)."""
    return CelebaMaskError(store, f"cannot write shard at row {start}: {exc.strerror or exc}")


def write_file(path: str, parts: list[bytes | np.ndarray]) -> None:
    """Write through a temporary beside ``path`` and rename: a chunk file is either absent or whole."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}{PARTIAL_SUFFIX}"
    try:
        with open(partial, "wb") as handle:
            for piece in parts:
                handle.write(piece)
        os.replace(partial, path)
    except OSError:
        if os.path.exists(partial):
            os.remove(partial)
        raise
