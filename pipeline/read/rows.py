"""Which rows a dataset view reads: a split (or several), never the rows a build marked invalid,
optionally not the known flawed ones. Shared by the torch and Hugging Face views; imports neither."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from celebamask.errors import CelebaMaskError
from celebamask.read.reader import CelebAMaskStore
from celebamask.store.shards import read_whole


def selected_rows(store: CelebAMaskStore, split: str | Sequence[str] | None, exclude_flagged: bool = False) -> np.ndarray:
    """Row indices in ``split`` (a name, several, or ``None`` for all), valid rows only."""
    from celebamask.read.flags import unflagged_rows

    keep = unflagged_rows(store.group, len(store)) if exclude_flagged else np.ones(len(store), dtype=bool)
    if "valid" in store.group:
        keep &= read_whole(store.group["valid"], store.complete).astype(bool)  # type: ignore[arg-type]
    if split is not None:
        keep &= split_mask(store, [split] if isinstance(split, str) else list(split))
    return np.flatnonzero(keep)


def split_names(store: CelebAMaskStore, wanted: Sequence[str] = ()) -> list[str]:
    """The store's split names (value k = ``names[k]``); an error if it has no ``split`` array."""
    if "split" not in store.group:
        raise CelebaMaskError(
            store.location,
            f"cannot select split {', '.join(wanted)}: the store has no 'split' array "
            "(it was built without CelebA-HQ-to-CelebA-mapping.txt)",
        )
    return [str(n) for n in store.group["split"].attrs.get("names", [])]  # type: ignore[union-attr]


def split_mask(store: CelebAMaskStore, wanted: list[str]) -> np.ndarray:
    names = split_names(store, wanted)
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise CelebaMaskError(store.location, f"unknown split {', '.join(unknown)}; the store has: {', '.join(names)}")
    return np.isin(read_whole(store.group["split"], store.complete), [names.index(name) for name in wanted])  # type: ignore[arg-type]
