"""Attribution maps to score: a ``.npy`` file, a Zarr array (local or URL) or numpy/torch in memory,
(N, H, W) or (N, C, H, W); channels reduced by ``sum`` or ``abs-sum``; resized bilinearly to
the label grid when their size differs. Read a batch at a time, so memory stays bounded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from celebamask.errors import CelebaMaskError

REDUCTIONS = ("sum", "abs-sum")


@dataclass
class MapSource:
    """Rows of attribution maps; ``location`` names them in errors, ``sample_ids`` (if given) match rows to the store."""

    array: Any  # np.ndarray, np.memmap or zarr.Array: anything sliceable along axis 0
    location: str
    sample_ids: np.ndarray | None = None
    reduce: str = "sum"

    def __post_init__(self) -> None:
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"unknown channel reduction {self.reduce!r}; known: {', '.join(REDUCTIONS)}")
        if len(self.array.shape) not in (3, 4):
            raise CelebaMaskError(self.location, f"maps must be (N, H, W) or (N, C, H, W), not shape {tuple(self.array.shape)}")
        if not np.issubdtype(np.dtype(self.array.dtype), np.floating) and not np.issubdtype(np.dtype(self.array.dtype), np.integer):
            raise CelebaMaskError(self.location, f"maps must be numbers, not {self.array.dtype}")

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.array.shape[-2]), int(self.array.shape[-1])

    def describe(self, grid: tuple[int, int]) -> dict[str, Any]:
        channels = int(self.array.shape[1]) if len(self.array.shape) == 4 else None
        return {"location": self.location, "shape": list(self.array.shape), "dtype": str(self.array.dtype),
                "channels_reduced_by": self.reduce if channels else None,
                "resized": None if self.size == grid else f"bilinear {self.size[0]}x{self.size[1]} -> {grid[0]}x{grid[1]}"}

    def read(self, rows: np.ndarray | slice, grid: tuple[int, int]) -> np.ndarray:
        """Maps of ``rows`` as (B, *grid) floats, checked finite."""
        raw = np.asarray(self.array[rows])
        if raw.dtype.kind != "f" or raw.dtype.itemsize < 4:
            raw = raw.astype(np.float32)
        if raw.ndim == 4:
            raw = (np.abs(raw) if self.reduce == "abs-sum" else raw).sum(axis=1, dtype=raw.dtype)
        bad = ~np.isfinite(raw).reshape(len(raw), -1).all(axis=1)
        if bad.any():
            first = np.arange(len(self))[rows][np.flatnonzero(bad)[0]]
            raise CelebaMaskError(self.location, f"map {first} has NaN or inf values")
        if raw.shape[1:] != grid:
            raw = np.stack([resize_bilinear(m, grid) for m in raw])
        return raw


def resize_bilinear(attribution: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with half-pixel centres (align_corners=False, as torch's interpolate), float64."""
    def axis(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
        low = np.floor(position).astype(np.intp)
        high = np.minimum(low + 1, source - 1)
        return low, high, position - low

    y0, y1, fy = axis(attribution.shape[0], grid[0])
    x0, x1, fx = axis(attribution.shape[1], grid[1])
    a = attribution.astype(np.float64)
    rows = a[y0] * (1 - fy)[:, None] + a[y1] * fy[:, None]
    return rows[:, x0] * (1 - fx)[None, :] + rows[:, x1] * fx[None, :]


def open_maps(maps: Any, *, sample_ids: Any = None, reduce: str = "sum",
              storage_options: dict[str, Any] | None = None) -> MapSource:
    """A :class:`MapSource` from a path/URL (``.npy``; a Zarr array; a Zarr group holding ``map``
    and optionally ``sample_id``) or an in-memory numpy/torch array."""
    if isinstance(maps, MapSource):
        return maps
    if isinstance(maps, (str, os.PathLike)):
        return _open_path(os.fspath(maps), sample_ids, reduce, storage_options)
    if hasattr(maps, "detach"):  # a torch tensor
        maps = maps.detach().cpu().numpy()
    array = np.asarray(maps)
    return MapSource(array, "<maps in memory>", _ids(sample_ids), reduce)


def _ids(sample_ids: Any) -> np.ndarray | None:
    return None if sample_ids is None else np.asarray(sample_ids, dtype=np.int64).reshape(-1)


def _open_path(location: str, sample_ids: Any, reduce: str, storage_options: dict[str, Any] | None) -> MapSource:
    if location.endswith(".npy"):
        try:
            array = np.load(location, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise CelebaMaskError(location, f"cannot read maps: {exc}") from exc
        return MapSource(array, location, _ids(sample_ids), reduce)
    import zarr

    try:
        node = zarr.open(location, mode="r", storage_options=storage_options) if "://" in location \
            else zarr.open(location, mode="r")
    except Exception as exc:  # noqa: BLE001 - any failure to open is the user's path
        raise CelebaMaskError(location, f"cannot read maps (a .npy, a Zarr array, or a Zarr group with 'map'): {exc}") from exc
    if isinstance(node, zarr.Group):
        if "map" not in node:
            raise CelebaMaskError(location, "Zarr group has no 'map' array")
        if sample_ids is None and "sample_id" in node:
            sample_ids = node["sample_id"][...]
        node = node["map"]
    return MapSource(node, location, _ids(sample_ids), reduce)
