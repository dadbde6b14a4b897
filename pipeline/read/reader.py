"""Open a built store lazily: nothing is read until a sample, an array slice or a mask is asked for."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from celebamask.config import ClassInfo
from celebamask.errors import CelebaMaskError
from celebamask.read.masks import MaskQueries
from celebamask.read.queries import AnnotationQueries
from celebamask.store.layout import ARRAY_TYPES, LAYOUT, OLDER_LAYOUTS, creation_state
from celebamask.store.location import as_target
from celebamask.store.shards import RowReader, read_rows, read_whole


class CelebAMaskStore(MaskQueries, AnnotationQueries):
    """A built store: ``images``/``labels`` are lazy zarr arrays, rows in ascending sample id.
    Annotation queries (``split``, ``attribute``, ``region``, ``select`` …) come from AnnotationQueries."""

    def __init__(self, group: zarr.Group, location: str, storage_options: dict[str, Any] | None = None) -> None:
        self.group = group
        self.location = location
        self.storage_options: dict[str, Any] = dict(storage_options or {})  # to open it again (torch workers)
        attrs = dict(group.attrs)
        self.attrs: dict[str, Any] = attrs
        self.images: zarr.Array = group["image"]  # type: ignore[assignment]
        self.labels: zarr.Array = group["label"]  # type: ignore[assignment]
        self.sample_ids: zarr.Array = group["sample_id"]  # type: ignore[assignment]
        self.classes: list[ClassInfo] = [
            ClassInfo(int(c["id"]), str(c["name"]), tuple(c["color"])) for c in attrs["classes"]  # type: ignore[arg-type]
        ]
        self.paint_order: list[str] = list(attrs["paint_order"])
        self.background: int = int(attrs["background"])
        self._ids_by_name = {c.name: c.id for c in self.classes}
        self._row_readers: dict[str, RowReader] = {}
        self._sample_id_cache: np.ndarray | None = None

    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("complete", False))

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.attrs.get("provenance", {}))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        state = "complete" if self.complete else "INCOMPLETE"
        return f"<CelebAMaskStore {self.location!r}: {len(self)} samples, {len(self.classes)} classes, {state}>"

    def __getitem__(self, row: int) -> dict[str, Any]:
        row = self._row(row)
        return {
            "image": self._read_row(self.images, row),
            "label": self._read_row(self.labels, row),
            "sample_id": int(self._sample_id_values()[row]),
        }

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` at once (images (n, size, size, 3), labels, sample ids): the fast way
        to stream the store in order, each shard file read once."""
        count = len(self)
        start, stop, _ = slice(start, stop).indices(count)
        stop = max(start, stop)
        for array in (self.images, self.labels):
            if array.path not in self._row_readers:
                self._row_readers[array.path] = RowReader(array, must_exist=self.complete)
        images, labels = read_rows([(self._row_readers[self.images.path], start, stop),
                                    (self._row_readers[self.labels.path], start, stop)])
        return {"image": images, "label": labels, "sample_id": self._sample_id_values()[start:stop].copy()}

    def _read_row(self, array: zarr.Array, row: int) -> np.ndarray:
        """One chunk by one file read (pipeline/store/shards.py); zarr's per-call machinery costs more than the decode."""
        if array.path not in self._row_readers:
            self._row_readers[array.path] = RowReader(array, must_exist=self.complete)
        return self._row_readers[array.path](row)

    def _sample_id_values(self) -> np.ndarray:
        if self._sample_id_cache is None:
            self._sample_id_cache = read_whole(self.sample_ids, self.complete)
        return self._sample_id_cache

    def class_id(self, name: str) -> int:
        try:
            return self._ids_by_name[name]
        except KeyError:
            raise KeyError(f"unknown class {name!r}; this store has: {', '.join(self._ids_by_name)}") from None

    def mask(self, row: int, name: str, painted: bool = True) -> np.ndarray:
        """Where the label map of ``row`` is ``name`` (after painting, so occluded parts are False);
        ``painted=False``: the class's own mask from ``masks``, overlaps kept."""
        if not painted:
            return self.own_mask(row, name)
        class_id = self.class_id(name)
        return self._read_row(self.labels, self._row(row)) == class_id

    def to_xarray(self, unpack_masks: bool = False, **open_zarr_kwargs: Any) -> Any:
        """The store as a lazy xarray Dataset with named coordinates (needs the ``notebook`` extra).

        Coordinates: ``sample_id`` (indexed, so ``ds.sel(sample_id=12)``), ``class`` (the class
        name of each label value), ``mask_class`` and ``mask_bit`` (the bits of ``masks``) and the
        ``names`` attribute of any array. ``unpack_masks=True`` adds ``class_mask`` (sample,
        mask_class, y, x) bool, each class's own mask, computed lazily from ``masks``. Keyword
        arguments go to ``xarray.open_zarr``, e.g. ``chunks={"sample": 64}`` for one dask task per shard.
        """
        from celebamask.read.xarray import to_xarray

        return to_xarray(self, unpack_masks=unpack_masks, **open_zarr_kwargs)

    def to_hf_dataset(self, split: str | Sequence[str] | None = None, **options: Any) -> Any:
        """The valid rows of ``split`` as a Hugging Face ``datasets.Dataset`` (needs the ``hf`` extra):
        ``image``/``label`` Image features, ``split`` a ClassLabel, one bool column per attribute.
        Options (``streaming``, ``cache_dir``, ``num_proc``, ``exclude_flagged``): ``celebamask.read.hf``."""
        from celebamask.read.hf import to_hf_dataset

        return to_hf_dataset(self, split, **options)

    def _row(self, row: int) -> int:
        count = len(self)
        index = int(row)
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError(f"row {row} out of range for a store of {count} samples")
        return index


