"""store.to_hf_dataset(): every example equals the row read straight from the zarr arrays.

No test reaches a hub: HF_HUB_OFFLINE=1 and every Hugging Face cache lives under tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from tests.optional import optional

datasets = optional("datasets", "the hf extra")

from celebamask import open_store  # noqa: E402
from tests.annotation_like import ATTRIBUTE_NAMES, SPLIT_NAMES, copy_with_annotation_like_arrays  # noqa: E402

INVALID_ROWS = (1, 9)


@pytest.fixture(autouse=True)
def offline_hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hf-home"
    for name, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(home),
                        "HF_DATASETS_CACHE": str(home / "datasets")}.items():
        monkeypatch.setenv(name, value)
    return home


@pytest.fixture(scope="module")
def annotated(built_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("annotated_hf") / "store.zarr"
    copy_with_annotation_like_arrays(built_store, target, invalid_rows=INVALID_ROWS)
    return target


def raw(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(path, mode="r")
    return {name: np.asarray(group[name][...]) for name in ("image", "label", "sample_id", "split", "attributes", "valid")}


def assert_examples_are_rows(examples: list[dict], rows: np.ndarray, arrays: dict[str, np.ndarray],
                             attribute_names: list[str]) -> None:
    assert len(examples) == len(rows)
    for example, row in zip(examples, rows, strict=True):
        np.testing.assert_array_equal(np.asarray(example["image"]), arrays["image"][row])
        np.testing.assert_array_equal(np.asarray(example["label"]), arrays["label"][row])
        assert example["sample_id"] == arrays["sample_id"][row]
        assert example["split"] == arrays["split"][row]
        assert [example[name] for name in attribute_names] == list(arrays["attributes"][row] == 1)


def test_every_valid_row_is_an_example(annotated: Path, tmp_path: Path) -> None:
    arrays = raw(annotated)
    dataset = open_store(annotated).to_hf_dataset(cache_dir=tmp_path / "cache")
    assert_examples_are_rows(list(dataset), np.flatnonzero(arrays["valid"]), arrays, ATTRIBUTE_NAMES)
    assert isinstance(dataset.features["image"], datasets.Image) and isinstance(dataset.features["label"], datasets.Image)
    assert dataset.features["split"].names == SPLIT_NAMES
    assert dataset[0]["label"].mode == "L" and dataset[0]["image"].mode == "RGB"


@pytest.mark.parametrize("split", ["val", ["train", "test"]])
def test_split_picks_its_rows(annotated: Path, tmp_path: Path, split: str | list[str]) -> None:
    arrays = raw(annotated)
    wanted = [SPLIT_NAMES.index(name) for name in ([split] if isinstance(split, str) else split)]
    rows = np.flatnonzero(np.isin(arrays["split"], wanted) & arrays["valid"])
    assert 0 < len(rows) < len(arrays["valid"])
    dataset = open_store(annotated).to_hf_dataset(split=split, cache_dir=tmp_path / "cache")
    assert_examples_are_rows(list(dataset), rows, arrays, ATTRIBUTE_NAMES)
    assert set(dataset["split"]) <= set(wanted)


def test_real_attribute_columns_and_class_table(built_store: Path, tmp_path: Path) -> None:
    group = zarr.open_group(built_store, mode="r")
    names = list(group["attributes"].attrs["names"])
    assert len(names) == 40
    dataset = open_store(built_store).to_hf_dataset(cache_dir=tmp_path / "cache")
    for name in names:
        assert dataset.features[name] == datasets.Value("bool")
    k = names.index("Smiling")
    assert dataset["Smiling"] == list(group["attributes"][:, k] == 1)
    table = json.loads(dataset.info.description.splitlines()[-1])
    assert table["classes"] == [{**c, "color": list(c["color"])} for c in group.attrs["classes"]]
    assert "255 = not written" in dataset.info.description


def test_streaming_reads_the_same_examples(annotated: Path, tmp_path: Path, offline_hf: Path) -> None:
    arrays = raw(annotated)
    stream = open_store(annotated).to_hf_dataset(split="train", streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    rows = np.flatnonzero((arrays["split"] == 0) & arrays["valid"])
    assert_examples_are_rows(list(stream), rows, arrays, ATTRIBUTE_NAMES)
    assert not (offline_hf / "datasets").exists() or not any((offline_hf / "datasets").rglob("*.arrow"))


def test_a_rebuilt_store_is_not_served_from_the_cache(annotated: Path, tmp_path: Path) -> None:
    path = tmp_path / "store.zarr"
    shutil.copytree(annotated, path)
    cache = tmp_path / "cache"
    before = open_store(path).to_hf_dataset(cache_dir=cache)[0][ATTRIBUTE_NAMES[0]]
    group = zarr.open_group(path, mode="r+")
    column = group["attributes"][:, 0]
    group["attributes"][:, 0] = 1 - column  # as a rebuild with other inputs would, under a new build id
    group.update_attributes({"build_id": "another build"})
    after = open_store(path).to_hf_dataset(cache_dir=cache)[0][ATTRIBUTE_NAMES[0]]
    assert after == (not before)


def test_default_cache_is_hf_datasets_cache_offline(annotated: Path, tmp_path: Path, offline_hf: Path) -> None:
    # A fresh process, so datasets reads HF_DATASETS_CACHE (tmp) at import, with the hub offline.
    code = ("import celebamask; d = celebamask.open_store(%r).to_hf_dataset(split='test')\n"
            "print(len(d), d.cache_files[0]['filename'])" % str(annotated))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(),
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    count, cache_file = done.stdout.split()[-2:]
    arrays = raw(annotated)
    assert int(count) == int(((arrays["split"] == 2) & arrays["valid"]).sum())
    assert Path(cache_file).is_relative_to(offline_hf / "datasets")


def test_without_datasets_says_which_extra(annotated: Path) -> None:
    code = ("import sys; sys.modules['datasets'] = None\n"
            "import celebamask\n"
            "try:\n    celebamask.open_store(%r).to_hf_dataset()\n"
            "except ModuleNotFoundError as e:\n    print(e)" % str(annotated))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert "celebamask[hf]" in done.stdout


def test_a_lost_split_chunk_of_a_complete_store_raises(annotated: Path, tmp_path: Path) -> None:
    """With no split asked for, only the examples read the split column: zarr would fill a lost
    chunk with 0 ('train' for every row) without a word."""
    from celebamask.errors import CelebaMaskError

    store = tmp_path / "lost-split.zarr"
    shutil.copytree(annotated, store)
    chunk = sorted(p for p in (store / "split" / "c").rglob("*") if p.is_file())[-1]
    chunk.unlink()
    with pytest.raises(CelebaMaskError, match="'split'.*missing from a complete store"):
        list(open_store(store).to_hf_dataset(streaming=True))
