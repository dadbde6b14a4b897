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
libjpeg's own checks miss two kinds of damaged scan data (a bad Huffman code on its fast path,
and a scan whose last block ends a few bytes early), so a sequential JPEG is decoded as rewritten
by :mod:`celebamask.build.jpeg_scans`, which closes both and keeps the pixels exact.
Pillow decodes only 4-channel (CMYK/YCCK) JPEGs, after simplejpeg has decoded them strictly to
check them. Without simplejpeg nothing is decoded: Pillow cannot be told to treat libjpeg's
warnings as errors, so its pixels could be a damaged file's grey or garbage.
"""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np
from PIL import Image

from celebamask.build.jpeg_scans import rewritten_for_checks, with_careful_huffman_decoding
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
    if reduced is None:  # checked strictly above; Pillow's libjpeg kept off its fast Huffman path too
        return _decode_image_with_pillow(with_careful_huffman_decoding(data), path, size)
    if reduced.shape[:2] == (size, size):
        return reduced
    return np.asarray(Image.fromarray(reduced).resize((size, size), Image.Resampling.LANCZOS))


class JpegFrame(NamedTuple):
    marker: int  # the SOF marker's second byte: 0xC0 baseline, 0xC1 extended, 0xC2 progressive, ...
    precision: int  # bits per sample
    height: int
    width: int
    components: int


_SUPPORTED_FRAMES = (0xC0, 0xC1, 0xC2)  # Huffman-coded sequential and progressive DCT
_FRAME_KINDS = {0xC3: "lossless (SOF3)", 0xC5: "hierarchical (SOF5)", 0xC6: "hierarchical progressive (SOF6)",
                0xC7: "hierarchical lossless (SOF7)", 0xC9: "arithmetic-coded (SOF9)",
                0xCA: "arithmetic-coded progressive (SOF10)", 0xCB: "arithmetic-coded lossless (SOF11)",
                0xCD: "hierarchical arithmetic-coded (SOF13)", 0xCE: "hierarchical arithmetic-coded (SOF14)",
                0xCF: "hierarchical arithmetic-coded lossless (SOF15)"}
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length


def jpeg_frame(data: bytes, path: str) -> JpegFrame:
    """The JPEG's frame header (SOFn), read from its markers, if it is one this build decodes:
    raise naming ``path`` for anything else (not a JPEG, lossless, 12-bit, arithmetic-coded, ...)."""
    if not data:
        raise CelebaMaskError(path, "empty file (0 bytes)")
    if not data.startswith(b"\xff\xd8"):
        raise CelebaMaskError(path, f"not a JPEG ({what_it_is(data)})")
    position = 2
    while True:
        while position < len(data) and data[position] == 0xFF and position + 1 < len(data) and data[position + 1] == 0xFF:
            position += 1  # fill bytes before a marker
        if position + 4 > len(data):
            raise CelebaMaskError(path, "cannot decode JPEG: file ends before its frame header (truncated)")
        if data[position] != 0xFF:
            raise CelebaMaskError(path, f"cannot decode JPEG: no marker at byte {position} before its frame header")
        marker = data[position + 1]
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in (0xD8, 0xD9, 0xDA) or length < 2:
            raise CelebaMaskError(path, f"cannot decode JPEG: marker 0x{marker:02X} before its frame header")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return _checked_frame(marker, data[position + 4 : position + 2 + length], path)
        position += 2 + length


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
    eighths = next((n for n in range(1, 9) if -(-frame.width * n // 8) >= size and -(-frame.height * n // 8) >= size), 8)
    rewritten = rewritten_for_checks(data, eighths)
    try:
        if rewritten.check is not None:  # the scan-end check, decoded at 1/8 scale, its pixels unused
            simplejpeg.decode_jpeg(rewritten.check, colorspace=colorspace, min_height=1, min_width=1, strict=True)
        pixels = simplejpeg.decode_jpeg(rewritten.data, colorspace=colorspace, min_height=size, min_width=size, strict=True)
    except Exception as exc:  # noqa: BLE001 - simplejpeg raises ValueError for libjpeg's errors and warnings alike
        raise CelebaMaskError(path, f"cannot decode JPEG: {_what_is_wrong(str(exc))} ({exc})") from exc
    if rewritten.extra_rows:
        if pixels.shape[1] != -(-frame.width * eighths // 8):  # not the scale the rewrite was checked for
            raise CelebaMaskError(path, f"cannot decode JPEG: decoded at an unexpected scale ({pixels.shape[1]} "
                                        f"columns of {frame.width}, expected {eighths}/8)")
        pixels = pixels[: pixels.shape[1]]  # the added MCU row off again (the image is square)
    return None if frame.components == 4 else pixels


def _what_is_wrong(libjpeg_says: str) -> str:
    if "Premature end" in libjpeg_says:
        return "truncated"
    if "extraneous bytes before marker" in libjpeg_says:
        return "damaged scan data (a scan's data does not end where its last block does)"
    return "damaged or unsupported"


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
