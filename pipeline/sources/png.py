"""A PNG's structure checked as a validating decoder (libpng, libspng) checks it, before any pixel
is used: every chunk's CRC, the chunk order, the header's fields, and a zlib stream that is intact
and holds exactly the image's rows. Shared by the mask decoder (build/merge.py) and the
Supervisely bitmaps (sources/supervisely.py), so it lives with the sources."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from celebamask.errors import CelebaMaskError
from celebamask.sources.sniff import what_it_is

try:  # the fast path; without it every mask goes through Pillow
    import deflate
except ImportError:  # pragma: no cover - deflate is a dependency, this is a safety net
    deflate = None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SAMPLES_PER_PIXEL = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel (L, RGB, P, LA, RGBA)


@dataclass(frozen=True)
class PngFile:
    """A PNG whose chunks have been checked (:func:`read_png`): its header, palette and image data."""

    width: int
    height: int
    depth: int
    colour: int
    interlace: int
    palette: bytes | None  # the PLTE chunk's body (red, green, blue per entry)
    compressed: bytes  # the IDAT chunks' bodies, joined: one zlib stream
    animation: tuple[tuple[int, int], ...] = ()  # (start, end) of each APNG chunk (acTL, fcTL, fdAT)

    @property
    def pixel_bytes(self) -> int:
        """Bytes per pixel as PNG's filters count them (at least 1)."""
        return max(1, self.depth * _SAMPLES_PER_PIXEL[self.colour] // 8)

    def row_bytes(self, width: int) -> int:
        """Bytes of one filtered row ``width`` pixels wide, its filter byte included."""
        return 1 + (width * self.depth * _SAMPLES_PER_PIXEL[self.colour] + 7) // 8

    def passes(self) -> list[tuple[int, int, int, int, int, int]]:
        """(x0, y0, dx, dy, width, height) of each non-empty pass: one, or Adam7's seven."""
        grid = ADAM7 if self.interlace else ((0, 0, 1, 1),)
        sizes = [(x0, y0, dx, dy, -(-(self.width - x0) // dx), -(-(self.height - y0) // dy)) for x0, y0, dx, dy in grid]
        return [size for size in sizes if size[4] > 0 and size[5] > 0]

    def raw_size(self) -> int:
        """Bytes the image data inflates to: every pass's filtered rows."""
        return sum(height * self.row_bytes(width) for _, _, _, _, width, height in self.passes())


def read_png(data: bytes, path: str) -> PngFile:
    """Check a PNG's chunk structure as a validating decoder does, and return its parts.

    Refused, naming ``path``: no PNG signature, a CRC error in any chunk (ancillary ones too,
    which libpng only warns about), a header that is not first, not alone or not valid (bit depth
    for the colour type), a palette PNG without PLTE, PLTE where it cannot be, IDAT chunks that
    are not consecutive, an unknown critical chunk, a file that ends before IEND, and bytes after it.
    """
    if not data:
        raise CelebaMaskError(path, "empty file (0 bytes)")
    if not data.startswith(PNG_SIGNATURE):
        raise CelebaMaskError(path, f"not a PNG ({what_it_is(data)})")
    view = memoryview(data)
    header: tuple[int, ...] | None = None
    palette: bytes | None = None
    parts: list[memoryview] = []
    animation: list[tuple[int, int]] = []
    idat_state = 0  # 0 before the image data, 1 in it, 2 after it
    position = len(PNG_SIGNATURE)
    while True:
        if position + 12 > len(data):
            raise CelebaMaskError(path, "cannot decode PNG: file ends before its IEND chunk (truncated)")
        length, kind = struct.unpack_from(">I4s", data, position)
        name = kind.decode("latin-1")
        if not kind.isalpha():
            raise CelebaMaskError(path, f"cannot decode PNG: invalid chunk type {name!r} at byte {position}")
        end = position + 12 + length
        if length > _MAX_CHUNK or end > len(data):
            raise CelebaMaskError(path, f"cannot decode PNG: file ends inside its {name} chunk")
        body = view[position + 8 : end - 4]
        if zlib.crc32(view[position + 4 : end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            raise CelebaMaskError(path, f"cannot decode PNG: {name} chunk fails its CRC check")
        if (header is None) == (kind != b"IHDR"):
            problem = "a second IHDR chunk" if header is not None else f"first chunk is {name}, not IHDR"
            raise CelebaMaskError(path, f"cannot decode PNG: {problem}")
        if kind == b"IDAT":
            if idat_state == 2:
                raise CelebaMaskError(path, "cannot decode PNG: its IDAT chunks are not consecutive")
            idat_state = 1
            parts.append(body)
        elif idat_state == 1:
            idat_state = 2
        if kind == b"IHDR":
            header = _check_png_header(bytes(body), path)
        elif kind == b"PLTE":
            palette = _check_palette(bytes(body), header[3], palette is not None or idat_state > 0, path)  # type: ignore[index]
        elif kind == b"IEND":
            break
        elif kind in _ANIMATION_CHUNKS:
            animation.append((position, end))
        elif kind[0] & 0x20 == 0 and kind != b"IDAT":  # lower-case first letter: ancillary, safe to ignore
            raise CelebaMaskError(path, f"cannot decode PNG: unknown critical chunk {name}")
        position = end
    if length:
        raise CelebaMaskError(path, "cannot decode PNG: its IEND chunk is not empty")
    if end != len(data):
        raise CelebaMaskError(path, f"cannot decode PNG: {len(data) - end} bytes after its IEND chunk")
    width, height, depth, colour, _, _, interlace = header  # type: ignore[misc]
    if colour == _PALETTE and palette is None:
        raise CelebaMaskError(path, "cannot decode PNG: palette PNG without a PLTE chunk")
    if not parts:
        raise CelebaMaskError(path, "cannot decode PNG: no image data (IDAT)")
    return PngFile(width, height, depth, colour, interlace, palette, b"".join(parts), tuple(animation))


def without_animation(data: bytes, png: PngFile) -> bytes:
    """``data`` without its APNG chunks, for Pillow: it would decode the image data into the first
    frame's (fcTL) rectangle, where libpng, which knows no APNG, ignores them as ancillary."""
    if not png.animation:
        return data
    pieces, position = [], 0
    for start, end in png.animation:
        pieces.append(data[position:start])
        position = end
    pieces.append(data[position:])
    return b"".join(pieces)


_PALETTE = 3  # PNG colour type of palette images
_ANIMATION_CHUNKS = (b"acTL", b"fcTL", b"fdAT")
_MAX_CHUNK = 2**31 - 1  # PNG's limit on a chunk's length
_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # colour type -> allowed
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))  # x0, y0, dx, dy


def _check_png_header(body: bytes, path: str) -> tuple[int, ...]:
    """IHDR's fields, if they describe an image PNG allows."""
    if len(body) != 13:
        raise CelebaMaskError(path, f"cannot decode PNG: IHDR chunk is {len(body)} bytes, not 13")
    width, height, depth, colour, compression, filter_method, interlace = fields = struct.unpack(">IIBBBBB", body)
    if colour not in _BIT_DEPTHS:
        raise CelebaMaskError(path, f"cannot decode PNG: unknown colour type {colour}")
    if depth not in _BIT_DEPTHS[colour]:
        raise CelebaMaskError(path, f"cannot decode PNG: bit depth {depth} is not allowed for colour type {colour}")
    if not (0 < width <= _MAX_CHUNK and 0 < height <= _MAX_CHUNK):
        raise CelebaMaskError(path, f"cannot decode PNG: invalid size {width}x{height}")
    if compression or filter_method or interlace > 1:
        raise CelebaMaskError(path, "cannot decode PNG: unknown compression, filter or interlace method")
    return fields


def _check_palette(body: bytes, colour: int, misplaced: bool, path: str) -> bytes:
    if misplaced or colour in (0, 4):
        raise CelebaMaskError(path, "cannot decode PNG: a PLTE chunk where none may be")
    if not body or len(body) % 3 or len(body) > 3 * 256:
        raise CelebaMaskError(path, f"cannot decode PNG: PLTE chunk of {len(body)} bytes is not 1 to 256 entries")
    return body


def inflate_png(png: PngFile, path: str) -> bytes:
    """The PNG's filtered rows, from a zlib stream that must be intact (adler32), hold exactly those
    rows (libpng warns of more, and that counts as damage here) and end where the image data ends.

    libdeflate inflates (~10× faster than zlib on masks); it cannot tell "more data than the rows"
    from damage, nor see bytes after the stream except through the checksum, so anything it does
    not accept whole is inflated again by zlib, which names what is wrong.
    """
    expected = png.raw_size()
    compressed = png.compressed
    if deflate is not None and len(compressed) > 6:
        try:
            raw = deflate.zlib_decompress(compressed, expected)
        except deflate.DeflateError:
            raw = b""
        # the stream's adler32 is its last 4 bytes only if nothing follows the stream
        if len(raw) == expected and int.from_bytes(compressed[-4:], "big") == deflate.adler32(raw):
            return raw
    return _inflate_with_zlib(compressed, expected, path)


def _inflate_with_zlib(compressed: bytes, expected: int, path: str) -> bytes:
    stream = zlib.decompressobj()
    try:
        raw = stream.decompress(compressed, expected + 1)  # never more than one byte too many
        more = b"" if stream.eof or len(raw) > expected else stream.decompress(stream.unconsumed_tail, 1)
    except zlib.error as exc:
        raise CelebaMaskError(path, f"cannot decode PNG: damaged image data (zlib: {exc})") from exc
    if len(raw) > expected or more:
        raise CelebaMaskError(path, "cannot decode PNG: image data holds more than its rows")
    if not stream.eof:
        raise CelebaMaskError(path, "cannot decode PNG: image data ends before its rows do (truncated)")
    if stream.unused_data:
        raise CelebaMaskError(path, f"cannot decode PNG: {len(stream.unused_data)} bytes after the image data's zlib stream")
    if len(raw) < expected:
        raise CelebaMaskError(path, f"cannot decode PNG: image data holds {len(raw)} of its {expected} bytes of rows")
    return raw
