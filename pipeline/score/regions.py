"""Region sources: which pixels make up each scored region, as atoms (disjoint pixel sets) and a
region × atom membership matrix that :func:`celebamask.score.metrics.score_map` adds up.

- ``label``: the painted label map (a partition; atoms are label values, a region is a set of class ids).
- ``masks``: the unpainted per-class bit masks (``masks`` array, bit k = class ``attrs["bits"][k]``);
  masks overlap, so atoms are the distinct bit codes of a map and a region is every code with one
  of its bits set (an occluded pair of glasses is still glasses).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from celebamask.errors import CelebaMaskError
from celebamask.read.regions import ATTRIBUTE_REGIONS_PATH, load_attribute_regions

REGION_SOURCES = ("label", "masks")


@dataclass(frozen=True)
class RegionSet:
    """Named regions, each a union of classes; ``attributes`` maps a region to the CelebA attribute it scores."""

    names: tuple[str, ...]
    classes: tuple[tuple[str, ...], ...]
    attributes: tuple[str | None, ...]
    source: str = "label"

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "regions": {n: list(c) for n, c in zip(self.names, self.classes)}}


def class_names(store: Any) -> list[str]:
    return [c.name for c in sorted(store.classes, key=lambda c: c.id)]


def region_set(store: Any, spec: str = "classes", mapping: str | Path | None = None, source: str = "label") -> RegionSet:
    """``classes`` (every class of the store's table, background included), ``attributes`` (the
    attribute → region map), or ``NAME,…`` where a name is a class, an attribute, or ``a+b`` (a union)."""
    if source not in REGION_SOURCES:
        raise ValueError(f"unknown region source {source!r}; known: {', '.join(REGION_SOURCES)}")
    known = class_names(store) if source == "label" else mask_bits(store)
    if spec == "classes":
        return RegionSet(tuple(known), tuple((n,) for n in known), (None,) * len(known), source)
    attribute_map = load_attribute_regions(mapping or ATTRIBUTE_REGIONS_PATH)
    if spec == "attributes":
        names = list(attribute_map.regions)
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    regions, attributes = [], []
    for name in names:
        if name in attribute_map.regions:
            parts, attribute = attribute_map.regions[name], name
        else:
            parts, attribute = tuple(p.strip() for p in name.split("+")), None
        unknown = [p for p in parts if p not in known]
        if unknown:
            raise CelebaMaskError(store.location, f"region {name!r}: no class {unknown[0]!r} in the {source} "
                                                  f"source; it has: {', '.join(known)}")
        regions.append(tuple(parts))
        attributes.append(attribute)
    return RegionSet(tuple(names), tuple(regions), tuple(attributes), source)


def mask_bits(store: Any) -> list[str]:
    if "masks" not in store.group:
        raise CelebaMaskError(store.location, "store has no unpainted 'masks' array (built before it existed); "
                                              "use the label region source")
    return list(store.group["masks"].attrs["bits"])


class LabelAtoms:
    """Atoms of a painted label map: the label values themselves (0..255)."""

    def __init__(self, store: Any, regions: RegionSet) -> None:
        self.membership = np.zeros((len(regions.names), 256), dtype=bool)
        for r, parts in enumerate(regions.classes):
            self.membership[r, [store.class_id(p) for p in parts]] = True

    def __call__(self, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return label, self.membership


class MaskAtoms:
    """Atoms of overlapping bit masks: the distinct codes of one map, renumbered 0..A-1."""

    def __init__(self, store: Any, regions: RegionSet) -> None:
        bits = mask_bits(store)
        self.region_bits = np.array([sum(1 << bits.index(p) for p in parts) for parts in regions.classes],
                                    dtype=np.uint64)

    def __call__(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = codes.reshape(-1)
        top = int(flat.max(initial=0))
        if top < 1 << 22:  # a table of every possible code: no sort (np.unique would be a second one per map)
            values = np.flatnonzero(np.bincount(flat, minlength=top + 1))
            table = np.zeros(top + 1, dtype=np.intp)
            table[values] = np.arange(len(values))
            atoms = table[flat]
        else:
            values, atoms = np.unique(flat, return_inverse=True)
        membership = (values.astype(np.uint64)[None, :] & self.region_bits[:, None]) != 0
        return atoms.reshape(codes.shape), membership


def atom_source(store: Any, regions: RegionSet) -> LabelAtoms | MaskAtoms:
    return LabelAtoms(store, regions) if regions.source == "label" else MaskAtoms(store, regions)


def region_array(store: Any, regions: RegionSet) -> Any:
    """The store array the atoms come from: ``label`` or ``masks``."""
    return store.labels if regions.source == "label" else store.group["masks"]
