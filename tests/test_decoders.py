"""Every decoder path gives the same pixels: the libdeflate/numpy PNG path against Pillow, and
simplejpeg's DCT-scaled JPEG decode against Pillow's ``draft``.

PNGs are written here by a small independent encoder that applies each of PNG's five row
filters, so every un-filtering branch is exercised whatever encoder made the dataset's masks.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import celebamask.build.merge as merge
import celebamask.sources.png as png
from celebamask.build.merge import decode_mask, decode_mask_rows, decode_png_pixels
from celebamask.build.resize import decode_image, decode_jpeg_reduced
from celebamask.errors import CelebaMaskError

COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (L, LA, RGB, RGBA)


def _filter_row(kind: int, row: np.ndarray, above: np.ndarray, bpp: int) -> bytes:
    """PNG filter ``kind`` applied to one row of bytes, from the specification (filters read the
    unfiltered neighbours, so encoding vectorises)."""
    x = row.astype(np.int16)
    up = above.astype(np.int16)
    left = np.concatenate([np.zeros(bpp, np.int16), x[:-bpp]])
    up_left = np.concatenate([np.zeros(bpp, np.int16), up[:-bpp]])
    if kind == 0:
        predicted = np.zeros_like(x)
    elif kind == 1:
        predicted = left
    elif kind == 2:
        predicted = up
    elif kind == 3:
        predicted = (left + up) // 2
    else:
        estimate = left + up - up_left
        from_left, from_up, from_up_left = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
        predicted = np.where((from_left <= from_up) & (from_left <= from_up_left), left,
                             np.where(from_up <= from_up_left, up, up_left))
    return bytes([kind]) + ((x - predicted) & 0xFF).astype(np.uint8).tobytes()


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))  # x0, y0, dx, dy


def encode_png(pixels: np.ndarray, filters: list[int], interlaced: bool = False, extra: bytes = b"") -> bytes:
    """An 8- or 16-bit (by dtype) PNG of ``pixels`` (h, w, c) whose row y (of each Adam7 pass when
    ``interlaced``) uses filter ``filters[y % len(filters)]``; ``extra`` bytes follow the rows in
    the compressed image data."""
    height, width, channels = pixels.shape
    itemsize = pixels.dtype.itemsize
    raw = b""
    for x0, y0, dx, dy in ADAM7 if interlaced else ((0, 0, 1, 1),):
        part = pixels[y0::dy, x0::dx]
        if not part.size:
            continue
        flat = part.astype(f">u{itemsize}").view(np.uint8).reshape(part.shape[0], -1)
        above = np.zeros(flat.shape[1], dtype=np.uint8)  # each pass starts afresh
        for y in range(len(flat)):
            raw += _filter_row(filters[y % len(filters)], flat[y], above, channels * itemsize)
            above = flat[y]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8 * itemsize, COLOUR_TYPES[channels], 0, 0, int(interlaced))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw + extra, 6))
            + chunk(b"IEND", b""))


def mask_like(channels: int, seed: int = 0) -> np.ndarray:
    """0/255 blobs, like a region mask, the same in every channel."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:512, :512]
    on = np.zeros((512, 512), dtype=bool)
    for _ in range(4):
        cy, cx, r = rng.integers(60, 450, 2).tolist() + [int(rng.integers(20, 120))]
        on |= (y - cy) ** 2 + (x - cx) ** 2 < r * r
    return np.repeat((on * 255).astype(np.uint8)[:, :, None], channels, axis=2)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("filters", [[0], [1], [2], [4], [0, 1, 2, 4], [2, 2, 4, 4, 1], [3], [0, 3, 4]])
def test_png_fast_path_equals_the_pixels_and_pillow(channels: int, filters: list[int]) -> None:
    pixels = mask_like(channels, seed=channels)
    data = encode_png(pixels, filters)
    decoded = decode_png_pixels(data, "m.png")
    np.testing.assert_array_equal(decoded, pixels)
    with Image.open(io.BytesIO(data)) as image:
        pillow = np.asarray(image)
    np.testing.assert_array_equal(decoded.reshape(pillow.shape), pillow)
    np.testing.assert_array_equal(decode_mask(data, "m.png"), pixels[:, :, 0] != 0)


