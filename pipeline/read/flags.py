"""Reading the store's ``flags`` array (known flaws per row, see configs/known_issues.toml)."""

from __future__ import annotations

from typing import Any

import numpy as np

from celebamask.errors import CelebaMaskError
from celebamask.store.shards import read_whole


def unflagged_rows(group: Any, count: int) -> np.ndarray:
    """Bool per row: True where no known flaw is recorded. A store built before flags existed
    cannot say, so asking it to exclude them is an error rather than a silent no-op."""
    if "flags" not in group:
        raise CelebaMaskError(str(getattr(group, "store", "store")),
                              "has no 'flags' array (built before known issues were recorded): rebuild it "
                              "to exclude flagged samples")
    return read_whole(group["flags"], bool(group.attrs.get("complete"))) == 0


def flag_counts(group: Any, rows: Any = slice(None)) -> dict[str, int] | None:
    """Rows carrying each flag (and 'any'), or None for a store without flags."""
    if "flags" not in group:
        return None
    flags = read_whole(group["flags"], bool(group.attrs.get("complete")))[rows]
    names = list(group["flags"].attrs.get("names", []))
    counts = {name: int(np.count_nonzero(flags & (1 << k))) for k, name in enumerate(names)}
    counts["any"] = int(np.count_nonzero(flags))
    return counts
