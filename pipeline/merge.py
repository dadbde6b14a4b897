"""Merge the per-class binary masks of one sample into a single uint8 label map.

A pixel is "on" where the mask's first channel is non-zero, whatever the PNG mode (the
official merge script's rule); classes are painted in the config's paint order, so a later
class overwrites an earlier one where masks overlap.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.config import MASK_SIZE, ClassConfig
from pipeline.errors import CelebaMaskError


def decode_mask(data: bytes, path: str) -> np.ndarray:
    """Return the mask as a bool array; raise naming ``path`` if it is not a 512² PNG."""
    if not data:
        raise CelebaMaskError(path, "empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise CelebaMaskError(path, f"not a PNG (found {image.format or 'unknown format'})")
            if image.size != (MASK_SIZE, MASK_SIZE):
                width, height = image.size
                raise CelebaMaskError(path, f"mask is {width}x{height}, expected {MASK_SIZE}x{MASK_SIZE}")
            return _first_channel_on(image)
    except CelebaMaskError:
        raise
    except UnidentifiedImageError as exc:
        raise CelebaMaskError(path, "not a PNG (not an image format Pillow recognises)") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's ways of saying "corrupt"
        raise CelebaMaskError(path, f"cannot decode PNG: {exc}") from exc


def _first_channel_on(image: Image.Image) -> np.ndarray:
    if image.mode == "P":
        # The first channel of a palette image is the palette's red entry of each index.
        indices = np.asarray(image)
        palette = np.asarray(image.getpalette() or [0, 0, 0], dtype=np.uint8).reshape(-1, 3)
        red = np.zeros(256, dtype=bool)
        red[: len(palette)] = palette[:, 0] != 0
        return red[indices]
    if len(image.getbands()) > 1:
        image = image.getchannel(0)
    return np.asarray(image) != 0


def paint_label(masks: Mapping[str, np.ndarray], config: ClassConfig) -> np.ndarray:
    """Paint ``masks`` (class name -> bool array) onto the background in paint order."""
    label = np.full((MASK_SIZE, MASK_SIZE), config.background, dtype=np.uint8)
    for name, class_id in zip(config.paint_order, config.paint_ids):
        mask = masks.get(name)
        if mask is not None:
            label[mask] = class_id
    return label
