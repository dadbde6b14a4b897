"""CF attributes and chunking: plain xarray sees ``sample_id`` as a coordinate, cf_xarray reads the
class names from ``label`` (and the mask bits from ``masks``), reading by whole shards warns
nothing, and a store of the older layout still opens, reads and verifies but is never resumed."""

from __future__ import annotations

import json
import shutil
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from celebamask import open_store
from celebamask.build.orchestrator import build_store
from celebamask.build.verify import verify_store
from celebamask.cli import main
from celebamask.dataset import MASK_CLASS_NAMES
from celebamask.errors import CelebaMaskError
from celebamask.store.layout import cf_flag_meanings, metadata_digest

xr = pytest.importorskip("xarray", reason="xarray is not installed (pip install -e '.[test]')")
da = pytest.importorskip("dask.array", reason="dask is not installed (pip install -e '.[test]')")

LAYOUT1 = Path(__file__).parent / "fixtures" / "layout1.zarr"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def default_classes() -> dict[str, int]:
    """Name → id, read from the shipped TOML, not from the store."""
    table = tomllib.loads((CONFIGS / "celebamask_hq.toml").read_text())
    return {entry["name"]: entry["id"] for entry in table["classes"]}


def open_plain(path: Path, **kwargs: object) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(path, consolidated=False, **kwargs)


def test_cf_xarray_reads_the_class_of_every_label_value(built_store: Path) -> None:
    pytest.importorskip("cf_xarray", reason="cf_xarray is not installed (pip install -e '.[test]')")
    ds = open_plain(built_store)
    assert "sample_id" in ds.coords and "sample_id" not in ds.data_vars
    raw = zarr.open_group(built_store, mode="r")
    labels = raw["label"][[3, 11]]
    assert ds.label.cf.is_flag_variable and ds.label.attrs["long_name"]
    classes = default_classes()
    assert ds.label.attrs["flag_meanings"].split() == sorted(classes, key=classes.get)
    for name, class_id in classes.items():
        np.testing.assert_array_equal((ds.label[[3, 11]].cf == name).values, labels == class_id, err_msg=name)
    assert sum(int((labels == class_id).sum()) for class_id in classes.values()) == labels.size


def test_cf_xarray_reads_each_mask_bit_and_the_split(built_store: Path, tmp_path: Path) -> None:
    pytest.importorskip("cf_xarray", reason="cf_xarray is not installed (pip install -e '.[test]')")
    ds = open_plain(built_store)
    bits = zarr.open_group(built_store, mode="r")["masks"][7]
    flags = ds.masks[7].cf.flags
    assert list(flags.data_vars) == list(MASK_CLASS_NAMES)
    for k, name in enumerate(MASK_CLASS_NAMES):
        np.testing.assert_array_equal(flags[name].values, (bits >> k) & 1 == 1, err_msg=name)
    assert any(flags[name].values.any() for name in ("hair", "skin"))

    if "split" in ds:  # the synthetic source ships the mapping file: the split is there
        split = zarr.open_group(built_store, mode="r")["split"][:]
        for code, name in enumerate(["train", "val", "test"]):
            np.testing.assert_array_equal((ds.split.cf == name).values, split == code)


def test_flag_meanings_are_cf_words() -> None:
    assert cf_flag_meanings(["skin", "left eye", "a/b", "x.y+z@-"]) == "skin left_eye a_b x.y+z@-"
    with pytest.raises(ValueError, match="distinct"):
        cf_flag_meanings(["left eye", "left_eye"])


