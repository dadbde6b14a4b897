"""A build killed while it creates the arrays leaves a group with some arrays missing: opening it
says "incomplete", never a KeyError or "not a celebamask store"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import zarr

from celebamask import open_store
from celebamask.errors import CelebaMaskError


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


def test_store_killed_before_its_first_metadata_file_is_reported_incomplete(tmp_path: Path) -> None:
    store = tmp_path / "first.zarr"
    store.mkdir()
    (store / "zarr.json.3f2a.partial").write_text('{"zarr_format": 3, "node_type": "gro')  # the temporary, cut
    for allow in (False, True):
        with pytest.raises(CelebaMaskError, match="incomplete"):
            open_store(store, allow_incomplete=allow)
    (store / "zarr.json.3f2a.partial").rename(store / "notes.txt")
    with pytest.raises(CelebaMaskError, match="not a celebamask store"):
        open_store(store)
