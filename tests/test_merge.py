from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from celebamask.build.merge import decode_mask, paint_label
from celebamask.build.worker import build_sample
from celebamask.config import load_config
from celebamask.errors import CelebaMaskError
from celebamask.sources.index import index_source, locate_source
from tests.reference import CONVENTIONS, reference_label


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def random_mask(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((512, 512)) > 0.5


def as_mode(mask: np.ndarray, mode: str) -> Image.Image:
    """The same 0/255 mask saved the ways users' copies store it."""
    gray = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    if mode == "P":
        return gray.convert("P")
    return gray.convert(mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1", "LA"])
def test_every_png_mode_gives_the_same_mask(mode: str) -> None:
    mask = random_mask()
    decoded = decode_mask(png_bytes(as_mode(mask, mode)), f"x_{mode}.png")
    assert decoded.dtype == bool
    np.testing.assert_array_equal(decoded, mask)


def test_only_the_first_channel_counts() -> None:
    rgb = np.zeros((512, 512, 3), dtype=np.uint8)
    rgb[:10, :, 0] = 255  # red: on
    rgb[10:20, :, 1] = 255  # green only: off
    rgb[20:30, :, 2] = 255  # blue only: off
    decoded = decode_mask(png_bytes(Image.fromarray(rgb, "RGB")), "rgb.png")
    assert decoded[:10].all() and not decoded[10:].any()


def test_palette_with_nonzero_index_but_black_red_is_off() -> None:
    indices = np.zeros((512, 512), dtype=np.uint8)
    indices[:5] = 1
    indices[5:9] = 2
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 255, 255, 255, 0, 200, 0] + [0] * (3 * 253))
    decoded = decode_mask(png_bytes(image), "p.png")
    assert decoded[:5].all() and not decoded[5:].any()


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        (b"", "empty file"),
        (png_bytes(Image.new("L", (256, 256))), "256x256, expected 512x512"),
        (png_bytes(Image.new("L", (512, 512)))[:200], "cannot decode PNG"),
        (b"GIF89a not really", "not a PNG"),
    ],
)
def test_bad_masks_name_the_file(payload: bytes, complaint: str) -> None:
    with pytest.raises(CelebaMaskError, match=complaint) as caught:
        decode_mask(payload, "/data/00001_skin.png")
    assert caught.value.path == "/data/00001_skin.png"


def test_later_classes_in_paint_order_win() -> None:
    config = load_config("default")
    skin = np.zeros((512, 512), dtype=bool)
    skin[100:400, 100:400] = True
    hair = np.zeros((512, 512), dtype=bool)
    hair[50:200, 50:450] = True
    label = paint_label({"hair": hair, "skin": skin}, config)  # dict order must not matter
    assert label[150, 150] == config.class_id("hair")
    assert label[300, 300] == config.class_id("skin")
    assert label[10, 10] == config.background


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_labels_match_an_independent_reference_merge(synthetic_source: Path, convention: str) -> None:
    config = load_config(convention)
    index = index_source(locate_source(synthetic_source))
    differs_between_conventions = 0
    with index.ref.open() as files:
        for sample in index.samples:
            label = build_sample(files, sample, config).label
            expected = reference_label(synthetic_source, sample.index, convention)
            np.testing.assert_array_equal(label, expected, err_msg=f"sample {sample.index}")
            other = "official" if convention != "official" else "default"
            remapped = reference_label(synthetic_source, sample.index, other)
            differs_between_conventions += int(not np.array_equal(_names(label, convention), _names(remapped, other)))
    # The synthetic masks overlap, so the paint order must matter somewhere.
    assert differs_between_conventions > 0


def _names(label: np.ndarray, convention: str) -> np.ndarray:
    """Label ids → class-name codes shared by every convention, to compare paint results."""
    order, first_id, background = CONVENTIONS[convention]
    lookup = np.full(256, -1, dtype=np.int16)
    lookup[background] = 99
    for offset, name in enumerate(order):
        lookup[first_id + offset] = sorted(order).index(name)
    return lookup[label]


def test_class_areas_counting_only_the_ids_a_map_can_hold_matches_a_full_count() -> None:
    from celebamask.build.worker import class_areas

    rng = np.random.default_rng(3)
    for held in ([18], [18, 0, 16], [18, *range(18)]):
        label = rng.choice(np.array(held, dtype=np.uint8), size=(64, 64))
        expected = np.zeros(19, dtype=np.int64)
        values, counts = np.unique(label, return_counts=True)
        expected[values] = counts
        assert np.array_equal(class_areas(label, 19, dict.fromkeys(held, (0, 64))), expected)


def test_class_areas_counts_each_class_in_its_rows_only() -> None:
    from celebamask.build.worker import class_areas

    label = np.full((64, 64), 18, dtype=np.uint8)
    label[10:20, 5:9] = 3
    label[30:33, :] = 16
    counts = class_areas(label, 19, {18: (0, 64), 3: (8, 21), 16: (30, 33)})
    assert (counts[3], counts[16], counts[18]) == (40, 192, 64 * 64 - 40 - 192)
    with pytest.raises(ValueError, match="outside the rows"):
        class_areas(label, 19, {18: (0, 64), 3: (12, 21), 16: (30, 33)})  # rows 10-11 of class 3 left out


def test_class_areas_refuses_a_value_outside_the_ids_given() -> None:
    from celebamask.build.worker import class_areas

    label = np.full((8, 8), 18, dtype=np.uint8)
    label[0, 0] = 16  # hair, but the sample had no hair mask
    with pytest.raises(ValueError, match=r"\[16\]"):
        class_areas(label, 19, {18: (0, 8), 0: (0, 8)})
    label[0, 0] = 40  # beyond the class table
    with pytest.raises(ValueError, match=r"\[40\]"):
        class_areas(label, 19, {18: (0, 8), 0: (0, 8)})
