"""Painting label maps from mask bits (store/maskbits.py) against an independent per-class painter."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from celebamask import open_store
from celebamask.config import load_config
from celebamask.errors import CelebaMaskError
from celebamask.store.chunks import Chain
from celebamask.store.maskbits import BIT_OF, GATHER_BLOCK, MASK_BITS, PATTERNS, paint_bits

PRESETS = ("default", "official", "face-parsing")


def _reference(bits: np.ndarray, config_name: str) -> np.ndarray:
    """The label map painted class by class in paint order, as the build paints its masks."""
    config = load_config(config_name)
    label = np.full(bits.shape, config.background, dtype=np.uint8)
    for name, class_id in zip(config.paint_order, config.paint_ids):
        label[(bits >> np.uint32(BIT_OF[name])) & 1 == 1] = class_id
    return label


@pytest.fixture(scope="module")
def every_pattern() -> np.ndarray:
    """Every one of the 2**18 bit patterns once (one 512² map), then shuffled copies: a batch that
    spans many gather blocks and ends inside one."""
    assert len(MASK_BITS) == 18 and PATTERNS == 512 * 512
    rng = np.random.default_rng(3)
    patterns = np.arange(PATTERNS, dtype=np.uint32).reshape(512, 512)
    batch = np.stack([patterns, *(rng.permutation(patterns.reshape(-1)).reshape(512, 512) for _ in range(2))])
    return batch[:, :, :509]  # 3 * 512 * 509 pixels: not a multiple of the block


@pytest.mark.parametrize("preset", PRESETS)
def test_painting_every_bit_pattern_equals_painting_class_by_class(every_pattern: np.ndarray, preset: str) -> None:
    assert every_pattern.size % GATHER_BLOCK != 0 and every_pattern.size > 4 * GATHER_BLOCK
    expected = _reference(every_pattern, preset)
    painted = paint_bits(every_pattern, load_config(preset))
    assert painted.dtype == np.uint8 and painted.shape == every_pattern.shape
    np.testing.assert_array_equal(painted, expected)
    np.testing.assert_array_equal(paint_bits(every_pattern[1], load_config(preset)), expected[1])  # one map
    strided = every_pattern[:, ::2, ::3]  # a view that is not contiguous
    np.testing.assert_array_equal(paint_bits(strided, load_config(preset)), expected[:, ::2, ::3])


def test_painting_into_out_fills_it_contiguous_or_not(every_pattern: np.ndarray) -> None:
    config = load_config("default")
    expected = _reference(every_pattern, "default")
    out = np.full(every_pattern.shape, 77, dtype=np.uint8)
    assert paint_bits(every_pattern, config, out=out) is out
    np.testing.assert_array_equal(out, expected)
    wide = np.full((3, 512, 1018), 77, dtype=np.uint8)
    paint_bits(every_pattern, config, out=wide[:, :, ::2])
    np.testing.assert_array_equal(wide[:, :, ::2], expected)
    assert (wide[:, :, 1::2] == 77).all()  # nothing written beside the view


def test_a_bit_above_the_mask_classes_is_an_index_error() -> None:
    bits = np.zeros((2, 64, 64), dtype=np.uint32)
    bits[1, 5, 7] = np.uint32(1 << len(MASK_BITS))
    with pytest.raises(IndexError):
        paint_bits(bits, load_config("default"))


@pytest.mark.parametrize("dtype", ["<u4", ">u4", "<i2", "u1"])
def test_chunks_decode_into_rows_in_either_byte_order(dtype: str) -> None:
    values = np.random.default_rng(0).integers(0, 200, (1, 8, 8)).astype(dtype)
    chain = Chain((1, 8, 8), (4, 1, 1), np.dtype(dtype), 0,
                  ({"name": "bytes", "configuration": {"endian": "little"}},
                   {"name": "zstd", "configuration": {"level": 3, "checksum": False}}))
    encoded = b"".join(bytes(piece) for piece in chain.encode(values))
    out = np.empty((1, 8, 8), dtype=dtype)
    chain.decode(encoded, out=out)
    np.testing.assert_array_equal(out, values)
    assert np.frombuffer(encoded, dtype=np.uint8).size > 0


def test_label_maps_of_rows_in_any_order_equal_the_stored_labels(built_store: Path) -> None:
    store = open_store(built_store)
    labels = np.asarray(store.labels[:])
    rows = np.random.default_rng(2).permutation(len(store)).tolist()
    rows = [*rows, rows[0], rows[0]]  # in any order, repeated, across shards
    np.testing.assert_array_equal(store.label_maps(rows), labels[rows])
    np.testing.assert_array_equal(store.label_maps(rows[3]), labels[rows[3]])
    assert store.label_maps([]).shape == (0, *labels.shape[1:])


def test_label_maps_of_a_complete_store_missing_a_masks_shard_raise(built_store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(built_store, copy)
    shard_files = sorted(p for p in (copy / "masks").rglob("*") if p.is_file() and p.name != "zarr.json")
    assert len(shard_files) > 1
    shard_files[-1].unlink()
    store = open_store(copy)
    with pytest.raises(CelebaMaskError, match="masks.*shard file is missing"):
        store.label_maps(slice(None))
