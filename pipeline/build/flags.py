"""The store's ``flags`` array: known flaws per row, written by the coordinator before any shard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zarr

from celebamask.sources.known_issues import FLAG_NAMES, flags_for, load_known_issues, provenance
from celebamask.store.layout import cf_flag_meanings, create_row_array


def known_issue_flags(sample_ids: Sequence[int]) -> tuple[Any, dict[str, Any]]:
    """(uint8 flags per row, the provenance record of the list they came from)."""
    issues = load_known_issues()
    flags = flags_for(sample_ids, issues)
    return flags, provenance(issues, flags)


def write_flags(group: zarr.Group, flags: Any, shard_size: int) -> None:
    """Chunked like the other per-row arrays; every chunk written (verify expects them)."""
    array = create_row_array(group, "flags", len(flags), shard_size, (), "uint8", 0, (), {
        "names": list(FLAG_NAMES),
        "long_name": "known flaws of the sample",
        "flag_masks": [1 << k for k in range(len(FLAG_NAMES))],
        "flag_meanings": cf_flag_meanings(FLAG_NAMES),
        "description": "known flaws (configs/known_issues.toml): bit k set = names[k]; 0 = none known",
    })
    # An Array takes its config when opened, so a zarr.config block around the write does nothing.
    array.with_config({"write_empty_chunks": True})[:] = flags
