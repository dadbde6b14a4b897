"""Name what a file that is not the expected format is, for an error message."""

from __future__ import annotations

import io
import warnings

from PIL import Image


def what_it_is(data: bytes) -> str:
    """"found GIF", or "not an image format Pillow recognises": Pillow names the format, and
    whatever it raises meanwhile (a decompression-bomb size, damage) only means it cannot say."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return f"found {image.format or 'unknown format'}"
    except Exception:  # noqa: BLE001 - only a name for a message
        return "not an image format Pillow recognises"
