"""Merge the per-class binary masks of one sample into a single uint8 label map.

A pixel is "on" where the mask's first channel is non-zero, whatever the PNG mode (the
official merge script's rule); classes are painted in the config's paint order, so a later
class overwrites an earlier one where masks overlap.

Every mask is checked as a validating decoder (libpng, libspng) checks it before any pixel is
used (:func:`read_png`, :func:`inflate_png`): every chunk's CRC, the chunk order, the header's
fields, and a zlib stream that is intact and holds exactly the image's rows. What libpng only
warns about counts as damage too. So a damaged mask is an error naming it, never a map made of
whatever rows a lenient decoder got before it stopped reading (Pillow does that).

Decoding ~13 mask PNGs is most of a sample's build time, and most of that is zlib's inflate
(slow on the run-length streams 0/255 masks are stored as). Masks are therefore inflated with
libdeflate (the ``deflate`` package, ~10× faster here) and 8- and 16-bit ones un-filtered with
numpy; palette, 1/2/4-bit and interlaced 8-bit masks are decoded by Pillow, whose pixels are
exact for those (Pillow keeps only the high byte of 16-bit LA/RGB/RGBA samples: numpy decodes
those). The paths give the same pixels (tests/test_decoders.py, tests/test_fuzz.py).

Un-filtering, not inflating, is the larger part of that decode, and a mask's "on" pixels sit in
a fifth of its rows on average (an eye in 2%). So the build un-filters, thresholds and paints
only the rows that can hold "on" pixels (:class:`MaskRows`), found from the inflated bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

from celebamask.config import MASK_SIZE, ClassConfig
from celebamask.errors import CelebaMaskError
from celebamask.sources.png import _PALETTE, ADAM7, PngFile, inflate_png, read_png, without_animation  # noqa: F401 - re-exported
from celebamask.store.prediction import running_sum_along, running_sum_down

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
    naming ``path`` if it is not a valid 512² PNG (see :func:`read_png`)."""
    png = _read_mask_png(data, path)
    raw = inflate_png(png, path)
    if png.colour == _PALETTE or png.depth < 8 or (png.interlace and png.depth == 8):
        return MaskRows(0, _decode_mask_with_pillow(data, path, png))
    if png.interlace:  # 16-bit: Pillow would keep only the high byte of LA/RGB/RGBA samples
        return MaskRows(0, _sample_on(_unfilter_png(png, raw, path), png.depth // 8))
    filters, filtered = _plain_rows(png, raw, path)
    top, stop = _rows_with_content(filters, filtered)
    # every filter predicts a byte from bytes of its own channel; the row above the band is all
    # zeros, as PNG's first row assumes. A 16-bit first sample is two bytes, high byte first.
    sample_bytes = png.depth // 8
    band = _unfilter(filters[top:stop], filtered[top:stop, :, :sample_bytes], _MAX_AVG_ROWS if sample_bytes == 1 else None)
    if band is None:
        return MaskRows(0, _decode_mask_with_pillow(data, path, png))
    return MaskRows(top, _sample_on(band, sample_bytes))


def decode_png_pixels(data: bytes, path: str) -> np.ndarray:
    """Every byte of a mask PNG's pixels, (512, 512, bytes per pixel) uint8 (8-bit samples; Pillow's
    8-bit view otherwise), by the fastest path that applies.

    The build only un-filters the first channel of the rows with content (all it needs; inflating
    is the same work); this full decode is what the benchmark's decode floor measures.
    """
    png = _read_mask_png(data, path)
    raw = inflate_png(png, path)
    if png.depth == 8 and png.colour != _PALETTE and not png.interlace:
        pixels = _unfilter(*_plain_rows(png, raw, path), _MAX_AVG_ROWS)
        if pixels is not None:
            return pixels
    with _open_png(data, path, png) as image:
        array = np.asarray(image)
    return array if array.ndim == 3 else array[:, :, None]


def _read_mask_png(data: bytes, path: str) -> PngFile:
    png = read_png(data, path)
    if (png.width, png.height) != (MASK_SIZE, MASK_SIZE):
        raise CelebaMaskError(path, f"mask is {png.width}x{png.height}, expected {MASK_SIZE}x{MASK_SIZE}")
    return png


def _plain_rows(png: PngFile, raw: bytes, path: str) -> tuple[np.ndarray, np.ndarray]:
    """A non-interlaced PNG of 8- or 16-bit samples as (row filters, filtered bytes as (height,
    width, bytes per pixel))."""
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(png.height, png.row_bytes(png.width))
    filters = _checked_filters(rows[:, 0], path)
    return filters, rows[:, 1:].reshape(png.height, png.width, png.pixel_bytes)


def _checked_filters(filters: np.ndarray, path: str) -> np.ndarray:
    if len(filters) and filters.max() > _PAETH:
        raise CelebaMaskError(path, f"cannot decode PNG: unknown row filter {int(filters.max())}")
    return filters


def _unfilter_png(png: PngFile, raw: bytes, path: str) -> np.ndarray:
    """Every byte of a PNG of 8- or 16-bit samples, interlaced or not: (height, width, bytes per pixel)."""
    pixels = np.zeros((png.height, png.width, png.pixel_bytes), dtype=np.uint8)
    offset = 0
    for x0, y0, dx, dy, width, height in png.passes():
        row_bytes = png.row_bytes(width)
        rows = np.frombuffer(raw, dtype=np.uint8, count=height * row_bytes, offset=offset).reshape(height, row_bytes)
        offset += height * row_bytes
        filters = _checked_filters(rows[:, 0], path)
        pixels[y0::dy, x0::dx] = _unfilter(filters, rows[:, 1:].reshape(height, width, png.pixel_bytes), None)
    return pixels


def _sample_on(pixels: np.ndarray, sample_bytes: int) -> np.ndarray:
    """Where the first sample (its first ``sample_bytes`` bytes) is non-zero."""
    if sample_bytes == 1:
        return pixels[:, :, 0] != 0
    return pixels[:, :, :sample_bytes].any(axis=2)


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


def _unfilter(filters: np.ndarray, filtered: np.ndarray, max_avg_rows: int | None = None) -> np.ndarray | None:
    """Undo PNG's row filters (arithmetic modulo 256) on (height, width, channels) bytes.

    None and Sub rows stand alone and are undone all at once; a run of Up rows is a running sum
    down the run; Avg and Paeth rows depend on their left neighbour nonlinearly and are undone
    one row at a time, in order. Rows that are all None come back as they are (a read-only view);
    None when more than ``max_avg_rows`` Avg row-channels need that (Pillow is then faster, and
    the caller falls back to it).
    """
    if not filters.any():
        return filtered
    if max_avg_rows is not None and int(np.count_nonzero(filters == _AVG)) * filtered.shape[2] > max_avg_rows:
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


def _open_png(data: bytes, path: str, png: PngFile) -> Image.Image:
    """Open and load with Pillow a PNG that :func:`read_png` has checked (as ``png``), without its
    APNG chunks (libpng's pixels); raise naming ``path``."""
    try:
        image = Image.open(io.BytesIO(without_animation(data, png)), formats=["PNG"])
        image.load()
        return image
    except Exception as exc:  # noqa: BLE001 - whatever Pillow raises, it is this file's problem
        raise CelebaMaskError(path, f"cannot decode PNG: {exc}") from exc


def _decode_mask_with_pillow(data: bytes, path: str, png: PngFile) -> np.ndarray:
    """Pillow's pixels where they are exact (8-bit and smaller samples, palette indices): palette,
    1/2/4-bit and interlaced 8-bit masks, and many Avg rows; the image data was checked whole first."""
    with _open_png(data, path, png) as image:
        try:
            if image.mode == "P":
                return _palette_on(np.asarray(image), png.palette or b"", path)
            if image.mode not in ("1", "L", "LA", "RGB", "RGBA"):
                raise CelebaMaskError(path, f"cannot decode PNG: unexpected Pillow mode {image.mode}")
            return np.asarray(image.getchannel(0) if len(image.getbands()) > 1 else image) != 0
        except CelebaMaskError:
            raise
        except Exception as exc:  # noqa: BLE001 - as in _open_png
            raise CelebaMaskError(path, f"cannot decode PNG: {exc}") from exc


def _palette_on(indices: np.ndarray, palette: bytes, path: str) -> np.ndarray:
    """The first channel of a palette image is the palette's red entry of each index; an index
    past the palette's end is damage (libpng warns of it)."""
    red = np.frombuffer(palette, dtype=np.uint8)[0::3] != 0
    largest = int(indices.max())
    if largest >= len(red):
        raise CelebaMaskError(path, f"cannot decode PNG: palette index {largest} beyond its {len(red)}-entry PLTE")
    return red[indices]


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
