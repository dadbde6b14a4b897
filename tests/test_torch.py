from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import zarr

from celebamask import open_store
from celebamask.errors import CelebaMaskError
from tests.annotation_like import copy_with_annotation_like_arrays
from tests.conftest import SOURCE_COUNT
from tests.optional import optional
from tests.reference import CONVENTIONS

torch = optional("torch", "make venv installs it")
from torch.utils.data import DataLoader  # noqa: E402

from celebamask.torch import CelebAMaskDataset  # noqa: E402

INVALID_ROWS = (2, 13)


@pytest.fixture(scope="module")
def stored(built_store: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(built_store, mode="r")
    return {name: group[name][:] for name in ("image", "label", "sample_id")}


@pytest.fixture(scope="module")
def annotated_store(built_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    target = tmp_path_factory.mktemp("annotated_torch") / "store.zarr"
    return target, copy_with_annotation_like_arrays(built_store, target, invalid_rows=INVALID_ROWS)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_two_worker_loader_reads_every_sample_exactly(built_store: Path, stored: dict[str, np.ndarray],
                                                      start_method: str) -> None:
    dataset = CelebAMaskDataset(built_store)
    dataset[0]  # the parent has read through zarr before the workers start (and, with fork, inherit that)
    seen: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for batch in DataLoader(dataset, batch_size=5, shuffle=True, num_workers=2, multiprocessing_context=start_method):
        assert batch["image"].dtype == torch.uint8 and batch["label"].dtype == torch.int64
        assert batch["image"].shape[1:] == (3, 512, 512) and batch["label"].shape[1:] == (512, 512)
        for k, sample_id in enumerate(batch["sample_id"].tolist()):
            assert sample_id not in seen
            seen[sample_id] = (batch["image"][k].numpy(), batch["label"][k].numpy())
    assert sorted(seen) == list(range(SOURCE_COUNT))
    for row, sample_id in enumerate(stored["sample_id"]):
        image, label = seen[int(sample_id)]
        np.testing.assert_array_equal(image, stored["image"][row].transpose(2, 0, 1))
        np.testing.assert_array_equal(label, stored["label"][row])


def test_float_images_and_transform(built_store: Path, stored: dict[str, np.ndarray]) -> None:
    def flip(sample: dict) -> dict:
        return {**sample, "image": sample["image"].flip(-1), "label": sample["label"].flip(-1)}

    sample = CelebAMaskDataset(built_store, transform=flip, float_image=True)[4]
    assert sample["image"].dtype == torch.float32 and sample["sample_id"] == int(stored["sample_id"][4])
    expected = stored["image"][4].transpose(2, 0, 1)[:, :, ::-1] / 255
    np.testing.assert_allclose(sample["image"].numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(sample["label"].numpy(), stored["label"][4][:, ::-1])


def test_classes_pick_and_merge_ids(built_store: Path, stored: dict[str, np.ndarray]) -> None:
    order, first_id, background = CONVENTIONS["default"]
    stored_id = {name: first_id + k for k, name in enumerate(order)} | {"background": background}
    label = stored["label"][6]

    listed = CelebAMaskDataset(built_store, classes=["background", "hair", "skin"])
    expected = np.full(label.shape, 255)
    for new_id, name in enumerate(["background", "hair", "skin"]):
        expected[label == stored_id[name]] = new_id
    np.testing.assert_array_equal(listed[6]["label"].numpy(), expected)
    assert listed.class_names == ["background", "hair", "skin"] and listed.num_classes == 3

    merged = CelebAMaskDataset(built_store, classes={"l_eye": 1, "r_eye": 1, "skin": 0}, ignore_index=-100)
    expected = np.full(label.shape, -100)
    expected[label == stored_id["skin"]] = 0
    expected[(label == stored_id["l_eye"]) | (label == stored_id["r_eye"])] = 1
    np.testing.assert_array_equal(merged[6]["label"].numpy(), expected)
    assert merged.class_names == ["skin", "l_eye+r_eye"]

    with pytest.raises(KeyError, match="beard"):
        CelebAMaskDataset(built_store, classes=["beard"])
    with pytest.raises(ValueError, match="twice"):
        CelebAMaskDataset(built_store, classes=["hair", "hair"])


def test_split_needs_the_split_array(built_store: Path, tmp_path: Path) -> None:
    import shutil

    import zarr

    without_split = tmp_path / "no-split.zarr"
    shutil.copytree(built_store, without_split)
    del zarr.open_group(without_split, mode="r+")["split"]  # as built from a source without the mapping file
    with pytest.raises(CelebaMaskError, match="no 'split' array"):
        CelebAMaskDataset(without_split, split="train")


def test_split_selects_its_rows_and_skips_invalid_ones(annotated_store: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, written = annotated_store
    valid = np.ones(SOURCE_COUNT, dtype=bool)
    valid[list(INVALID_ROWS)] = False
    train = CelebAMaskDataset(path, split="train")
    np.testing.assert_array_equal(train.rows, np.flatnonzero((written["split"] == 0) & valid))
    held_out = CelebAMaskDataset(path, split=["val", "test"])
    np.testing.assert_array_equal(held_out.rows, np.flatnonzero((written["split"] > 0) & valid))
    assert len(CelebAMaskDataset(path)) == SOURCE_COUNT - len(INVALID_ROWS)
    with pytest.raises(CelebaMaskError, match="unknown split holdout"):
        CelebAMaskDataset(path, split="holdout")


def test_pickles_without_open_handles(built_store: Path) -> None:
    dataset = CelebAMaskDataset(open_store(built_store))
    dataset[1]
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._store is None
    np.testing.assert_array_equal(clone[1]["label"].numpy(), dataset[1]["label"].numpy())


def test_without_torchvision_samples_are_plain_tensors(built_store: Path) -> None:
    import subprocess
    import sys

    # None in sys.modules makes `import torchvision` fail as if it were not installed.
    code = ("import sys; sys.modules['torchvision'] = None\n"
            "import torch; from celebamask.torch import CelebAMaskDataset\n"
            f"s = CelebAMaskDataset({str(built_store)!r})[0]\n"
            "print(type(s['image']) is torch.Tensor, type(s['label']) is torch.Tensor)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "True"]
