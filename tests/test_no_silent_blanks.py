"""A complete store whose shard file was lost raises on that row instead of reading blank rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from celebamask import open_store
from celebamask.errors import CelebaMaskError
from tests.optional import optional


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


def _lose_last_shard(store: Path, array: str) -> tuple[Path, int]:
    """Delete ``array``'s last shard file; returns it and its first row."""
    shard = sorted(p for p in (store / array / "c").rglob("*") if p.is_file())[-1]
    first_row = int(shard.relative_to(store / array / "c").parts[0]) * open_store(store).group[array].shards[0]
    shard.unlink()
    return shard, first_row


def test_a_lost_masks_shard_raises_on_every_route_zarr_reads(built_store: Path, tmp_path: Path) -> None:
    """masks (uint32) are read through zarr, which turns a missing shard into zeros: checked too."""
    from celebamask.score import score_maps

    store = tmp_path / "lost-masks.zarr"
    shutil.copytree(built_store, store)
    shard, first_row = _lose_last_shard(store, "masks")
    opened = open_store(store)
    with pytest.raises(CelebaMaskError, match="'masks'.*missing from a complete store") as caught:
        opened.own_mask(first_row, "skin")
    assert caught.value.path == str(shard)
    with pytest.raises(CelebaMaskError, match="missing from a complete store"):
        opened.mask_bits_of(first_row)
    maps = np.random.default_rng(0).random((len(opened), *opened.labels.shape[1:]), dtype=np.float32)
    with pytest.raises(CelebaMaskError, match="missing from a complete store"):
        score_maps(opened, maps, region_source="masks", metrics=["pointing_game"])
    assert open_store(store).own_mask(0, "skin").any()  # the shards still there read as before


def test_an_incomplete_store_still_reads_unwritten_rows_as_fill(built_store: Path, tmp_path: Path) -> None:
    """While a build runs (not complete) a missing shard is not yet written: fill values, no error."""
    import zarr

    store = tmp_path / "building.zarr"
    shutil.copytree(built_store, store)
    _, first_row = _lose_last_shard(store, "masks")
    zarr.open_group(store, mode="r+").update_attributes({"complete": False})
    opened = open_store(store, allow_incomplete=True)
    assert not opened.mask_bits_of(first_row).any()


@pytest.mark.parametrize("array", ["sample_id", "attributes", "split", "flags"])
def test_a_lost_chunk_of_a_per_sample_array_raises(built_store: Path, tmp_path: Path, array: str) -> None:
    """zarr reads a missing chunk as fill values: sample ids of 0, no attributes, all 'train'."""
    if array in ("split", "flags"):  # read through the torch dataset; the others need no torch
        optional("torch", "celebamask.torch's CelebAMaskDataset")
        from celebamask.torch import CelebAMaskDataset

    store = tmp_path / f"lost-{array}.zarr"
    shutil.copytree(built_store, store)
    chunk = sorted(p for p in (store / array / "c").rglob("*") if p.is_file())[-1]
    chunk.unlink()
    opened = open_store(store)
    reads = {
        "sample_id": lambda: opened[len(opened) - 1],
        "attributes": lambda: opened.annotation("attributes"),
        "split": lambda: CelebAMaskDataset(opened, split="test"),
        "flags": lambda: CelebAMaskDataset(opened, exclude_flagged=True),
    }
    with pytest.raises(CelebaMaskError, match=f"'{array}'.*missing from a complete store") as caught:
        reads[array]()
    assert caught.value.path == str(chunk)
