"""Decode a sample's JPEG straight to the store's size, and bring labels to that size.

libjpeg can decode at 1/2, 1/4 or 1/8 scale by dropping DCT coefficients (Pillow's ``draft``);
for 1024² → 512² that is 3× faster than a full decode and 44–52 dB from a full decode plus
Lanczos. Any remaining factor is finished with Lanczos.

simplejpeg drives libjpeg-turbo directly and gives the same pixels as Pillow's ``draft`` about
a third faster (no file-object layer); Pillow stays the path for anything simplejpeg declines
(CMYK, damaged or non-JPEG data), which also produces the precise error messages.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from celebamask.config import MASK_SIZE
from celebamask.errors import CelebaMaskError

# libjpeg's warnings about missing or damaged data (simplejpeg raises them with strict=True)
_LIBJPEG_DAMAGE_WARNINGS = ("Premature end of JPEG file", "Corrupt JPEG data")

try:
    import simplejpeg
except ImportError:  # pragma: no cover - simplejpeg is a dependency, this is a safety net
    simplejpeg = None


def decode_image(data: bytes, path: str, size: int) -> np.ndarray:
    """Return the image as a (size, size, 3) uint8 array; raise naming ``path`` if it is unusable."""
    if not data:
        raise CelebaMaskError(path, "empty file (0 bytes)")
    reduced = decode_jpeg_reduced(data, size, path)
    if reduced is not None:
        if reduced.shape[:2] == (size, size):
            return reduced
        return np.asarray(Image.fromarray(reduced).resize((size, size), Image.Resampling.LANCZOS))
    return _decode_image_with_pillow(data, path, size)


def decode_jpeg_reduced(data: bytes, size: int, path: str = "JPEG data") -> np.ndarray | None:
    """The square JPEG decoded by libjpeg-turbo at the smallest scale n/8 still ≥ ``size`` (for
    1024 → 512 what Pillow's ``draft`` gives); None if simplejpeg is missing or declines the data.

    A truncated or damaged JPEG raises naming ``path``: libjpeg only warns about it (and fills
    what is missing with grey), so Pillow, which ignores the warnings, could decode it silently.
    """
    if simplejpeg is None:
        return None
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        if width != height or width < size:
            return None  # Pillow's path reports it
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=size, min_width=size, strict=True)
    except ValueError as exc:
        if str(exc).startswith(_LIBJPEG_DAMAGE_WARNINGS):
            raise CelebaMaskError(path, f"cannot decode JPEG: truncated or damaged ({exc})") from exc
        return None


def _decode_image_with_pillow(data: bytes, path: str, size: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG":
                raise CelebaMaskError(path, f"not a JPEG (found {image.format or 'unknown format'})")
            width, height = image.size
            if width != height:
                raise CelebaMaskError(path, f"image is {width}x{height}, not square")
            if width < size:
                raise CelebaMaskError(path, f"image is {width}x{height}, smaller than the store's {size}x{size}")
            image.draft("RGB", (size, size))
            rgb = image.convert("RGB") if image.mode != "RGB" else image
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
            return np.asarray(rgb)
    except CelebaMaskError:
        raise
    except UnidentifiedImageError as exc:
        raise CelebaMaskError(path, "not a JPEG (not an image format Pillow recognises)") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise CelebaMaskError(path, f"cannot decode JPEG: {exc}") from exc


def resize_label(label: np.ndarray, size: int) -> np.ndarray:
    """Labels are born at 512²; nearest neighbour keeps them valid class ids at other sizes."""
    if size == MASK_SIZE:
        return label
    return np.asarray(Image.fromarray(label).resize((size, size), Image.Resampling.NEAREST))
