"""The ``masks`` array: every class's own mask kept as one bit of a uint32 per pixel.

Bit k is set where mask class ``MASK_BITS[k]`` is on (its PNG's first channel non-zero), so
overlaps the label map paints away stay in the store and any class convention can be rendered
at read time. Painting is a table lookup: each of the 2**18 possible bit patterns maps to the
id of its last-painted class (or the background), so a map costs one gather, not 18 passes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from celebamask.config import MASK_SIZE, ClassConfig
from celebamask.dataset import MASK_CLASS_NAMES

MASK_BITS: tuple[str, ...] = MASK_CLASS_NAMES  # bit k ↔ class MASK_BITS[k]; recorded as masks.attrs["bits"]
BIT_OF: dict[str, int] = {name: k for k, name in enumerate(MASK_BITS)}
PATTERNS = 1 << len(MASK_BITS)
MASKS_ZSTD_LEVEL = 3  # measured: as fast as level 1 to decode, ~10% smaller on mask bits


def paint_table(paint_order: tuple[str, ...], paint_ids: tuple[int, ...], background: int) -> np.ndarray:
    """uint8 table: bit pattern → label id, later classes in ``paint_order`` winning."""
    return _paint_table(tuple(paint_order), tuple(paint_ids), int(background))


@lru_cache(maxsize=16)
def _paint_table(paint_order: tuple[str, ...], paint_ids: tuple[int, ...], background: int) -> np.ndarray:
    patterns = np.arange(PATTERNS, dtype=np.uint32)
    table = np.full(PATTERNS, background, dtype=np.uint8)
    for name, class_id in zip(paint_order, paint_ids):
        table[(patterns & np.uint32(1 << BIT_OF[name])) != 0] = class_id
    table.setflags(write=False)
    return table


GATHER_BLOCK = 1 << 16  # pixels per gather: numpy widens each block's indices to intp, kept in cache


def paint_bits(bits: np.ndarray, config: ClassConfig, out: np.ndarray | None = None) -> np.ndarray:
    """The label map(s) of ``config`` painted from mask bits of any shape (uint32).

    One gather from the table, in blocks: a single ``np.take`` over a batch first widens every
    index to 8 bytes in memory, which cost more than the gather itself (bench/masks.py).
    A value with a bit above the 18 mask classes is no pattern the build writes: IndexError."""
    table = paint_table(config.paint_order, config.paint_ids, config.background)
    result = np.empty(np.shape(bits), dtype=np.uint8) if out is None else out
    if not (result.flags.c_contiguous and isinstance(bits, np.ndarray) and bits.shape == result.shape):
        return np.take(table, bits, out=result)
    flat_bits, flat_out = np.ascontiguousarray(bits).reshape(-1), result.reshape(-1)
    for start in range(0, flat_bits.size, GATHER_BLOCK):
        np.take(table, flat_bits[start : start + GATHER_BLOCK], out=flat_out[start : start + GATHER_BLOCK])
    return result


def bit_masks_or(masks: dict[str, tuple[int, np.ndarray]], shape: tuple[int, int]) -> np.ndarray:
    """OR each class's band of "on" rows ((top, bool rows)) into one uint32 map; names that are
    no mask class (a tolerated _background.png) add nothing."""
    bits = np.zeros(shape, dtype=np.uint32)
    for name, (top, on) in masks.items():
        k = BIT_OF.get(name)
        if k is None:
            continue
        band = bits[top : top + len(on)]
        np.bitwise_or(band, np.uint32(1 << k), out=band, where=on)
    return bits


def bit_areas(bits: np.ndarray) -> np.ndarray:
    """Pixels per mask class (uint32, bit order) in one (y, x) map of bits."""
    return np.array([np.count_nonzero(bits & np.uint32(1 << k)) for k in range(len(MASK_BITS))], dtype=np.uint32)


def resize_label(label: np.ndarray, size: int) -> np.ndarray:
    """Labels are born at 512²; nearest neighbour keeps them valid class ids at other sizes."""
    if size == MASK_SIZE:
        return label
    return np.asarray(Image.fromarray(label).resize((size, size), Image.Resampling.NEAREST))
