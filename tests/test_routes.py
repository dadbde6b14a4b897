"""Every route to the data gives the same store: nested folders, a .zip or .tar of any name,
and Dataset Ninja's Supervisely project (folder or .tar)."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr

from celebamask.build.orchestrator import build_store
from celebamask.errors import CelebaMaskError
from celebamask.sources.index import SUPERVISELY, locate_source
from celebamask.synth.generate import generate_source
from celebamask.synth.supervisely import convert_to_supervisely, generate_supervisely

COUNT, SEED = 6, 3


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_source(tmp_path_factory.mktemp("routes") / "CelebAMask-HQ", COUNT, seed=SEED, jobs=1)


@pytest.fixture(scope="module")
def official_store(official: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("routes_store") / "official.zarr"
    build_store(official, store, jobs=1, shard_size=4)
    return store


def _build(source: Path, tmp_path: Path) -> zarr.Group:
    store = tmp_path / "built.zarr"
    build_store(source, store, jobs=1, shard_size=4)
    return zarr.open_group(store, mode="r")


def _assert_same(store: zarr.Group, reference: Path, arrays: tuple[str, ...]) -> None:
    expected = zarr.open_group(reference, mode="r")
    for name in arrays:
        np.testing.assert_array_equal(store[name][:], expected[name][:], err_msg=name)


def _archive(root: Path, out: Path, prefix: str, kind: str) -> Path:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if kind == "zip":
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
            for path in files:
                archive.write(path, f"{prefix}/{path.relative_to(root).as_posix()}")
    else:
        with tarfile.open(out, "w") as archive:
            for path in files:
                archive.add(path, f"{prefix}/{path.relative_to(root).as_posix()}")
    return out


ALL = ("image", "label", "class_area", "attributes", "celeba_index", "pose", "sample_id")


def test_kaggle_named_zip_two_folders_deep_builds_the_same_store(official: Path, official_store: Path,
                                                                  tmp_path: Path) -> None:
    archive = _archive(official, tmp_path / "celebamaskhq.zip", "archive/CelebAMask-HQ", "zip")
    assert locate_source(archive).root == "archive/CelebAMask-HQ"
    _assert_same(_build(archive, tmp_path), official_store, ALL)


def test_tar_three_folders_deep_is_read_in_place(official: Path, official_store: Path, tmp_path: Path) -> None:
    archive = _archive(official, tmp_path / "download.bin", "a/b/CelebAMask-HQ", "tar")
    ref = locate_source(archive)
    assert (ref.archive, ref.root) == ("tar", "a/b/CelebAMask-HQ")
    _assert_same(_build(archive, tmp_path), official_store, ALL)


def test_folder_three_deep_is_found_and_four_deep_is_not(official: Path, tmp_path: Path) -> None:
    shutil.copytree(official, tmp_path / "x" / "y" / "z" / "CelebAMask-HQ")
    assert locate_source(tmp_path / "x").root == str(tmp_path / "x" / "y" / "z" / "CelebAMask-HQ")
    with pytest.raises(CelebaMaskError, match="up to 3 folders below"):
        locate_source(tmp_path)


def test_two_copies_at_the_same_depth_are_refused(official: Path, tmp_path: Path) -> None:
    shutil.copytree(official, tmp_path / "one" / "CelebAMask-HQ")
    shutil.copytree(official, tmp_path / "two" / "CelebAMask-HQ")
    with pytest.raises(CelebaMaskError, match="more than one copy"):
        locate_source(tmp_path)


def test_compressed_tar_is_refused_with_what_to_do(official: Path, tmp_path: Path) -> None:
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as packed:
        packed.add(official / "CelebA-HQ-img", "CelebAMask-HQ/CelebA-HQ-img")
    with pytest.raises(CelebaMaskError, match="compressed tar"):
        locate_source(archive)


@pytest.mark.parametrize("as_tar", [False, True])
def test_supervisely_project_builds_the_official_store(official_store: Path, tmp_path: Path, as_tar: bool) -> None:
    project = generate_supervisely(tmp_path / ("celebamask-hq.tar" if as_tar else "project"), COUNT, seed=SEED,
                                   jobs=1, as_tar=as_tar)
    assert locate_source(project).layout == SUPERVISELY
    store = _build(project, tmp_path)
    _assert_same(store, official_store, ("image", "label", "class_area", "attributes", "sample_id"))
    expected = zarr.open_group(official_store, mode="r")
    assert store["attributes"].attrs["names"] == expected["attributes"].attrs["names"]
    # Dataset Ninja carries no mapping or pose file: those arrays are absent, not filled
    assert not {"celeba_index", "split", "pose"} & set(store.keys())


@pytest.fixture
def project(official: Path, tmp_path: Path) -> Path:
    return convert_to_supervisely(official, tmp_path / "project")


def _edit_first_object(project: Path, change: callable) -> Path:  # type: ignore[valid-type]
    path = project / "ds" / "ann" / "2.jpg.json"
    document = json.loads(path.read_text())
    change(document["objects"][0])
    path.write_text(json.dumps(document))
    return path


def test_unknown_class_title_names_the_file_and_object(project: Path, tmp_path: Path) -> None:
    path = _edit_first_object(project, lambda obj: obj.update(classTitle="moustache"))
    with pytest.raises(CelebaMaskError, match="object 0: unknown class title 'moustache'") as caught:
        _build(project, tmp_path)
    assert caught.value.path == str(path)


def test_bitmap_outside_the_image_names_the_file_and_object(project: Path, tmp_path: Path) -> None:
    path = _edit_first_object(project, lambda obj: obj["bitmap"].update(origin=[1000, 0]))
    with pytest.raises(CelebaMaskError, match=r"object 0 \('.*'\): bitmap .* lies outside") as caught:
        _build(project, tmp_path)
    assert caught.value.path == str(path)


def test_bitmap_that_does_not_decode_names_the_file_and_object(project: Path, tmp_path: Path) -> None:
    path = _edit_first_object(project, lambda obj: obj["bitmap"].update(data="bm90IGEgcG5n"))  # "not a png"
    with pytest.raises(CelebaMaskError, match="object 0 .*does not decode") as caught:
        _build(project, tmp_path)
    assert str(path) in caught.value.path


def test_plain_base64_png_bitmaps_are_read_too(project: Path, official_store: Path, tmp_path: Path) -> None:
    import base64
    import zlib

    for path in (project / "ds" / "ann").glob("*.json"):
        document = json.loads(path.read_text())
        for obj in document["objects"]:
            png = zlib.decompress(base64.b64decode(obj["bitmap"]["data"]))
            obj["bitmap"]["data"] = base64.b64encode(png).decode()
        path.write_text(json.dumps(document))
    _assert_same(_build(project, tmp_path), official_store, ("image", "label"))
