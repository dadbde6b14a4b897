"""A complete store whose shard file was lost raises on that row instead of reading blank rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from celebamask import open_store
from celebamask.errors import CelebaMaskError


def test_a_lost_label_shard_of_a_complete_store_raises_naming_array_and_file(built_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "lost.zarr"
    shutil.copytree(built_store, store)
    shard = sorted(p for p in (store / "label" / "c").rglob("*") if p.is_file())[-1]
    first_row = int(shard.relative_to(store / "label" / "c").parts[0]) * open_store(store).group["label"].shards[0]
    shard.unlink()
    opened = open_store(store)
    assert opened.complete
    with pytest.raises(CelebaMaskError, match="'label'.*missing from a complete store") as caught:
        opened[first_row]
    assert caught.value.path == str(shard)
    with pytest.raises(CelebaMaskError, match="missing from a complete store"):
        opened.batch(0, len(opened))
    np.testing.assert_array_equal(opened[0]["image"], open_store(built_store)[0]["image"])  # other shards still read
