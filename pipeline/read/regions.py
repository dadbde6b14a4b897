"""Per-sample region statistics (which classes a label map shows, and how many pixels each covers),
and the map from CelebA attributes to the regions that show them.

The counts are taken from each label map while the shard worker holds it, so they describe
exactly the stored label (after painting and any resize) and cost no second read of the store.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from celebamask.config import CONFIG_DIR
from celebamask.dataset import MASK_CLASS_NAMES
from celebamask.errors import CelebaMaskError
from celebamask.store.layout import CLASS_ARRAYS, class_column_names  # noqa: F401 - re-exported for readers

ATTRIBUTE_REGIONS_PATH = CONFIG_DIR / "attribute_regions.toml"


# --------------------------------------------------------------------------- attributes → regions


@dataclass(frozen=True)
class AttributeRegions:
    """Attribute name → region names; ``without_region`` are attributes no region shows."""

    path: str
    regions: dict[str, tuple[str, ...]]
    without_region: frozenset[str]

    def regions_of(self, attribute: str) -> tuple[str, ...]:
        if attribute in self.regions:
            return self.regions[attribute]
        if attribute in self.without_region:
            raise KeyError(f"attribute {attribute!r} shows in no region (listed under [no_region] in {self.path})")
        raise KeyError(f"attribute {attribute!r} is not in {self.path}")


def load_attribute_regions(path: str | Path = ATTRIBUTE_REGIONS_PATH) -> AttributeRegions:
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CelebaMaskError(where, f"cannot read attribute map: {exc}") from exc
    raw_regions = data.get("regions")
    raw_none = data.get("no_region", {}).get("attributes", [])
    if not isinstance(raw_regions, dict) or not isinstance(raw_none, list):
        raise CelebaMaskError(where, "needs a [regions] table and [no_region] attributes = [...]")
    regions: dict[str, tuple[str, ...]] = {}
    for attribute, names in raw_regions.items():
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise CelebaMaskError(where, f"{attribute}: expected a non-empty list of region names")
        unknown = [n for n in names if n not in MASK_CLASS_NAMES]
        if unknown:
            known = ", ".join(MASK_CLASS_NAMES)
            raise CelebaMaskError(where, f"{attribute}: unknown region {unknown[0]!r}; known: {known}")
        regions[attribute] = tuple(names)
    both = sorted(set(regions) & set(raw_none))
    if both:
        raise CelebaMaskError(where, f"{both[0]} is listed both with regions and under [no_region]")
    return AttributeRegions(where, regions, frozenset(str(a) for a in raw_none))


# --------------------------------------------------------------------------- statistics


def class_statistics(
    present: np.ndarray, area: np.ndarray, column_names: list[str], pixels: int
) -> list[dict[str, Any]]:
    """Per class: images where present and mean area % where present (the published table's
    quantities), most frequent first. ``unused_<k>`` columns are left out."""
    images = present.sum(axis=0)
    totals = area.sum(axis=0, dtype=np.float64)
    rows = []
    for k, name in enumerate(column_names):
        if name.startswith("unused_"):
            continue
        count = int(images[k])
        mean = 100.0 * totals[k] / (count * pixels) if count else None
        rows.append({"id": k, "name": name, "images": count, "area_percent": mean})
    rows.sort(key=lambda r: (-r["images"], r["id"]))
    return rows
