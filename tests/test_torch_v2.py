"""torchvision v2 transforms move the label (and masks) with the image.

Every expectation is the same geometric operation done here in numpy on the stored arrays: a flip,
a nearest-neighbour crop-and-resize and a nearest-neighbour rotation about the image centre.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from tests.optional import optional

optional("torch", "make venv installs it")
optional("torchvision", "make venv installs it; pick a pair with TEST_TORCH")
import torch  # noqa: E402
from torchvision import tv_tensors  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from celebamask import open_store  # noqa: E402
from celebamask.torch import CelebAMaskDataset  # noqa: E402

ROW = 5
FILL = 255


@pytest.fixture(scope="module")
def stored(built_store: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(built_store, mode="r")
    return {"image": group["image"][ROW], "label": group["label"][ROW], "masks": group["masks"][ROW],
            "bits": list(group["masks"].attrs["bits"])}


def planes(bits: np.ndarray, count: int) -> np.ndarray:
    return np.stack([(bits >> k) & 1 for k in range(count)]).astype(np.uint8)


def test_samples_are_tv_tensors(built_store: Path, stored: dict) -> None:
    sample = CelebAMaskDataset(built_store, masks=True)[ROW]
    assert type(sample["image"]) is tv_tensors.Image and type(sample["label"]) is tv_tensors.Mask
    assert type(sample["masks"]) is tv_tensors.Mask and sample["masks"].dtype == torch.uint8
    np.testing.assert_array_equal(sample["image"].numpy(), stored["image"].transpose(2, 0, 1))
    np.testing.assert_array_equal(sample["label"].numpy(), stored["label"])
    names = CelebAMaskDataset(built_store, masks=True).mask_names
    assert names == stored["bits"]
    store = open_store(built_store)
    for k, name in enumerate(names):  # plane k is bit k, checked through the store's own mask query
        np.testing.assert_array_equal(sample["masks"][k].numpy().astype(bool), store.own_mask(ROW, name))


def test_horizontal_flip_moves_image_label_and_masks(built_store: Path, stored: dict) -> None:
    sample = CelebAMaskDataset(built_store, masks=True, transform=v2.RandomHorizontalFlip(p=1))[ROW]
    np.testing.assert_array_equal(sample["image"].numpy(), stored["image"].transpose(2, 0, 1)[:, :, ::-1])
    np.testing.assert_array_equal(sample["label"].numpy(), stored["label"][:, ::-1])
    np.testing.assert_array_equal(sample["masks"].numpy(), planes(stored["masks"], len(stored["bits"]))[:, :, ::-1])
    assert not np.array_equal(stored["label"], stored["label"][:, ::-1])  # the flip is visible at all


class RecordingCrop(v2.RandomResizedCrop):
    """The real transform; remembers the crop it drew so the test can redo it in numpy."""

    def make_params(self, flat_inputs: list) -> dict:
        self.params = super().make_params(flat_inputs)
        return self.params


def nearest_resize(array: np.ndarray, size: int) -> np.ndarray:
    """Nearest neighbour over the last two axes: output pixel i takes source pixel floor(i * in / out)."""
    rows = (np.arange(size) * array.shape[-2]) // size
    cols = (np.arange(size) * array.shape[-1]) // size
    return array[..., rows[:, None], cols[None, :]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_resized_crop_takes_the_same_window_of_the_label(built_store: Path, stored: dict, seed: int) -> None:
    crop = RecordingCrop(128, scale=(0.1, 0.6), antialias=True)
    torch.manual_seed(seed)
    sample = CelebAMaskDataset(built_store, masks=True, transform=crop)[ROW]
    top, left, height, width = (crop.params[k] for k in ("top", "left", "height", "width"))
    assert (height, width) != stored["label"].shape
    window = stored["label"][top:top + height, left:left + width]
    np.testing.assert_array_equal(sample["label"].numpy(), nearest_resize(window, 128))
    mask_window = planes(stored["masks"], len(stored["bits"]))[:, top:top + height, left:left + width]
    np.testing.assert_array_equal(sample["masks"].numpy(), nearest_resize(mask_window, 128))
    assert sample["image"].shape == (3, 128, 128)


def nearest_rotation(label: np.ndarray, degrees: float, fill: int) -> np.ndarray:
    """Counter-clockwise rotation about the centre: each output pixel centre, turned back by
    ``degrees``, takes the source pixel it lands in; outside the source it is ``fill``."""
    size = label.shape[0]
    centre = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    theta = np.deg2rad(degrees)
    # image axes: x right, y down, so a counter-clockwise turn on screen is clockwise in (x, y)
    source_x = np.cos(theta) * (x - centre) - np.sin(theta) * (y - centre) + centre
    source_y = np.sin(theta) * (x - centre) + np.cos(theta) * (y - centre) + centre
    column, row = np.floor(source_x + 0.5).astype(int), np.floor(source_y + 0.5).astype(int)
    inside = (row >= 0) & (row < size) & (column >= 0) & (column < size)
    out = np.full(label.shape, fill, dtype=label.dtype)
    out[inside] = label[row[inside], column[inside]]
    return out


def test_quarter_turn_is_rot90(built_store: Path, stored: dict) -> None:
    rotate = v2.RandomRotation((90, 90), fill={tv_tensors.Image: 0, tv_tensors.Mask: FILL})
    sample = CelebAMaskDataset(built_store, masks=True, transform=rotate)[ROW]
    np.testing.assert_array_equal(sample["label"].numpy(), np.rot90(stored["label"]))
    np.testing.assert_array_equal(sample["image"].numpy(), np.rot90(stored["image"].transpose(2, 0, 1), axes=(1, 2)))
    np.testing.assert_array_equal(sample["masks"].numpy(),
                                  np.rot90(planes(stored["masks"], len(stored["bits"])), axes=(1, 2)))


@pytest.mark.parametrize("degrees", [30.0, -17.5])
def test_rotation_fills_with_ignore_and_invents_no_class(built_store: Path, stored: dict, degrees: float) -> None:
    rotate = v2.RandomRotation((degrees, degrees), fill={tv_tensors.Image: 0, tv_tensors.Mask: FILL})
    label = CelebAMaskDataset(built_store, transform=rotate)[ROW]["label"].numpy()
    expected = nearest_rotation(stored["label"], degrees, FILL)
    assert set(np.unique(label)) <= set(np.unique(stored["label"])) | {FILL}  # nothing blended into a new id
    assert label[0, 0] == label[0, -1] == label[-1, 0] == label[-1, -1] == FILL  # corners left the image
    assert (label == FILL).mean() == pytest.approx((expected == FILL).mean(), abs=0.002)
    # pixel centres that land exactly between two source pixels may round either way: a sliver of them
    assert (label == expected).mean() > 0.995


def test_image_and_label_stay_aligned_under_a_random_chain(built_store: Path, stored: dict) -> None:
    """Paint the label into the image first: after any chain of nearest-neighbour v2 ops the two must
    still agree pixel for pixel (the image's channel 0 is the label)."""

    def label_as_image(sample: dict) -> dict:
        return {**sample, "image": tv_tensors.Image(sample["label"].to(torch.uint8).expand(3, -1, -1).clone())}

    nearest = v2.InterpolationMode.NEAREST
    chain = v2.Compose([
        label_as_image,
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomResizedCrop(200, scale=(0.2, 1.0), interpolation=nearest),
        v2.RandomRotation(40, interpolation=nearest, fill={tv_tensors.Image: FILL, tv_tensors.Mask: FILL}),
    ])
    dataset = CelebAMaskDataset(built_store, transform=chain)
    torch.manual_seed(3)
    for row in range(6):
        sample = dataset[row]
        np.testing.assert_array_equal(sample["image"][0].numpy(), sample["label"].numpy())


def test_custom_classes_keep_the_ignore_index_through_a_rotation(built_store: Path, stored: dict) -> None:
    rotate = v2.RandomRotation((45, 45), fill={tv_tensors.Image: 0, tv_tensors.Mask: 255})
    dataset = CelebAMaskDataset(built_store, classes=["background", "skin", "hair"], transform=rotate)
    label = dataset[ROW]["label"].numpy()
    assert set(np.unique(label)) <= {0, 1, 2, 255}