def test_arbitrary_bytes_survive_every_filter() -> None:
    """Not only 0/255: any byte values, where Paeth rows change prediction at every pixel."""
    pixels = np.random.default_rng(3).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    data = encode_png(pixels, [4, 1, 2, 0, 2])
    np.testing.assert_array_equal(decode_png_pixels(data, "noise.png"), pixels)
    np.testing.assert_array_equal(decode_mask(data, "noise.png"), pixels[:, :, 0] != 0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("filters", [[3], [0, 3, 4], [3, 2, 2, 1]])
def test_numpy_path_undoes_avg_rows(monkeypatch: pytest.MonkeyPatch, channels: int, filters: list[int]) -> None:
    """Many Avg rows normally go to Pillow (faster then); forced through numpy they decode the same."""
    monkeypatch.setattr(merge, "_MAX_AVG_ROWS", 10**6)
    monkeypatch.setattr(merge, "_decode_mask_with_pillow", _refuse_pillow)
    pixels = mask_like(channels, seed=7)
    data = encode_png(pixels, filters)
    np.testing.assert_array_equal(decode_png_pixels(data, "m.png"), pixels)
    np.testing.assert_array_equal(decode_mask(data, "m.png"), pixels[:, :, 0] != 0)


def _refuse_pillow(*_: object) -> None:
    raise AssertionError("fell back to Pillow")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("dtype", "interlaced"), [(np.uint8, True), (np.uint16, False), (np.uint16, True)])
