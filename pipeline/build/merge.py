"""Merge the per-class binary masks of one sample into a single uint8 label map.

A pixel is "on" where the mask's first channel is non-zero, whatever the PNG mode (the
official merge script's rule); classes are painted in the config's paint order, so a later
class overwrites an earlier one where masks overlap.

Decoding ~13 mask PNGs is most of a sample's build time, and most of that is zlib's inflate
(slow on the run-length streams 0/255 masks are stored as). Plain 8-bit PNGs are therefore
inflated with libdeflate (the ``deflate`` package, ~10× faster here) and un-filtered with
numpy; anything else (palette, 1-bit, 16-bit, interlaced) goes through Pillow.
Both paths give the same pixels (tests/test_decoders.py).

Un-filtering, not inflating, is the larger part of that decode, and a mask's "on" pixels sit in
a fifth of its rows on average (an eye in 2%). So the build un-filters, thresholds and paints
only the rows that can hold "on" pixels (:class:`MaskRows`), found from the inflated bytes.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from celebamask.config import MASK_SIZE, ClassConfig
from celebamask.errors import CelebaMaskError
from celebamask.store.prediction import running_sum_along, running_sum_down

try:  # the fast path; without it every mask goes through Pillow
    import deflate
except ImportError:  # pragma: no cover - deflate is a dependency, this is a safety net
    deflate = None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SAMPLES_PER_PIXEL = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel (L, RGB, LA, RGBA)
_SUB, _UP, _AVG, _PAETH = 1, 2, 3, 4  # PNG row filters (0 is None)


@dataclass(frozen=True)
class MaskRows:
    """A mask as the band of rows that can hold "on" pixels: ``on`` is rows top .. top+len(on)-1
    (bool, full width); every row outside the band is off."""

    top: int
    on: np.ndarray

    def full(self) -> np.ndarray:
        """The whole (512, 512) bool mask."""
        mask = np.zeros((MASK_SIZE, MASK_SIZE), dtype=bool)
        mask[self.top : self.top + len(self.on)] = self.on
        return mask


def decode_mask(data: bytes, path: str) -> np.ndarray:
    """Return the mask as a (512, 512) bool array; raise naming ``path`` if it is not a 512² PNG."""
    return decode_mask_rows(data, path).full()


def decode_mask_rows(data: bytes, path: str) -> MaskRows:
    """The mask's "on" pixels (first channel non-zero) in the band of rows that holds them; raise
    naming ``path`` if it is not a 512² PNG."""
    inflated = _inflate_plain_png(data, path)
    if inflated is None:
        return MaskRows(0, _decode_mask_with_pillow(data, path))
    filters, filtered = inflated
    top, stop = _rows_with_content(filters, filtered)
    # every filter predicts a byte from bytes of its own channel; the row above the band is all
    # zeros, as PNG's first row assumes
    band = _unfilter(filters[top:stop], filtered[top:stop, :, :1])
    if band is None:
        return MaskRows(0, _decode_mask_with_pillow(data, path))
    return MaskRows(top, band[:, :, 0] != 0)


def decode_png_pixels(data: bytes, path: str) -> np.ndarray:
    """Every sample of a mask PNG, (512, 512, channels) uint8, by the fastest path that applies.

    The build only un-filters the first channel of the rows with content (all it needs; inflating
    is the same work); this full decode is what the benchmark's decode floor measures.
    """
    inflated = _inflate_plain_png(data, path)
    if inflated is not None:
        pixels = _unfilter(*inflated)
        if pixels is not None:
            return pixels
    with _open_png(data, path) as image:
        array = np.asarray(image)
    return array if array.ndim == 3 else array[:, :, None]


def _inflate_plain_png(data: bytes, path: str) -> tuple[np.ndarray, np.ndarray] | None:
    """An 8-bit, non-interlaced L/LA/RGB/RGBA PNG inflated: (row filters, filtered bytes as
    (height, width, channels)); None if it is anything else or its image data does not inflate
    to exactly the rows (Pillow then decodes it, or names what is wrong)."""
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
    except deflate.DeflateError:
        return None  # corrupt, or more data than the rows need (which Pillow accepts): Pillow decides
    if len(raw) != height * row_bytes:
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, row_bytes)
    filters = rows[:, 0]
    if filters.max() > _PAETH:
        raise CelebaMaskError(path, f"cannot decode PNG: unknown row filter {int(filters.max())}")
    return filters, rows[:, 1:].reshape(height, width, channels)


def _rows_with_content(filters: np.ndarray, filtered: np.ndarray) -> tuple[int, int]:
    """Rows top .. stop-1 hold every non-zero decoded byte of a PNG (an empty band if none does).

    Above the first row whose filtered bytes are not all zero, every row decodes to zeros: each
    filter adds a prediction from decoded bytes to its left and above, all zero there. Below the
    last such row, a row repeats the decoded rows above it while its filter looks up (Up, Avg,
    Paeth); from the first None or Sub row on, all rows decode to zeros again.
    """
    with_bytes = np.flatnonzero(filtered.reshape(len(filtered), -1).max(axis=1))
    if not len(with_bytes):
        return 0, 0
    top, last = int(with_bytes[0]), int(with_bytes[-1])
    below = filters[last + 1 :] < _UP
    stop = last + 1 + (int(np.argmax(below)) if below.any() else len(below))
    return top, stop


def _unfilter(filters: np.ndarray, filtered: np.ndarray) -> np.ndarray | None:
    """Undo PNG's row filters (arithmetic modulo 256) on (height, width, channels) bytes.

    None and Sub rows stand alone and are undone all at once; a run of Up rows is a running sum
    down the run; Avg and Paeth rows depend on their left neighbour nonlinearly and are undone
    one row at a time, in order. Rows that are all None come back as they are (a read-only view);
    None when so many Avg rows need that that Pillow is faster (the caller then falls back to it).
    """
    if not filters.any():
        return filtered
    if int(np.count_nonzero(filters == _AVG)) * filtered.shape[2] > _MAX_AVG_ROWS:
        return None
    pixels = np.array(filtered, order="C")  # contiguous, and ours to change
    sub = filters == _SUB
    if sub.all():
        _running_sum_along_x(pixels)
    elif sub.any():
        rows = pixels[sub]
        _running_sum_along_x(rows)
        pixels[sub] = rows
    # The rows that need the decoded row above, in order: runs of Up rows, and single Avg/Paeth rows.
    dependent = np.flatnonzero(filters >= _UP)
    if not len(dependent):
        return pixels
    kinds = filters[dependent]
    # a group ends where the next dependent row is not right below it, or either is not Up
    ends = (dependent[1:] != dependent[:-1] + 1) | (kinds[1:] != _UP) | (kinds[:-1] != _UP)
    firsts = [int(dependent[0]), *(dependent[1:][ends]).tolist()]
    lasts = [*(dependent[:-1][ends]).tolist(), int(dependent[-1])]
    for first, last in zip(firsts, lasts):
        kind = filters[first]
        if kind == _UP:
            if first:
                pixels[first] += pixels[first - 1]
            running_sum_down(pixels[first : last + 1], axis=0)
            continue
        above = pixels[first - 1] if first else np.zeros_like(pixels[0])
        undo_row = _unpaeth_row if kind == _PAETH else _unavg_row
        for channel in range(pixels.shape[2]):
            undo_row(pixels[first, :, channel], above[:, channel])
    return pixels


def _running_sum_along_x(rows: np.ndarray) -> None:
    """In place, each row's running sum modulo 256 along x, per channel (rows: (n, width, channels))."""
    if rows.shape[2] == 1:
        flat = rows.reshape(rows.shape[0], -1)
        running_sum_along(flat)
        if not np.shares_memory(flat, rows):  # reshape had to copy
            rows[...] = flat.reshape(rows.shape)
    else:
        running_sum_down(rows, axis=1)  # channels interleave: sum whole pixels


