"""Other readers read the store as zarr-python does: xarray and dask (lazily, uint8 kept), and
tensorstore's independent Zarr v3 implementation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

from celebamask import open_store
from celebamask.errors import CelebaMaskError
from tests.annotation_like import (
    ATTRIBUTE_NAMES,
    SPLIT_NAMES,
    copy_with_annotation_like_arrays,
)
from tests.conftest import SOURCE_COUNT
from tests.reference import CONVENTIONS

xr = pytest.importorskip("xarray", reason="xarray is not installed (pip install -e '.[test]')")
da = pytest.importorskip("dask.array", reason="dask is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def annotated_store(built_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    target = tmp_path_factory.mktemp("annotated") / "store.zarr"
    return target, copy_with_annotation_like_arrays(built_store, target)


def test_plain_xarray_and_dask_read_the_store_without_this_package(built_store: Path) -> None:
    # A fresh interpreter in which `import celebamask` fails: only xarray, dask and zarr are used.
    script = textwrap.dedent(
        """
        import json, sys, warnings
        sys.modules["celebamask"] = None
        import dask.array as da, numpy as np, xarray as xr, zarr
        store = sys.argv[1]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing in the store makes zarr or xarray warn
            ds = xr.open_zarr(store, consolidated=False)
            by_shard = xr.open_zarr(store, consolidated=False, chunks={"sample": 8})
        group = zarr.open_group(store, mode="r")
        arrays = sorted(name for name, _ in group.arrays())
        same = lambda a, b: bool(np.array_equal(a, b, equal_nan=b.dtype.kind == "f"))
        lazy = all(isinstance(ds[name].data, da.Array) for name in arrays)
        label = da.from_zarr(store, component="label")
        print(json.dumps({
            "variables": sorted(map(str, ds.data_vars)) == [name for name in arrays if name != "sample_id"],
            "coords": sorted(map(str, ds.coords)),
            "sample_id_dims": list(ds.sample_id.dims),
            "label_flags": [ds.label.attrs.get("flag_values"), ds.label.attrs.get("flag_meanings")],
            "shard_chunks": {name: list(by_shard[name].chunks[0]) for name in arrays if "sample" in by_shard[name].dims},
            "dims": {name: list(ds[name].dims) for name in arrays},
            "zarr_dims": {name: list(group[name].metadata.dimension_names) for name in arrays},
            "dtypes": {name: str(ds[name].dtype) for name in ("image", "label", "sample_id")},
            "lazy": lazy,
            "image_equal": bool(np.array_equal(ds.image[[0, 5]].values, group["image"][[0, 5]])),
            "label_equal": bool(np.array_equal(ds.label.values, group["label"][:])),
            "dask_label_equal": bool(np.array_equal(label[3:9].compute(), group["label"][3:9])),
            "ids_equal": bool(np.array_equal(ds.sample_id.values, group["sample_id"][:])),
            "others_equal": {name: same(ds[name].values, group[name][...])
                                   and same(da.from_zarr(store, component=name).compute(), group[name][...])
                             for name in arrays if name not in ("image", "label")},
        }))
        """
    )
    result = subprocess.run([sys.executable, "-c", script, str(built_store)], capture_output=True, text=True, check=False,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["variables"]  # the annotation and class arrays too
    assert report["coords"] == ["sample_id"] and report["sample_id_dims"] == ["sample"]  # from CF 'coordinates'
    classes = sorted(zarr.open_group(built_store, mode="r").attrs["classes"], key=lambda c: c["id"])
    assert report["label_flags"] == [[c["id"] for c in classes], " ".join(c["name"] for c in classes)]
    # every per-sample array, big or small, splits into whole shards of 8 rows
    assert all(chunks == [8, 8, 8] for chunks in report["shard_chunks"].values()), report["shard_chunks"]
    assert len(report["shard_chunks"]) >= 10
    annotations = {"celeba_index", "celeba_file", "split", "attributes", "pose", "class_present", "class_area"}
    assert annotations <= set(report["dims"])
    assert report["dims"] == report["zarr_dims"]
    assert {name: report["dims"][name] for name in ("image", "label", "sample_id", "attributes", "class_area")} == {
        "image": ["sample", "y", "x", "channel"], "label": ["sample", "y", "x"], "sample_id": ["sample"],
        "attributes": ["sample", "attribute"], "class_area": ["sample", "class"]}
    assert report["others_equal"] and all(report["others_equal"].values()), report["others_equal"]
    assert report["dtypes"] == {"image": "uint8", "label": "uint8", "sample_id": "int32"}
    assert report["lazy"]
    assert report["image_equal"] and report["label_equal"] and report["dask_label_equal"] and report["ids_equal"]


def test_fill_values_are_not_turned_into_nan(tmp_path: Path) -> None:
    """Black pixels equal the image fill (0) and unwritten labels the label fill (255): both stay uint8."""
    from celebamask.config import load_config
    from celebamask.store.layout import create_store

    path = tmp_path / "unwritten.zarr"
    create_store(path, [4, 9], load_config("default"), 2, {})
    for dataset in (xr.open_zarr(path, consolidated=False), open_store(path, allow_incomplete=True).to_xarray()):
        assert dataset.image.dtype == np.uint8 and dataset.label.dtype == np.uint8
        assert (dataset.image.values == 0).all()
        assert (dataset.label.values == 255).all()


def test_to_xarray_names_samples_and_classes(built_store: Path) -> None:
    store = open_store(built_store)
    ds = store.to_xarray()
    assert isinstance(ds.image.data, da.Array) and ds.image.dtype == np.uint8
    np.testing.assert_array_equal(ds.sample_id.values, np.arange(SOURCE_COUNT))
    order, first_id, background = CONVENTIONS["default"]
    expected_names = {first_id + k: name for k, name in enumerate(order)} | {background: "background"}
    assert list(ds["class"].values) == [expected_names[k] for k in range(len(expected_names))]
    np.testing.assert_array_equal(ds.class_id.values, np.arange(len(expected_names)))
    picked = ds.sel(sample_id=[3, 17])
    np.testing.assert_array_equal(picked.label.values, zarr.open_group(built_store, mode="r")["label"][[3, 17]])
    hair_share = (ds.label.sel(sample_id=5) == ds.class_id).mean(["y", "x"]).sel({"class": "hair"})
    assert float(hair_share) == pytest.approx(store.mask(5, "hair").mean())
    assert list(ds.channel.values) == ["R", "G", "B"]


def test_to_xarray_names_annotation_arrays(annotated_store: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, written = annotated_store
    ds = open_store(path).to_xarray()
    assert list(ds.attribute.values) == ATTRIBUTE_NAMES
    np.testing.assert_array_equal(ds.attributes.sel(attribute="attribute_2").values, written["attributes"][:, 2])
    np.testing.assert_array_equal(ds.split_name.values, np.array(SPLIT_NAMES)[written["split"]])
    assert ds.split.dtype == np.uint8
    hair = open_store(path).class_id("hair")
    np.testing.assert_array_equal(ds.class_area.sel({"class": "hair"}).values, written["class_area"][:, hair])
    train = ds.isel(sample=(ds.split_name == "train").values)
    assert train.sizes["sample"] == int((written["split"] == 0).sum())


def test_to_xarray_refuses_names_that_do_not_fit(annotated_store: tuple[Path, dict[str, np.ndarray]],
                                                  tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken.zarr"
    shutil.copytree(annotated_store[0], broken)
    meta_path = broken / "attributes" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["names"] = ATTRIBUTE_NAMES[:-1]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CelebaMaskError, match="attributes"):
        open_store(broken).to_xarray()


def test_tensorstore_reads_every_array_as_zarr_python_does(built_store: Path) -> None:
    ts = pytest.importorskip("tensorstore", reason="tensorstore is not installed (pip install -e '.[test]')")
    group = zarr.open_group(built_store, mode="r")
    # Zarr's variable-length string type is a zarr-python extension tensorstore does not read;
    # only the CelebA file-name column uses it (its index is in celeba_index).
    text_arrays = {name for name, array in group.arrays() if array.dtype.kind in "OTU"}
    assert text_arrays <= {"celeba_file"}
    names = sorted(name for name, _ in group.arrays() if name not in text_arrays)
    assert {"image", "label", "sample_id", "class_area", "attributes", "split"} <= set(names)
    for name in names:
        expected = group[name]
        opened = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(built_store / name)}},
                         read=True).result()
        assert opened.shape == expected.shape, name
        assert opened.dtype.numpy_dtype == expected.dtype, name
        assert tuple(opened.domain.labels) == tuple(expected.metadata.dimension_names), name
        np.testing.assert_array_equal(opened.read().result(), expected[:], err_msg=name)
