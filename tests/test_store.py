from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from celebamask import open_store
from celebamask.build.orchestrator import build_store
from celebamask.errors import CelebaMaskError
from tests.conftest import SOURCE_COUNT
from tests.reference import CONVENTIONS, psnr, reference_image, reference_label


def test_layout_is_zarr_v3_sharded_one_sample_per_chunk(built_store: Path) -> None:
    root_meta = json.loads((built_store / "zarr.json").read_text())
    assert root_meta["zarr_format"] == 3 and root_meta["node_type"] == "group"
    group = zarr.open_group(built_store, mode="r")
    image, label, ids = group["image"], group["label"], group["sample_id"]
    assert image.shape == (SOURCE_COUNT, 512, 512, 3) and image.dtype == np.uint8
    assert label.shape == (SOURCE_COUNT, 512, 512) and label.dtype == np.uint8
    assert ids.shape == (SOURCE_COUNT,) and np.issubdtype(ids.dtype, np.integer)
    assert image.chunks == (1, 512, 512, 3) and image.shards == (8, 512, 512, 3)
    assert label.chunks == (1, 512, 512) and label.shards == (8, 512, 512)
    assert image.metadata.dimension_names == ("sample", "y", "x", "channel")
    assert label.metadata.dimension_names == ("sample", "y", "x")
    assert ids.metadata.dimension_names == ("sample",)
    assert label.fill_value == 255
    shard_files = [p for p in (built_store / "label" / "c").rglob("*") if p.is_file()]
    assert len(shard_files) == SOURCE_COUNT // 8
    codec_names = [c["name"] for c in json.loads((built_store / "image" / "zarr.json").read_text())["codecs"]]
    assert codec_names == ["sharding_indexed"]


def test_attributes_describe_the_store(built_store: Path, synthetic_source: Path) -> None:
    attrs = zarr.open_group(built_store, mode="r").attrs
    assert attrs["complete"] is True
    order, first_id, background = CONVENTIONS["default"]
    assert attrs["paint_order"] == order
    assert attrs["background"] == background
    assert {c["name"]: c["id"] for c in attrs["classes"]} == {
        "background": background, **{n: first_id + k for k, n in enumerate(order)}}
    assert all(len(c["color"]) == 3 for c in attrs["classes"])
    provenance = attrs["provenance"]
    assert provenance["tool_version"] and provenance["created"]
    assert provenance["config"]["name"] == "default" and "paint_order" in provenance["config"]["text"]
    assert provenance["options"]["shard_size"] == 8 and provenance["options"]["size"] == 512
    assert Path(provenance["source"]["location"]) == synthetic_source
    on_disk = list((synthetic_source / "CelebAMask-HQ-mask-anno").rglob("*.png"))
    assert provenance["counts"]["samples"] == SOURCE_COUNT
    assert provenance["counts"]["masks"] == len(on_disk)


def test_rows_hold_the_reference_labels_and_good_images(built_store: Path, synthetic_source: Path) -> None:
    store = open_store(built_store)
    assert list(store.sample_ids[:]) == list(range(SOURCE_COUNT))
    for row in (0, 7, 8, SOURCE_COUNT - 1):
        sample = store[row]
        np.testing.assert_array_equal(sample["label"], reference_label(synthetic_source, sample["sample_id"], "default"))
        assert psnr(sample["image"], reference_image(synthetic_source, sample["sample_id"])) >= 40


def test_reader_api(built_store: Path, synthetic_source: Path) -> None:
    store = open_store(built_store)
    assert len(store) == SOURCE_COUNT and store.complete
    assert [c.name for c in store.classes][store.class_id("hair")] == "hair"
    expected = reference_label(synthetic_source, 3, "default") == CONVENTIONS["default"][0].index("hair")
    np.testing.assert_array_equal(store.mask(3, "hair"), expected)
    with pytest.raises(KeyError, match="beard"):
        store.class_id("beard")
    with pytest.raises(IndexError):
        store[SOURCE_COUNT]


def test_jobs_two_equals_jobs_one_and_limit_and_size(synthetic_source: Path, tmp_path: Path) -> None:
    one = build_store(synthetic_source, tmp_path / "one.zarr", jobs=1, shard_size=5, limit=11)
    two = build_store(synthetic_source, tmp_path / "two.zarr", jobs=2, shard_size=5, limit=11)
    assert one.samples == two.samples == 11 and one.shards == 3
    a, b = open_store(one.store), open_store(two.store)
    np.testing.assert_array_equal(a.images[:], b.images[:])
    np.testing.assert_array_equal(a.labels[:], b.labels[:])
    np.testing.assert_array_equal(a.sample_ids[:], np.arange(11))


def test_other_size_resizes_images_and_labels(synthetic_source: Path, tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    config.write_text((Path(__file__).parents[1] / "configs" / "official.toml").read_text().replace(
        "size = 512", "size = 128"))
    store = open_store(build_store(synthetic_source, tmp_path / "s.zarr", config=config, jobs=1, limit=3).store)
    assert store.images.shape == (3, 128, 128, 3) and store.labels.shape == (3, 128, 128)
    full = reference_label(synthetic_source, 2, "official")
    assert set(np.unique(store.labels[2])) <= set(np.unique(full))
    areas = np.asarray(store.group["class_area"][:])  # counted on the resized maps, not on the 512² masks
    for row in range(3):
        counted = np.bincount(np.asarray(store.labels[row]).ravel(), minlength=areas.shape[1])
        np.testing.assert_array_equal(areas[row], counted)


def test_existing_store_is_left_alone_without_overwrite(built_store: Path, synthetic_source: Path, tmp_path: Path) -> None:
    target = tmp_path / "s.zarr"
    build_store(synthetic_source, target, jobs=1, limit=2)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    with pytest.raises(CelebaMaskError, match="already exists"):
        build_store(synthetic_source, target, jobs=1, limit=3)
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    build_store(synthetic_source, target, jobs=1, limit=3, overwrite=True)
    assert len(open_store(target)) == 3


def test_overwrite_never_deletes_a_folder_that_is_not_a_store(synthetic_source: Path, tmp_path: Path) -> None:
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("...")
    with pytest.raises(CelebaMaskError, match="not a Zarr store"):
        build_store(synthetic_source, precious, overwrite=True, limit=1)
    assert (precious / "chapter1.tex").exists()


def test_failed_build_leaves_an_incomplete_store_that_says_so(source_copy: Path, tmp_path: Path) -> None:
    (source_copy / "CelebA-HQ-img" / "13.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(CelebaMaskError, match="13.jpg"):
        build_store(source_copy, tmp_path / "broken.zarr", jobs=2, shard_size=4)
    with pytest.raises(CelebaMaskError, match="incomplete"):
        open_store(tmp_path / "broken.zarr")
    partial = open_store(tmp_path / "broken.zarr", allow_incomplete=True)
    assert not partial.complete
    assert zarr.open_group(tmp_path / "broken.zarr", mode="r").attrs["complete"] is False


def test_unwritten_labels_read_as_fill_not_as_a_class(synthetic_source: Path, tmp_path: Path) -> None:
    from celebamask.config import load_config
    from celebamask.store.layout import create_store

    create_store(tmp_path / "empty.zarr", [0, 1], load_config("face-parsing"), 2, {})
    store = open_store(tmp_path / "empty.zarr", allow_incomplete=True)
    assert (store.labels[0] == 255).all()
