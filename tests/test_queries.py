"""Reader helpers over the annotation arrays, `celebamask stats`, and the attribute → region map."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from celebamask import open_store
from celebamask.cli import main
from celebamask.dataset import MASK_CLASS_NAMES
from celebamask.errors import CelebaMaskError
from celebamask.read.regions import ATTRIBUTE_REGIONS_PATH, load_attribute_regions
from tests.conftest import SOURCE_COUNT
from tests.test_annotations import (
    ATTRIBUTES,
    DEFAULT_IDS,
    read_mapping,
    read_table,
    split_name,
)


@pytest.fixture(scope="module")
def labels(built_store: Path) -> np.ndarray:
    return zarr.open_group(built_store, mode="r")["label"][:]


def test_split_and_attribute_follow_the_source_files(built_store: Path, synthetic_source: Path) -> None:
    store = open_store(built_store)
    mapping = read_mapping(synthetic_source)
    for name in ("train", "val", "test"):
        assert store.split(name).tolist() == [i for i in range(SOURCE_COUNT) if split_name(mapping[i][0]) == name]
    names, rows = read_table(synthetic_source, ATTRIBUTES)
    for attribute in ("Eyeglasses", "Male", "Young"):
        column = names.index(attribute)
        assert store.attribute(attribute).tolist() == [rows[i][column] == "1" for i in range(SOURCE_COUNT)]
    with pytest.raises(KeyError, match="unknown split 'validation'"):
        store.split("validation")
    with pytest.raises(KeyError, match="unknown attribute 'Glasses'"):
        store.attribute("Glasses")


def test_region_and_attribute_region_are_unions_of_label_values(built_store: Path, labels: np.ndarray) -> None:
    store = open_store(built_store)
    row = 5
    assert np.array_equal(store.region(row, "hair"), labels[row] == DEFAULT_IDS["hair"])
    lips = (labels[row] == DEFAULT_IDS["u_lip"]) | (labels[row] == DEFAULT_IDS["l_lip"])
    assert np.array_equal(store.region(row, ["u_lip", "l_lip"]), lips)
    mouth_and_lips = lips | (labels[row] == DEFAULT_IDS["mouth"])
    assert np.array_equal(store.attribute_region(row, "Smiling"), mouth_and_lips)
    assert np.array_equal(store.attribute_region(row, "Eyeglasses"), labels[row] == DEFAULT_IDS["eye_g"])
    with pytest.raises(KeyError, match="shows in no region"):
        store.attribute_region(row, "Attractive")
    with pytest.raises(KeyError, match="unknown class 'glasses'"):
        store.region(row, ["hair", "glasses"])


def test_select_combines_split_presence_and_attributes(built_store: Path, synthetic_source: Path,
                                                       labels: np.ndarray) -> None:
    store = open_store(built_store)
    mapping = read_mapping(synthetic_source)
    names, rows = read_table(synthetic_source, ATTRIBUTES)
    male = names.index("Male")
    expected = [i for i in range(SOURCE_COUNT)
                if split_name(mapping[i][0]) == "train" and (labels[i] == DEFAULT_IDS["mouth"]).any()
                and (labels[i] == DEFAULT_IDS["neck"]).any() and rows[i][male] == "-1"]
    selected = store.select(split="train", present=["mouth", "neck"], attributes={"Male": False})
    assert selected.tolist() == expected and 0 < len(expected) < SOURCE_COUNT
    assert store.select().tolist() == list(range(SOURCE_COUNT))


def test_stats_counts_presence_and_area_from_the_labels(built_store: Path, synthetic_source: Path,
                                                        labels: np.ndarray) -> None:
    result = CliRunner().invoke(main, ["stats", str(built_store), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    by_name = {row["name"]: row for row in report["classes"]}
    assert set(by_name) == set(DEFAULT_IDS)
    for name, class_id in DEFAULT_IDS.items():
        pixels = (labels == class_id).sum(axis=(1, 2))
        assert by_name[name]["images"] == int((pixels > 0).sum())
        if (pixels > 0).any():
            assert by_name[name]["area_percent"] == pytest.approx(100 * pixels[pixels > 0].mean() / 512**2)
    mapping = read_mapping(synthetic_source)
    expected_counts = {s: sum(split_name(o) == s for o, _ in mapping.values()) for s in ("train", "val", "test")}
    assert report["split_counts"] == expected_counts and report["samples"] == SOURCE_COUNT

    train = [i for i in range(SOURCE_COUNT) if split_name(mapping[i][0]) == "train"]
    text = CliRunner().invoke(main, ["stats", str(built_store), "--split", "train"])
    assert text.exit_code == 0, text.output
    assert f"samples: {len(train)} in split train" in text.output
    skin_row = next(line.split() for line in text.output.splitlines() if line.split()[1:2] == ["skin"])
    assert int(skin_row[2]) == int(((labels[train] == DEFAULT_IDS["skin"]).any(axis=(1, 2))).sum())


def test_queries_on_a_store_without_annotations_say_why(built_store: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "old.zarr"
    shutil.copytree(built_store, copy)
    for name in ("split", "class_present", "class_area"):
        shutil.rmtree(copy / name)
    store = open_store(copy)
    with pytest.raises(CelebaMaskError, match="no 'split' array"):
        store.split("train")
    with pytest.raises(CelebaMaskError, match="no 'class_present' array"):
        store.select(present=["hair"])
    result = CliRunner().invoke(main, ["stats", str(copy)])
    assert result.exit_code == 1 and result.output.startswith(f"error: {copy}: store has no 'class_present'")


def test_attribute_region_map_covers_every_celeba_attribute_once(synthetic_source: Path) -> None:
    celeba_names, _ = read_table(synthetic_source, ATTRIBUTES)
    data = tomllib.loads(ATTRIBUTE_REGIONS_PATH.read_text())
    with_region, without = list(data["regions"]), data["no_region"]["attributes"]
    assert sorted(with_region + without) == sorted(celeba_names) and len(celeba_names) == 40
    assert all(region in MASK_CLASS_NAMES for regions in data["regions"].values() for region in regions)
    loaded = load_attribute_regions()
    assert loaded.regions_of("Wearing_Hat") == ("hat",) and loaded.regions_of("Bangs") == ("hair",)


def test_attribute_region_map_refuses_unknown_regions(tmp_path: Path) -> None:
    bad = tmp_path / "map.toml"
    bad.write_text('[regions]\nEyeglasses = ["glasses"]\n[no_region]\nattributes = []\n')
    with pytest.raises(CelebaMaskError, match="unknown region 'glasses'"):
        load_attribute_regions(bad)