_MAX_AVG_ROWS = 48  # Avg row-channels undone byte by byte before Pillow is the faster way


def _unpaeth_row(row: np.ndarray, above: np.ndarray) -> None:
    """Undo the Paeth filter of one channel's bytes in place.

    Where the byte above equals the one above-left, Paeth predicts from the left, so the row is a
    running sum. Only where the row above changes (few places in a mask) can the prediction be
    another byte: there the difference from the left prediction is worked out in order and
    carried, as an offset, to the rest of the row.
    """
    above_left = np.empty_like(above)
    above_left[0] = 0
    above_left[1:] = above[:-1]
    switches = np.flatnonzero(above != above_left).tolist()
    sums = np.cumsum(row, dtype=np.int32)  # the row decoded as if every prediction were "left"
    if not switches:
        row[...] = sums
        return
    sums_list = sums.tolist()
    offsets = [0] * (len(switches) + 1)
    offset = 0
    for k, position in enumerate(switches):
        left = (sums_list[position - 1] + offset) & 0xFF if position else 0
        up, up_left = int(above[position]), int(above_left[position])
        estimate = left + up - up_left
        from_left, from_up, from_up_left = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
        if from_left <= from_up and from_left <= from_up_left:
            predicted = left
        elif from_up <= from_up_left:
            predicted = up
        else:
            predicted = up_left
        offset += predicted - left
        offsets[k + 1] = offset
    bounds = [0, *switches, len(row)]
    lengths = [end - begin for begin, end in zip(bounds, bounds[1:])]
    row[...] = sums + np.repeat(np.asarray(offsets, dtype=np.int32), lengths)


def _unavg_row(row: np.ndarray, above: np.ndarray) -> None:
    """Undo the Avg filter of one channel's bytes in place: each byte adds the floor of the mean of
    its decoded left neighbour and the byte above (a nonlinear recurrence: byte by byte)."""
    values, above_values = row.tolist(), above.tolist()
    left = 0
    for position, (value, up) in enumerate(zip(values, above_values)):
        left = (value + ((left + up) >> 1)) & 0xFF
        values[position] = left
    row[:] = values


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


def paint_label(masks: Mapping[str, np.ndarray | MaskRows], config: ClassConfig) -> np.ndarray:
    """Paint ``masks`` (class name -> bool array or its band of rows) onto the background in paint order."""
    label = np.full((MASK_SIZE, MASK_SIZE), config.background, dtype=np.uint8)
    for name, class_id in zip(config.paint_order, config.paint_ids):
        mask = masks.get(name)
        if mask is None:
            continue
        rows = mask if isinstance(mask, MaskRows) else MaskRows(0, mask)
        np.copyto(label[rows.top : rows.top + len(rows.on)], class_id, where=rows.on, casting="unsafe")
    return label
