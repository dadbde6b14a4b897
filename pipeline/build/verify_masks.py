"""verify's checks of the ``masks`` array: the label is the painting of the masks with the store's
own config (row by row: a strong end-to-end check of both), unpainted areas are counts of the
bits, and with ``--source`` every bit equals the source PNGs."""

from __future__ import annotations

import numpy as np

from celebamask.config import ClassConfig
from celebamask.store.maskbits import MASK_BITS, PATTERNS, bit_areas, paint_bits


def check_mask_rows(location: str, masks: np.ndarray, labels: np.ndarray, valid: np.ndarray,
                    unpainted_area: np.ndarray | None, config: ClassConfig, first_row: int) -> list[str]:
    problems = []
    for offset, (bits, label) in enumerate(zip(masks, labels)):
        row = first_row + offset
        if not valid[offset]:
            if bits.any():
                problems.append(f"{location}/masks: row {row} is invalid but its masks are not all 0")
            continue
        if int(bits.max(initial=0)) >= PATTERNS:
            problems.append(f"{location}/masks: row {row} sets bits above the {len(MASK_BITS)} mask classes")
            continue
        painted = paint_bits(bits, config)
        if not np.array_equal(painted, label):
            problems.append(f"{location}/label: row {row} differs in {int((painted != label).sum())} pixels from "
                            "its masks painted with the store's config")
        if unpainted_area is not None and not np.array_equal(unpainted_area[offset], bit_areas(bits)):
            problems.append(f"{location}/class_area_unpainted: row {row} is not a count of its masks")
    return problems


def compare_masks_with_source(location: str, stored: np.ndarray, built: np.ndarray, row: int, sample_id: int) -> list[str]:
    if np.array_equal(stored, built):
        return []
    differing = stored ^ built
    names = [name for k, name in enumerate(MASK_BITS) if (differing & np.uint32(1 << k)).any()]
    return [f"{location}/masks: row {row} (sample {sample_id}) differs from the source PNGs in {', '.join(names)}"]
