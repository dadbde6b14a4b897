"""A build killed while it creates the arrays leaves a group with some arrays missing: opening it
says "incomplete", never a KeyError or "not a celebamask store"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import zarr

from pipeline import open_store
from pipeline.errors import CelebaMaskError


@pytest.mark.parametrize("removed", [("image", "label", "sample_id"), ("sample_id",)])
def test_half_created_store_is_reported_incomplete(built_store: Path, tmp_path: Path, removed: tuple[str, ...]) -> None:
    store = tmp_path / "half.zarr"
    shutil.copytree(built_store, store)
    for name in removed:
        shutil.rmtree(store / name)
    zarr.open_group(store, mode="r+").update_attributes({"complete": False})
    with pytest.raises(CelebaMaskError, match="incomplete"):
        open_store(store)
    with pytest.raises(CelebaMaskError, match="incomplete"):
        open_store(store, allow_incomplete=True)  # nothing to read yet: still a clear error