def _damaged_metadata(location: str, what: str, exc: Exception) -> CelebaMaskError:
    return CelebaMaskError(location, f"store is damaged: {what} cannot be read ({exc}); "
                                     "`celebamask verify` lists its problems")


def open_store(
    path: str | Path, *, allow_incomplete: bool = False, storage_options: dict[str, Any] | None = None
) -> CelebAMaskStore:
    """Open a store read-only; an unfinished build is refused unless ``allow_incomplete``.

    ``path`` may be a folder or a URL (``s3://bucket/celebamask-hq.zarr``, …) with fsspec
    ``storage_options`` (credentials otherwise come from the usual environment variables).
    """
    location = os.fspath(path)
    target = as_target(location, storage_options)
    try:
        group = target.open_group(mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError,
            zarr.errors.ContainsArrayError) as exc:  # the last: pointed at an array, e.g. STORE/label
        if creation_state(target) == "creating":  # killed before its first metadata file was whole
            raise CelebaMaskError(location, "store is incomplete (the build stopped while creating it); "
                                            "build it again") from exc
        raise CelebaMaskError(location, f"not a celebamask store ({exc})") from exc
    except ValueError as exc:  # a zarr.json that is not JSON, or not valid metadata
        raise _damaged_metadata(location, "its zarr.json", exc) from exc
    if "classes" not in group.attrs:
        if group.attrs.get("complete") is False:  # a build killed while it was creating the store
            raise CelebaMaskError(location, "store is incomplete (the build stopped while creating it); build it again")
        raise CelebaMaskError(location, "not a celebamask store: no class table in its attributes")
    layout = group.attrs.get("layout")
    if layout is not None and layout not in (LAYOUT, *OLDER_LAYOUTS):  # arrays may mean something else
        raise CelebaMaskError(location, f"store has layout {layout!r}, which this celebamask does not know (it reads "
                                        f"{', '.join((*OLDER_LAYOUTS, LAYOUT))}); upgrade celebamask to read it")
    if group.attrs.get("complete") is not True and not allow_incomplete:
        raise CelebaMaskError(
            location, "store is incomplete (the build did not finish); pass allow_incomplete=True to read it anyway"
        )
    try:
        missing = [name for name in ("image", "label", "sample_id") if name not in group]
        retyped = [f"{name} is {group[name].dtype}, not {ARRAY_TYPES[name]}"  # type: ignore[union-attr]
                   for name in ("image", "label", "sample_id", "valid", "masks")
                   if name not in missing and name in group and str(group[name].dtype) != ARRAY_TYPES[name]]
    except ValueError as exc:  # an array's zarr.json zarr cannot make sense of (shape, chunks, codecs)
        raise _damaged_metadata(location, "an array's metadata", exc) from exc
    if missing:
        state = "damaged" if group.attrs.get("complete") else "incomplete (the build stopped while creating it)"
        raise CelebaMaskError(location, f"store is {state}: no {' or '.join(missing)} array")
    if retyped:
        raise CelebaMaskError(location, f"store is damaged: {'; '.join(retyped)} (`celebamask verify` lists its problems)")
    return CelebAMaskStore(group, location, storage_options)
