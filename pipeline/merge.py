"""Merge the per-class binary masks of one sample into a single uint8 label map.

A pixel is "on" where the mask's first channel is non-zero, whatever the PNG mode (the
official merge script's rule); classes are painted in the config's paint order, so a later
class overwrites an earlier one where masks overlap.

Decoding ~13 mask PNGs is most of a sample's build time, and most of that is zlib's inflate
(slow on the run-length streams 0/255 masks are stored as). Plain 8-bit PNGs are therefore
inflated with libdeflate (the ``deflate`` package, ~10× faster here) and un-filtered with
numpy; anything else (palette, 1-bit, interlaced, Avg-filtered rows) goes through Pillow.
Both paths give the same pixels (tests/test_decoders.py).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.config import MASK_SIZE, ClassConfig
from pipeline.errors import CelebaMaskError

try:  # the fast path; without it every mask goes through Pillow
    import deflate
except ImportError:  # pragma: no cover - deflate is a dependency, this is a safety net
    deflate = None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SAMPLES_PER_PIXEL = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel (L, RGB, LA, RGBA)
_SUB, _UP, _AVG, _PAETH = 1, 2, 3, 4  # PNG row filters (0 is None)


def decode_mask(data: bytes, path: str) -> np.ndarray:
    """Return the mask as a bool array; raise naming ``path`` if it is not a 512² PNG."""
    first_channel = _decode_plain_png(data, path, first_channel_only=True)
    if first_channel is None:
        return _decode_mask_with_pillow(data, path)
    return first_channel[:, :, 0] != 0


def decode_png_pixels(data: bytes, path: str) -> np.ndarray:
    """Every sample of a mask PNG, (512, 512, channels) uint8, by the fastest path that applies.

    The build only un-filters the first channel (all it needs; inflating is the same work);
    this full decode is what the benchmark's decode floor measures.
    """
    pixels = _decode_plain_png(data, path, first_channel_only=False)
    if pixels is not None:
        return pixels
    with _open_png(data, path) as image:
        array = np.asarray(image)
    return array if array.ndim == 3 else array[:, :, None]


def _decode_plain_png(data: bytes, path: str, first_channel_only: bool) -> np.ndarray | None:
    """Inflate and un-filter an 8-bit, non-interlaced L/LA/RGB/RGBA PNG to (height, width, channels);
    None if it is anything else, or uses the Avg filter."""
    if not data:
        raise CelebaMaskError(path, "empty file (0 bytes)")
    if deflate is None or not data.startswith(PNG_SIGNATURE):
        return None
    header, compressed = _png_header_and_data(data, path)
    width, height, depth, colour, compression, filter_method, interlace = header
    if (width, height) != (MASK_SIZE, MASK_SIZE):
        raise CelebaMaskError(path, f"mask is {width}x{height}, expected {MASK_SIZE}x{MASK_SIZE}")
    channels = _SAMPLES_PER_PIXEL.get(colour)
    if channels is None or depth != 8 or compression or filter_method or interlace:
        return None
    row_bytes = 1 + width * channels
    try:
        raw = deflate.zlib_decompress(compressed, height * row_bytes)
    except deflate.DeflateError as exc:
        raise CelebaMaskError(path, f"cannot decode PNG: corrupt image data ({exc})") from exc
    if len(raw) != height * row_bytes:
        raise CelebaMaskError(path, f"cannot decode PNG: image data ends after {len(raw)} of {height * row_bytes} bytes")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, row_bytes)
    filters = rows[:, 0]
    filtered = rows[:, 1:].reshape(height, width, channels)
    if first_channel_only:
        filtered = filtered[:, :, :1]  # every filter predicts a byte from bytes of its own channel
    if not filters.any():
        return filtered
    if filters.max() > _PAETH:
        raise CelebaMaskError(path, f"cannot decode PNG: unknown row filter {int(filters.max())}")
    return _unfilter(filters, filtered)


def _unfilter(filters: np.ndarray, filtered: np.ndarray) -> np.ndarray | None:
    """Undo PNG's row filters (arithmetic modulo 256) on (height, width, channels) bytes.

    None and Sub rows stand alone and are undone all at once; Up and Paeth rows need the row
    above, so runs of them are undone in order. Avg rows (which no mask writer seen so far
    uses) give None: the caller falls back to Pillow.
    """
    if (filters == _AVG).any():
        return None
    pixels = filtered.copy()
    sub = filters == _SUB
    if sub.any():  # a running sum along x, per channel
        pixels[sub] = np.cumsum(filtered[sub], axis=1, dtype=np.uint8)
    dependent = np.flatnonzero(filters >= _UP)
    if not len(dependent):
        return pixels
    # runs of consecutive rows with the same (Up or Paeth) filter
    breaks = np.flatnonzero((np.diff(dependent) != 1) | (np.diff(filters[dependent]) != 0)) + 1
    for run in np.split(dependent, breaks):
        first, last = int(run[0]), int(run[-1])
        if filters[first] == _UP:  # each row adds the one above: a running sum down the run
            if first:
                pixels[first] += pixels[first - 1]
            np.cumsum(pixels[first : last + 1], axis=0, dtype=np.uint8, out=pixels[first : last + 1])
            continue
        for y in range(first, last + 1):
            above = pixels[y - 1] if y else np.zeros_like(pixels[0])
            for channel in range(pixels.shape[2]):
                if not _unpaeth_row(pixels[y, :, channel], above[:, channel]):
                    return None
    return pixels


_MAX_PAETH_SWITCHES = 128  # beyond this a row is not mask-like; Pillow is faster


def _unpaeth_row(row: np.ndarray, above: np.ndarray) -> bool:
    """Undo the Paeth filter of one channel's bytes in place.

    Where the byte above equals the one above-left, Paeth predicts from the left, so the row is
    a running sum; only at the few positions where the row above changes is the prediction
    worked out one byte at a time. False if there are too many such positions.
    """
    above_left = np.concatenate([np.zeros(1, dtype=np.uint8), above[:-1]])
    switches = np.flatnonzero(above != above_left)
    if len(switches) > _MAX_PAETH_SWITCHES:
        return False
    left = 0
    position = 0
    for switch in [*switches.tolist(), len(row)]:
        if switch > position:  # predicted from the left: a running sum starting from `left`
            row[position] = (int(row[position]) + left) & 0xFF
            np.cumsum(row[position:switch], dtype=np.uint8, out=row[position:switch])
            left = int(row[switch - 1])
        if switch == len(row):
            break
        up, up_left = int(above[switch]), int(above_left[switch])
        estimate = left + up - up_left
        from_left, from_up, from_up_left = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
        if from_left <= from_up and from_left <= from_up_left:
            predicted = left
        elif from_up <= from_up_left:
            predicted = up
        else:
            predicted = up_left
        left = (int(row[switch]) + predicted) & 0xFF
        row[switch] = left
        position = switch + 1
    return True


def _png_header_and_data(data: bytes, path: str) -> tuple[tuple[int, ...], bytes]:
    """The IHDR fields and the concatenated IDAT payload, with both chunks' CRCs checked and the
    closing IEND chunk present (a file cut between chunks is still truncated)."""
    header: tuple[int, ...] | None = None
    parts: list[bytes] = []
    ended = False
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            raise CelebaMaskError(path, f"cannot decode PNG: file ends inside its {kind.decode('latin-1')} chunk")
        if kind in (b"IHDR", b"IDAT"):
            body = data[position + 8 : end - 4]
            if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack_from(">I", data, end - 4)[0]:
                raise CelebaMaskError(path, f"cannot decode PNG: {kind.decode()} chunk fails its CRC check")
            if kind == b"IHDR" and length == 13:
                header = struct.unpack(">IIBBBBB", body)
            elif kind == b"IDAT":
                parts.append(body)
        elif kind == b"IEND":
            ended = True
            break
        position = end
    if header is None:
        raise CelebaMaskError(path, "cannot decode PNG: no valid IHDR header chunk")
    if not parts:
        raise CelebaMaskError(path, "cannot decode PNG: no image data (IDAT)")
    if not ended:
        raise CelebaMaskError(path, "cannot decode PNG: file ends before its IEND chunk (truncated)")
    return header, b"".join(parts)


def _open_png(data: bytes, path: str) -> Image.Image:
    """Open with Pillow (loaded), checking it is a 512² PNG; raise naming ``path`` otherwise."""
    if not data:
        raise CelebaMaskError(path, "empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        if image.format != "PNG":
            raise CelebaMaskError(path, f"not a PNG (found {image.format or 'unknown format'})")
        if image.size != (MASK_SIZE, MASK_SIZE):
            width, height = image.size
            raise CelebaMaskError(path, f"mask is {width}x{height}, expected {MASK_SIZE}x{MASK_SIZE}")
        image.load()
        return image
    except CelebaMaskError:
        raise
    except UnidentifiedImageError as exc:
        raise CelebaMaskError(path, "not a PNG (not an image format Pillow recognises)") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's ways of saying "corrupt"
        raise CelebaMaskError(path, f"cannot decode PNG: {exc}") from exc


def _decode_mask_with_pillow(data: bytes, path: str) -> np.ndarray:
    with _open_png(data, path) as image:
        try:
            return _first_channel_on(image)
        except (OSError, ValueError) as exc:
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
            np.copyto(label, class_id, where=mask, casting="unsafe")
    return label