@pytest.mark.parametrize("rows", [8, 16, 24])
def test_whole_shard_chunking_warns_nothing(built_store: Path, rows: int) -> None:
    """Shard size 8: every per-sample array, small or large, splits along whole shards."""
    store = open_store(built_store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = store.to_xarray(chunks={"sample": rows})
        plain = xr.open_zarr(built_store, consolidated=False, chunks={"sample": rows})
        per_sample = [name for name in plain.variables if "sample" in plain[name].dims]
        assert {"image", "label", "masks", "class_area", "valid", "flags", "sample_id"} <= set(per_sample)
        expected = (rows,) * (24 // rows) + ((24 % rows,) if 24 % rows else ())
        for dataset, names in ((plain, per_sample), (ds, [n for n in per_sample if n != "sample_id"])):  # ds: an index
            for name in names:
                assert dataset[name].chunksizes["sample"] == expected, name
        areas = ds.class_area.sum("sample").compute()
    np.testing.assert_array_equal(areas.values, zarr.open_group(built_store, mode="r")["class_area"][:].sum(axis=0))


def test_to_xarray_exposes_masks_lazily(built_store: Path) -> None:
    store = open_store(built_store)
    ds = store.to_xarray()
    assert isinstance(ds.masks.data, da.Array) and ds.masks.dtype == np.uint32
    assert ds.masks.dims == ("sample", "y", "x") and ds.masks.attrs["bits"] == list(MASK_CLASS_NAMES)
    row = ds.masks.sel(sample_id=5)
    assert isinstance(row.data, da.Array)  # still nothing read
    raw = zarr.open_group(built_store, mode="r")["masks"][5]
    np.testing.assert_array_equal(row.values, raw)
    hair = MASK_CLASS_NAMES.index("hair")
    np.testing.assert_array_equal(((row >> hair) & 1 == 1).values, store.mask(5, "hair", painted=False))


# --- a store of the older layout ------------------------------------------------------------------


@pytest.fixture
def layout1(tmp_path: Path) -> Path:
    target = tmp_path / "layout1.zarr"
    shutil.copytree(LAYOUT1, target)
    return target


def test_a_layout1_store_still_opens_reads_and_verifies(layout1: Path) -> None:
    store = open_store(layout1)
    raw = zarr.open_group(layout1, mode="r")
    assert raw.attrs["layout"] == "celebamask/1" and len(store) == 6
    for row in range(len(store)):
        sample = store[row]
        np.testing.assert_array_equal(sample["label"], raw["label"][row])
        assert sample["image"].shape == (32, 32, 3) and sample["sample_id"] == raw["sample_id"][row]
    np.testing.assert_array_equal(store.label_maps(slice(None)), raw["label"][:])  # masks painted = label
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the stamps file at its top is no member of the hierarchy: not warned
        ds = store.to_xarray()
    np.testing.assert_array_equal(ds.label.sel(sample_id=int(raw["sample_id"][2])).values, raw["label"][2])
    # Its small arrays are one chunk each: chunking by shard warns, as it always did, and reads the same.
    with pytest.warns(UserWarning, match="separate the stored chunks"):
        by_shard = store.to_xarray(chunks={"sample": 4})
    np.testing.assert_array_equal(by_shard.split.values, raw["split"][:])
    assert verify_store(layout1) == []
    result = CliRunner().invoke(main, ["info", str(layout1)])
    assert result.exit_code == 0, result.output
    assert "celebamask/1 (older: reads, cannot be resumed)" in result.output


def test_an_unfinished_layout1_store_is_not_resumed(layout1: Path, synthetic_source: Path) -> None:
    meta = layout1 / "zarr.json"
    document = json.loads(meta.read_text())
    document["attributes"]["complete"] = False
    meta.write_text(json.dumps(document))
    before = {p: p.read_bytes() for p in layout1.rglob("*") if p.is_file()}
    with pytest.raises(CelebaMaskError, match=r"older celebamask \(layout celebamask/1.*--overwrite"):
        build_store(synthetic_source, layout1, resume=True, jobs=1)
    assert {p: p.read_bytes() for p in layout1.rglob("*") if p.is_file()} == before


def test_a_layout1_store_is_replaced_by_overwrite(layout1: Path, synthetic_source: Path) -> None:
    build_store(synthetic_source, layout1, overwrite=True, jobs=1, limit=2, shard_size=2)
    group = zarr.open_group(layout1, mode="r")
    assert group.attrs["layout"] == "celebamask/2" and group["label"].shape[0] == 2
    assert not (layout1 / "source_stamps.json.gz").exists() and (layout1 / "source_stamps" / "stamps.json.gz").exists()


def downgrade_to_layout1(store: Path) -> None:
    """Record layout 1 in a store this version built (a complete one: its digest is written anew)."""
    group = zarr.open_group(store, mode="r+")
    group.update_attributes({"layout": "celebamask/1"})
    group.update_attributes({"metadata_sha256": metadata_digest(store)})


def test_a_complete_layout1_store_counts_as_done_and_is_left_alone(synthetic_source: Path, tmp_path: Path) -> None:
    store = tmp_path / "old.zarr"
    build_store(synthetic_source, store, jobs=1, limit=4, shard_size=2)
    downgrade_to_layout1(store)
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    report = build_store(synthetic_source, store, resume=True, jobs=1, limit=4, shard_size=2)
    assert report.already_complete
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before

    (store / "label" / "c" / "1" / "0" / "0").unlink()  # a lost shard: not rebuilt into an older layout
    with pytest.raises(CelebaMaskError, match="older celebamask.*not whole"):
        build_store(synthetic_source, store, resume=True, jobs=1, limit=4, shard_size=2)
    assert zarr.open_group(store, mode="r").attrs["complete"] is True


def test_a_store_of_an_unknown_layout_is_refused_in_one_line(layout1: Path) -> None:
    """A newer celebamask's store may mean something else by its arrays: never read silently."""
    group = zarr.open_group(layout1, mode="r+")
    group.update_attributes({"layout": "celebamask/99"})
    with pytest.raises(CelebaMaskError, match=r"layout 'celebamask/99'.*upgrade celebamask") as caught:
        open_store(layout1)
    assert "\n" not in str(caught.value)
    result = CliRunner().invoke(main, ["info", str(layout1)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
