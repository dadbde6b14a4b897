"""Questions a store answers from its annotation arrays: which rows are in a split, have an
attribute or show a region, and where on a label map an attribute's regions are.

Mixed into :class:`celebamask.read.reader.CelebAMaskStore`. The per-sample annotation arrays are a few
MB for the full dataset, so each is read whole once and kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from celebamask.dataset import ARRAYS_BY_FILE
from celebamask.errors import CelebaMaskError
from celebamask.store.layout import UNPAINTED_ARRAYS
from celebamask.store.shards import read_whole
from celebamask.read.regions import (
    ATTRIBUTE_REGIONS_PATH,
    CLASS_ARRAYS,
    AttributeRegions,
    class_statistics,
    load_attribute_regions,
)

ANNOTATION_ARRAYS = (*(name for arrays in ARRAYS_BY_FILE.values() for name in arrays), *CLASS_ARRAYS,
                     *UNPAINTED_ARRAYS)


def _missing_reason(name: str) -> str:
    for file, arrays in ARRAYS_BY_FILE.items():
        if name in arrays:
            return f"the source had no {file} when it was built"
    if name in UNPAINTED_ARRAYS:
        return "it was built by a celebamask without unpainted (per-mask) statistics; rebuild it"
    return "it was built by a celebamask without region statistics"


class AnnotationQueries:
    group: zarr.Group
    location: str
    labels: zarr.Array

    if TYPE_CHECKING:
        @property
        def complete(self) -> bool: ...
        def __len__(self) -> int: ...
        def class_id(self, name: str) -> int: ...
        def _row(self, row: int) -> int: ...

    def annotation(self, name: str) -> np.ndarray:
        """A whole per-sample annotation array (``split``, ``attributes``, ``class_area`` …), cached."""
        if name not in ANNOTATION_ARRAYS:
            raise KeyError(f"{name!r} is not an annotation array; those are: {', '.join(ANNOTATION_ARRAYS)}")
        cache: dict[str, np.ndarray] = self.__dict__.setdefault("_annotation_cache", {})
        if name not in cache:
            if name not in self.group:
                raise CelebaMaskError(self.location, f"store has no {name!r} array: {_missing_reason(name)}")
            cache[name] = read_whole(self.group[name], self.complete)  # type: ignore[arg-type]
        return cache[name]

    def annotation_names(self, name: str) -> list[str]:
        """The names of the columns (or values, for ``split``) of an annotation array."""
        self.annotation(name)
        return list(self.group[name].attrs["names"])  # type: ignore[arg-type]

    def _column(self, array: str, name: str, what: str) -> int:
        names = self.annotation_names(array)
        try:
            return names.index(name)
        except ValueError:
            raise KeyError(f"unknown {what} {name!r}; this store has: {', '.join(names)}") from None

    def split(self, name: str) -> np.ndarray:
        """Row indices of the samples in split ``name`` (train, val or test)."""
        return np.flatnonzero(self.annotation("split") == self._column("split", name, "split"))

    def attribute(self, name: str) -> np.ndarray:
        """Per row: whether the CelebA attribute ``name`` is present (bool)."""
        return self.annotation("attributes")[:, self._column("attributes", name, "attribute")] == 1

    def region(self, row: int, names: str | Iterable[str], painted: bool = True) -> np.ndarray:
        """Where the label map of ``row`` is any of the classes ``names`` (bool mask); ``painted=False``:
        where any of their own masks is on (from ``masks``: e.g. the whole pair of glasses)."""
        if not painted:
            return self.own_mask(row, names)  # type: ignore[attr-defined]
        ids = [self.class_id(n) for n in ([names] if isinstance(names, str) else names)]
        return np.isin(np.asarray(self.labels[self._row(row)]), ids)

    def attribute_region(
        self, row: int, attribute: str, mapping: str | Path | AttributeRegions | None = None,
        painted: bool = True,
    ) -> np.ndarray:
        """Where the regions that show ``attribute`` are on the label map of ``row``, by the map in
        ``configs/attribute_regions.toml`` (or ``mapping``: another TOML file or a loaded map)."""
        if not isinstance(mapping, AttributeRegions):
            mapping = load_attribute_regions(mapping or ATTRIBUTE_REGIONS_PATH)
        return self.region(row, mapping.regions_of(attribute), painted=painted)

    def select(
        self,
        split: str | None = None,
        present: Iterable[str] | None = None,
        attributes: Mapping[str, bool] | None = None,
        exclude_flagged: bool = False,
        painted: bool = True,
    ) -> np.ndarray:
        """Row indices in ``split`` whose label map shows every class in ``present`` and whose
        attributes have the given values, e.g. ``select("test", ["eye_g"], {"Eyeglasses": True})``;
        ``exclude_flagged`` leaves out the known flawed samples (configs/known_issues.toml);
        ``painted=False`` asks for each class's own mask being non-empty, not what painting left."""
        from celebamask.read.flags import unflagged_rows

        keep = unflagged_rows(self.group, len(self)) if exclude_flagged else np.ones(len(self), dtype=bool)
        if split is not None:
            keep &= self.annotation("split") == self._column("split", split, "split")
        for name in present or ():
            if painted:
                keep &= self.annotation("class_present")[:, self.class_id(name)]
            else:
                keep &= self.annotation("class_present_unpainted")[:, self._column("class_present_unpainted", name, "mask class")]
        for name, wanted in (attributes or {}).items():
            keep &= self.attribute(name) == bool(wanted)
        return np.flatnonzero(keep)

    def class_statistics(self, split: str | None = None, painted: bool = True) -> dict[str, Any]:
        """Per class, images where present and mean area % where present (the published table's
        quantities), over ``split`` or all rows; plus the number of rows in each split.

        Each mask class also gets ``images_unpainted`` / ``area_percent_unpainted`` (its own mask,
        before painting: what it loses to overlaps); ``painted=False`` orders the classes by those."""
        rows = slice(None) if split is None else self.split(split)
        present, area = self.annotation("class_present")[rows], self.annotation("class_area")[rows]
        pixels = int(np.prod(self.labels.shape[1:]))
        split_counts = None
        if "split" in self.group:
            codes = self.annotation("split")
            split_counts = {name: int((codes == k).sum()) for k, name in enumerate(self.annotation_names("split"))}
        skipped = 0
        if "valid" in self.group:  # rows a build skipped (--on-error skip) count in no class
            skipped = int((~read_whole(self.group["valid"], self.complete)[rows]).sum())  # type: ignore[arg-type]
        from celebamask.read.flags import flag_counts

        return {
            "samples": int(present.shape[0]),
            "skipped": skipped,
            "flagged": flag_counts(self.group, rows),  # known flaws per flag (configs/known_issues.toml)
            "split": split,
            "split_counts": split_counts,
            "classes": self._with_unpainted(class_statistics(present, area, self.annotation_names("class_area"), pixels),
                                            rows, pixels, painted),
        }

    def _with_unpainted(self, classes: list[dict[str, Any]], rows: Any, pixels: int, painted: bool) -> list[dict[str, Any]]:
        if not all(name in self.group for name in UNPAINTED_ARRAYS):
            if not painted:
                raise CelebaMaskError(self.location, f"store has no {UNPAINTED_ARRAYS[0]!r} array: "
                                                     f"{_missing_reason(UNPAINTED_ARRAYS[0])}")
            return classes
        present = self.annotation("class_present_unpainted")[rows]
        area = self.annotation("class_area_unpainted")[rows]
        unpainted = {row["name"]: row for row in
                     class_statistics(present, area, self.annotation_names("class_area_unpainted"), pixels)}
        for row in classes:
            own = unpainted.get(row["name"])
            row["images_unpainted"] = own["images"] if own else None
            row["area_percent_unpainted"] = own["area_percent"] if own else None
        if not painted:
            classes.sort(key=lambda r: (r["images_unpainted"] is None, -(r["images_unpainted"] or 0), r["id"]))
        return classes
