"""Decode a sample's JPEG straight to the store's size, and bring labels to that size.

libjpeg can decode at 1/2, 1/4 or 1/8 scale by dropping DCT coefficients (Pillow's ``draft``);
for 1024² → 512² that is 3× faster than a full decode and 44–52 dB from a full decode plus
Lanczos. Any remaining factor is finished with Lanczos.

simplejpeg drives libjpeg-turbo directly and gives the same pixels as Pillow's ``draft`` about
a third faster (no file-object layer). It decodes strictly: every libjpeg warning (damaged or
missing data, a bad scan header, ...) is an error naming the file, where Pillow would ignore
it and return grey or garbage. Before any decode the frame header is read here
(:func:`jpeg_frame`): only 8-bit baseline, extended and progressive Huffman JPEGs go on,
since libjpeg-turbo's scaled decode of a lossless (SOF3) JPEG crashes the process, and a frame
of more pixels than Pillow's decompression-bomb limit is refused before anything is allocated.
libjpeg-turbo's fast Huffman path, taken whenever the whole file is in memory, decodes an
invalid Huffman code as 0 without a warning; its careful path warns. A restart interval turns the
fast path off, so a sequential JPEG without one is given a DRI segment of 65535 MCUs
(:func:`_with_huffman_codes_checked`): no restart marker is then due inside an image of up to
65535 8×8 blocks (2040², where CelebA-HQ's 1024² has 16384), the pixels are the same, and a bad
code is an error. Progressive scans always take the careful path; a larger sequential JPEG keeps
the fast one (a bad code in it could go unnoticed).
Pillow decodes only 4-channel (CMYK/YCCK) JPEGs, after simplejpeg has decoded them strictly to
check them. Without simplejpeg nothing is decoded: Pillow cannot be told to treat libjpeg's
warnings as errors, so its pixels could be a damaged file's grey or garbage.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from PIL import Image

from celebamask.errors import CelebaMaskError
from celebamask.sources.sniff import what_it_is

try:
    import simplejpeg
except ImportError:  # pragma: no cover - simplejpeg is a dependency, this is a safety net
    simplejpeg = None


def decode_image(data: bytes, path: str, size: int) -> np.ndarray:
    """Return the image as a (size, size, 3) uint8 array; raise naming ``path`` if it is unusable."""
    frame = jpeg_frame(data, path)
    if frame.width != frame.height:
        raise CelebaMaskError(path, f"image is {frame.width}x{frame.height}, not square")
    if frame.width < size:
        raise CelebaMaskError(path, f"image is {frame.width}x{frame.height}, smaller than the store's {size}x{size}")
    if Image.MAX_IMAGE_PIXELS and frame.width * frame.height > Image.MAX_IMAGE_PIXELS:
        raise CelebaMaskError(path, f"image is {frame.width}x{frame.height}, more than Pillow's decompression-bomb "
                                    f"limit of {Image.MAX_IMAGE_PIXELS} pixels")
    reduced = decode_jpeg_reduced(data, size, path, frame)
    if reduced is None:
        return _decode_image_with_pillow(data, path, size)
    if reduced.shape[:2] == (size, size):
        return reduced
    return np.asarray(Image.fromarray(reduced).resize((size, size), Image.Resampling.LANCZOS))


class JpegFrame(NamedTuple):
    marker: int  # the SOF marker's second byte: 0xC0 baseline, 0xC1 extended, 0xC2 progressive, ...
    precision: int  # bits per sample
    height: int
    width: int
    components: int
    first_scan: int = -1  # byte offset of the first SOS marker; -1 if the markers end before one
    restart_interval: int = 0  # the last DRI's interval before the first scan (0: none)


_SUPPORTED_FRAMES = (0xC0, 0xC1, 0xC2)  # Huffman-coded sequential and progressive DCT
_FRAME_KINDS = {0xC3: "lossless (SOF3)", 0xC5: "hierarchical (SOF5)", 0xC6: "hierarchical progressive (SOF6)",
                0xC7: "hierarchical lossless (SOF7)", 0xC9: "arithmetic-coded (SOF9)",
                0xCA: "arithmetic-coded progressive (SOF10)", 0xCB: "arithmetic-coded lossless (SOF11)",
                0xCD: "hierarchical arithmetic-coded (SOF13)", 0xCE: "hierarchical arithmetic-coded (SOF14)",
                0xCF: "hierarchical arithmetic-coded lossless (SOF15)"}
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length


def jpeg_frame(data: bytes, path: str) -> JpegFrame:
    """The JPEG's frame header (SOFn), read from its markers, if it is one this build decodes:
    raise naming ``path`` for anything else (not a JPEG, lossless, 12-bit, arithmetic-coded, ...).
    Also where the first scan starts and the restart interval it will have."""
    if not data:
        raise CelebaMaskError(path, "empty file (0 bytes)")
    if not data.startswith(b"\xff\xd8"):
        raise CelebaMaskError(path, f"not a JPEG ({what_it_is(data)})")
    frame, restart_interval = None, 0
    for marker, position, body in _marker_segments(data):
        if marker is None or marker in (0xD8, 0xD9) or (marker == 0xDA and frame is None):
            if frame is not None:
                break  # damage after the frame header: libjpeg will name it
            if marker is None:
                raise CelebaMaskError(path, body.decode())
            raise CelebaMaskError(path, f"cannot decode JPEG: marker 0x{marker:02X} before its frame header")
        if marker == 0xDA:
            return frame._replace(first_scan=position, restart_interval=restart_interval)
        if marker == 0xDD and len(body) >= 2:
            restart_interval = int.from_bytes(body[:2], "big")
        if frame is None and 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            frame = _checked_frame(marker, body, path)
    return frame._replace(restart_interval=restart_interval)


def _marker_segments(data: bytes) -> Iterator[tuple[int | None, int, bytes]]:
    """(marker, its byte offset, its body) of each marker segment after SOI, up to the first SOS;
    (None, offset, what is wrong) where the markers stop making sense."""
    position = 2
    while True:
        while position + 1 < len(data) and data[position] == 0xFF and data[position + 1] == 0xFF:
            position += 1  # fill bytes before a marker
        if position + 4 > len(data):
            yield None, position, b"cannot decode JPEG: file ends before its frame header (truncated)"
            return
        if data[position] != 0xFF:
            yield None, position, f"cannot decode JPEG: no marker at byte {position} before its frame header".encode()
            return
        marker = data[position + 1]
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if length < 2:
            yield None, position, f"cannot decode JPEG: marker 0x{marker:02X} before its frame header".encode()
            return
        yield marker, position, data[position + 4 : position + 2 + length]
        if marker == 0xDA:
            return
        position += 2 + length


_NO_RESTART_DUE = 0xFFFF  # the largest restart interval DRI can carry
_RESTART_INTERVAL_SEGMENT = b"\xff\xdd\x00\x04" + _NO_RESTART_DUE.to_bytes(2, "big")


def _with_huffman_codes_checked(data: bytes, frame: JpegFrame) -> bytes:
    """``data`` with a restart interval longer than the image, so that libjpeg-turbo decodes every
    Huffman code on its careful path, which warns of a bad one (the fast path decodes it as 0).

    Only for a sequential JPEG without a restart interval, whose every scan has fewer MCUs than
    the interval (at most one per 8×8 block), so that no restart marker is ever expected: the
    DC predictions are never reset and the pixels are exactly those of ``data``.
    """
    if frame.marker == 0xC2 or frame.restart_interval or frame.first_scan < 0:
        return data
    if -(-frame.width // 8) * -(-frame.height // 8) > _NO_RESTART_DUE:
        return data
    return data[: frame.first_scan] + _RESTART_INTERVAL_SEGMENT + data[frame.first_scan :]


def _checked_frame(marker: int, body: bytes, path: str) -> JpegFrame:
    if len(body) < 6:
        raise CelebaMaskError(path, "cannot decode JPEG: its frame header is cut short")
    frame = JpegFrame(marker, body[0], int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5])
    if marker not in _SUPPORTED_FRAMES:
        raise CelebaMaskError(path, f"{_FRAME_KINDS.get(marker, f'SOF 0x{marker:02X}')} JPEG is not supported")
    if frame.precision != 8:
        raise CelebaMaskError(path, f"{frame.precision}-bit JPEG is not supported (only 8-bit samples)")
    if frame.components not in (1, 3, 4) or not frame.width or not frame.height:
        raise CelebaMaskError(path, f"cannot decode JPEG: frame header says {frame.width}x{frame.height} with "
                                    f"{frame.components} components")
    return frame


def decode_jpeg_reduced(data: bytes, size: int, path: str = "JPEG data", frame: JpegFrame | None = None) -> np.ndarray | None:
    """The square JPEG decoded by libjpeg-turbo at the smallest scale n/8 still ≥ ``size`` (for
    1024 → 512 what Pillow's ``draft`` gives); None if the JPEG has 4 components (Pillow converts
    those; they are decoded here only to check them). Without simplejpeg, raise naming ``path``.

    Any libjpeg warning raises naming ``path``: libjpeg fills missing or damaged data with grey,
    or decodes a damaged scan header into garbage, and only warns.
    """
    frame = frame or jpeg_frame(data, path)
    if simplejpeg is None:
        raise CelebaMaskError(path, "cannot decode JPEG strictly: the simplejpeg package is missing "
                                    "(pip install simplejpeg; Pillow would ignore libjpeg's warnings of damage)")
    colorspace = "CMYK" if frame.components == 4 else "RGB"
    try:
        pixels = simplejpeg.decode_jpeg(_with_huffman_codes_checked(data, frame), colorspace=colorspace, min_height=size, min_width=size, strict=True)
    except Exception as exc:  # noqa: BLE001 - simplejpeg raises ValueError for libjpeg's errors and warnings alike
        what = "truncated" if "Premature end" in str(exc) else "damaged or unsupported"
        raise CelebaMaskError(path, f"cannot decode JPEG: {what} ({exc})") from exc
    return None if frame.components == 4 else pixels


def _decode_image_with_pillow(data: bytes, path: str, size: int) -> np.ndarray:
    """Pillow's ``draft`` decode of a 4-component JPEG (its CMYK to RGB conversion) that simplejpeg
    has already decoded strictly."""
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            image.draft("RGB", (size, size))
            rgb = image.convert("RGB") if image.mode != "RGB" else image
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
            return np.asarray(rgb)
    except Exception as exc:  # noqa: BLE001 - whatever Pillow raises, it is this file's problem
        raise CelebaMaskError(path, f"cannot decode JPEG: {exc}") from exc