def test_interlaced_and_16_bit_pngs_give_the_first_channel(channels: int, dtype: type, interlaced: bool) -> None:
    """Adam7-interlaced and 16-bit masks (Pillow's part), every row filter in every pass."""
    pixels = mask_like(channels, seed=7).astype(dtype) * (257 if dtype == np.uint16 else 1)
    data = encode_png(pixels, [0, 1, 2, 3, 4], interlaced=interlaced)
    np.testing.assert_array_equal(decode_mask(data, "m.png"), pixels[:, :, 0] != 0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("looking_up", [2, 3, 4])
def test_the_band_of_rows_holds_rows_whose_filtered_bytes_are_zero(channels: int, looking_up: int) -> None:
    """A bar of identical rows, each after its first filtered by a filter that looks up (Up and
    Paeth leave every byte zero there: what an adaptive encoder picks), blank rows filtered None.
    The band the build decodes must run to the bar's last row, though the filtered bytes stop at
    its first, and no further."""
    pixels = np.zeros((512, 512, channels), dtype=np.uint8)
    pixels[300:340, 100:200] = 255
    data = encode_png(pixels, [looking_up if 300 < row < 340 else 0 for row in range(512)])
    rows = decode_mask_rows(data, "bar.png")
    assert (rows.top, rows.top + len(rows.on)) == (300, 340)
    np.testing.assert_array_equal(rows.full(), pixels[:, :, 0] != 0)


@pytest.mark.parametrize("filters", [[0], [1], [2], [0, 1, 2, 4]])
def test_blank_masks_decode_to_an_empty_band(filters: list[int]) -> None:
    rows = decode_mask_rows(encode_png(np.zeros((512, 512, 3), dtype=np.uint8), filters), "blank.png")
    assert len(rows.on) == 0
    assert not rows.full().any()


def test_image_data_longer_than_the_rows_is_damage() -> None:
    """Pillow ignores inflated bytes past the last row and libpng warns ("Too much image data"):
    like every validating decoder's warning, that is damage, named, not a map."""
    pixels = mask_like(1, seed=2)
    data = encode_png(pixels, [1], extra=b"\x00" * 513)
    with pytest.raises(CelebaMaskError, match="more than its rows"):
        decode_mask(data, "m.png")


@pytest.mark.parametrize("filters", [[0], [1], [2], [4], [0, 1, 2, 4], [0] * 30 + [3], [2] * 40 + [3, 4]])
def test_mask_like_pngs_never_need_pillow(monkeypatch: pytest.MonkeyPatch, filters: list[int]) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("fell back to Pillow")

    monkeypatch.setattr(merge, "_decode_mask_with_pillow", refuse)
    pixels = mask_like(3, seed=5)
    np.testing.assert_array_equal(decode_mask(encode_png(pixels, filters), "m.png"), pixels[:, :, 0] != 0)


def test_without_libdeflate_pillow_decodes_the_same(monkeypatch: pytest.MonkeyPatch, synthetic_source: Path) -> None:
    paths = sorted((synthetic_source / "CelebAMask-HQ-mask-anno").rglob("*.png"))[:40]
    fast = [decode_mask(p.read_bytes(), str(p)) for p in paths]
    monkeypatch.setattr(png, "deflate", None)  # the strict PNG checks inflate (sources/png.py)
    for path, expected in zip(paths, fast):
        np.testing.assert_array_equal(decode_mask(path.read_bytes(), str(path)), expected)


@pytest.mark.parametrize(
    ("damage", "complaint"),
    [
        (lambda d: d[:46] + bytes([d[46] ^ 0xFF]) + d[47:], "CRC"),  # a byte inside IDAT
        (lambda d: d[:-30], "file ends inside"),
    ],
)
def test_damaged_pngs_name_the_file(damage, complaint: str) -> None:  # type: ignore[no-untyped-def]
    data = damage(encode_png(mask_like(1), [1]))
    with pytest.raises(CelebaMaskError, match=complaint) as caught:
        decode_mask(data, "/data/00001_skin.png")
    assert caught.value.path == "/data/00001_skin.png"


def test_corrupt_image_data_is_reported() -> None:
    pixels = mask_like(1)
    good = encode_png(pixels, [0])
    start = good.index(b"IDAT") + 4
    length = struct.unpack(">I", good[start - 8 : start - 4])[0]
    body = bytearray(good[start : start + length])
    body[len(body) // 2] ^= 0x55
    crc = struct.pack(">I", zlib.crc32(b"IDAT" + bytes(body)))
    bad = good[:start] + bytes(body) + crc + good[start + length + 4 :]
    with pytest.raises(CelebaMaskError, match="cannot decode PNG"):
        decode_mask(bad, "x.png")


def _pillow_draft(data: bytes, size: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (size, size))
        return np.asarray(image.convert("RGB"))


def test_simplejpeg_and_pillow_draft_give_the_same_pixels(synthetic_source: Path) -> None:
    for index in range(6):
        data = (synthetic_source / "CelebA-HQ-img" / f"{index}.jpg").read_bytes()
        reduced = decode_jpeg_reduced(data, 512)
        assert reduced is not None and reduced.shape == (512, 512, 3)
        np.testing.assert_array_equal(reduced, _pillow_draft(data, 512))


@pytest.mark.parametrize("optimized", [False, True])
def test_a_jpeg_missing_only_its_end_is_reported(synthetic_source: Path, optimized: bool) -> None:
    """libjpeg decodes a JPEG cut inside its last bytes with a warning only, and Pillow then decodes
    some of them without a word (which ones depends on the bits of the last scan): every image of
    the source, cut by one or two bytes, must be refused."""
    for path in sorted((synthetic_source / "CelebA-HQ-img").glob("*.jpg")):
        data = path.read_bytes()
        if optimized:  # optimised Huffman tables, as many encoders write them
            buffer = io.BytesIO()
            Image.open(path).save(buffer, format="JPEG", quality=95, optimize=True)
            data = buffer.getvalue()
        for cut in (1, 2):
            with pytest.raises(CelebaMaskError, match="cannot decode JPEG"):
                decode_image(data[:-cut], path.name, 512)
