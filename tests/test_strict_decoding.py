"""The decoding escapes of issue 17, one targeted test each: what a validating decoder rejects is
an error naming the file, never pixels (16-bit masks, libjpeg's warnings on every decode path,
JPEG frame types the scaled decoder cannot take, decompression bombs, unreadable zip members).

Expectations come from elsewhere than our decoders: libpng (imagecodecs) for 16-bit pixels, the
array the file was written from, and Pillow to show that each damaged file is one a lenient
decoder would have turned into a picture without a word.
"""

from __future__ import annotations

import base64
import io
import struct
import time
import zipfile
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from PIL import Image

import celebamask.build.resize as resize
from celebamask.build.merge import decode_mask
from celebamask.build.resize import decode_image
from celebamask.cli import main
from celebamask.errors import CelebaMaskError
from celebamask.sources.supervisely import decode_bitmap
from celebamask.synth.generate import generate_zip
from tests.test_decoders import encode_png


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, idat: bytes, depth: int = 8, colour: int = 0) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


# --------------------------------------------------------------------------- 16-bit masks


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("interlaced", [False, True])
def test_16_bit_masks_are_on_where_the_first_sample_is_non_zero(channels: int, interlaced: bool) -> None:
    """First samples of 1..255 (only the low byte set: Pillow keeps the high byte and loses them),
    256, 65535; other channels set where the first is zero must stay off."""
    pixels = np.zeros((512, 512, channels), dtype=np.uint16)
    pixels[40:90, 10:500, 0] = np.arange(1, 256, dtype=np.uint16).repeat(2)[:490]  # low byte only
    pixels[120:130, :, 0] = 256
    pixels[200:260, 100:140, 0] = 65535
    if channels > 1:
        pixels[300:400, 200:300, 1:] = 4242  # first sample zero: off
    data = encode_png(pixels, [0, 1, 2, 3, 4], interlaced=interlaced)
    libpng = imagecodecs.png_decode(data)  # uint16, as written
    expected = (libpng if libpng.ndim == 2 else libpng[:, :, 0]) != 0
    assert expected.sum() == (pixels[:, :, 0] != 0).sum()
    np.testing.assert_array_equal(decode_mask(data, "m.png"), expected)


# --------------------------------------------------------------------------- libjpeg warnings


def _jpeg(mode: str, size: int = 1024, **options: object) -> bytes:
    y, x = np.mgrid[:size, :size]
    rgb = np.stack([(x // 4) % 256, (y // 4) % 256, ((x + y) // 8) % 256], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def _pillow_decodes(data: bytes) -> None:
    """Pillow, lenient, turns ``data`` into a picture without complaint (so the test means something)."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (512, 512))
        image.load()


def _extraneous_bytes(data: bytes) -> bytes:
    """Three bytes after the frame header: libjpeg warns "Corrupt JPEG data: 3 extraneous bytes
    before marker" and decodes on."""
    sof = data.index(b"\xff\xc0") if b"\xff\xc0" in data else data.index(b"\xff\xc2")
    end = sof + 2 + int.from_bytes(data[sof + 2 : sof + 4], "big")
    return data[:end] + b"\x12\x34\x56" + data[end:]


def _bad_progression(data: bytes) -> bytes:
    """The first scan header's successive-approximation bits changed: libjpeg warns "Inconsistent
    progression sequence" and decodes the image into garbage (about 6 dB)."""
    sos = data.index(b"\xff\xda")
    return data[: sos + 13] + bytes([data[sos + 13] ^ 0x08]) + data[sos + 14 :]


@pytest.mark.parametrize(("mode", "options", "damage"), [
    ("RGB", {}, _extraneous_bytes),
    ("L", {}, _extraneous_bytes),
    ("CMYK", {}, _extraneous_bytes),  # decoded by Pillow after the strict check
    ("RGB", {"progressive": True}, _bad_progression),
])
@pytest.mark.parametrize("size", [1024, 512, 300])  # full decode, DCT-scaled by 1/2, scaled then Lanczos
def test_every_libjpeg_warning_is_an_error_on_every_decode_path(mode: str, options: dict, damage, size: int) -> None:  # type: ignore[no-untyped-def]
    good = _jpeg(mode, **options)
    assert decode_image(good, "ok.jpg", size).shape == (size, size, 3)
    bad = damage(good)
    _pillow_decodes(bad)
    with pytest.raises(CelebaMaskError, match="cannot decode JPEG: damaged") as caught:
        decode_image(bad, "/data/7.jpg", size)
    assert caught.value.path == "/data/7.jpg" and "\n" not in str(caught.value)


def test_without_simplejpeg_nothing_is_decoded_leniently(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow cannot be made to treat libjpeg's warnings as errors: no strict decoder, no pixels."""
    monkeypatch.setattr(resize, "simplejpeg", None)
    for mode in ("RGB", "CMYK"):
        with pytest.raises(CelebaMaskError, match="simplejpeg package is missing") as caught:
            decode_image(_jpeg(mode), "/data/3.jpg", 512)
        assert caught.value.path == "/data/3.jpg"


# --------------------------------------------------------------------------- frame types


@pytest.mark.parametrize(("options", "complaint"), [
    ({"lossless": True}, "lossless (SOF3) JPEG is not supported"),  # libjpeg-turbo's scaled decode segfaults on it
    ({"bitspersample": 12}, "12-bit JPEG is not supported"),
])
def test_frame_types_the_scaled_decoder_cannot_take_are_named(options: dict, complaint: str) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    data = imagecodecs.jpeg8_encode(rgb.astype(np.uint16) * 16 if "bitspersample" in options else rgb, **options)
    assert imagecodecs.jpeg8_decode(data).shape == (1024, 1024, 3)  # a valid JPEG all the same
    with pytest.raises(CelebaMaskError, match=complaint.replace("(", r"\(").replace(")", r"\)")) as caught:
        decode_image(data, "/data/5.jpg", 512)
    assert caught.value.path == "/data/5.jpg"


# --------------------------------------------------------------------------- decompression bombs


def _quickly(call, *args):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    with pytest.raises(CelebaMaskError) as caught:
        call(*args)
    assert time.perf_counter() - started < 1.0
    return caught.value


@pytest.mark.parametrize("side", [100_000, 2**31 - 1])
def test_a_png_declaring_a_huge_size_is_refused_before_any_row(side: int) -> None:
    error = _quickly(decode_mask, _png(side, side, zlib.compress(b"\0" * 4096)), "/m/00001_skin.png")
    assert error.path == "/m/00001_skin.png" and f"mask is {side}x{side}" in error.problem


def test_a_zlib_bomb_in_a_mask_is_refused_without_inflating_it() -> None:
    """512² of 8-bit grey rows is 262,656 bytes; this stream inflates to 64 MiB."""
    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    error = _quickly(decode_mask, _png(512, 512, bomb), "/m/00001_hair.png")
    assert "more than its rows" in error.problem


def test_another_format_claiming_a_huge_size_named_as_a_mask() -> None:
    """A GIF header of 65000² (Pillow raises DecompressionBombError opening it)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="GIF")
    gif = bytearray(buffer.getvalue())
    gif[6:10] = struct.pack("<HH", 65000, 65000)  # the logical screen's size
    gif = bytes(gif)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(gif))
    error = _quickly(decode_mask, gif, "/m/00001_nose.png")
    assert error.path == "/m/00001_nose.png" and "not a PNG" in error.problem


def test_a_jpeg_frame_past_the_bomb_limit_is_refused_before_decoding() -> None:
    data = bytearray(_jpeg("RGB", size=256))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    error = _quickly(decode_image, bytes(data), "/data/9.jpg", 512)
    assert error.path == "/data/9.jpg" and "decompression-bomb limit" in error.problem


def test_a_supervisely_bitmap_bomb_is_refused_before_inflating() -> None:
    bitmap = base64.b64encode(zlib.compress(_png(100_000, 100_000, zlib.compress(b"\0" * 4096), depth=1))).decode()
    error = _quickly(decode_bitmap, bitmap, "ann/1.jpg.json: object 0")
    assert "larger than the 1024x1024 image" in error.problem


def test_a_damaged_supervisely_bitmap_is_refused() -> None:
    """Pillow stops reading a PNG once it has its rows: a stream holding more (libpng: "Too much
    image data") is damage all the same."""
    rows = b"".join(b"\x00" + bytes([0xFF] * 8) for _ in range(64))
    png = _png(64, 64, zlib.compress(rows + b"\x00" * 900), depth=1)
    with Image.open(io.BytesIO(png)) as image:
        image.load()  # Pillow: fine
    with pytest.raises(CelebaMaskError, match="bitmap does not decode as a PNG: .*more than its rows"):
        decode_bitmap(base64.b64encode(png).decode(), "ann/1.jpg.json: object 0")


# --------------------------------------------------------------------------- zip members


def spoil_zip_member(archive: Path, name: str, *, encrypted: bool = False, method: int | None = None) -> None:
    """Mark one member encrypted and/or of another compression method, in its local header and its
    central directory entry alike (what an archiver that wrote it so leaves)."""
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zipped:
        local = zipped.getinfo(name).header_offset
    end = data.rindex(b"PK\x05\x06")
    position = struct.unpack_from("<I", data, end + 16)[0]
    while data[position : position + 4] == b"PK\x01\x02":
        name_length, extra, comment = struct.unpack_from("<HHH", data, position + 28)
        if data[position + 46 : position + 46 + name_length].decode() == name:
            for flags_at, method_at in ((position + 8, position + 10), (local + 6, local + 8)):
                if encrypted:
                    struct.pack_into("<H", data, flags_at, struct.unpack_from("<H", data, flags_at)[0] | 1)
                if method is not None:
                    struct.pack_into("<H", data, method_at, method)
        position += 46 + name_length + extra + comment
    archive.write_bytes(bytes(data))


@pytest.mark.parametrize(("spoil", "complaint"), [
    ({"encrypted": True}, "the member is encrypted"),
    ({"method": 9}, "compression method 9, Deflate64"),
])
@pytest.mark.parametrize("member", ["CelebA-HQ-img/2.jpg", "CelebAMask-HQ-mask-anno/0/00002_skin.png"])
def test_an_unreadable_zip_member_is_one_line_naming_zip_and_member(tmp_path: Path, spoil: dict, complaint: str,
                                                                    member: str) -> None:
    archive = generate_zip(tmp_path / "CelebAMask-HQ.zip", 4, seed=5, jobs=1)
    spoil_zip_member(archive, f"CelebAMask-HQ/{member}", **spoil)
    result = CliRunner().invoke(main, ["build", str(archive), str(tmp_path / "s.zarr"), "--quiet", "--jobs", "1"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {archive}:CelebAMask-HQ/{member}: cannot read from archive: ")
    assert complaint in lines[0], lines[0]
    skipped = CliRunner().invoke(main, ["build", str(archive), str(tmp_path / "k.zarr"), "--quiet", "--jobs", "1",
                                        "--on-error", "skip"])
    assert skipped.exit_code == 0, skipped.output
    entries = zarr.open_group(tmp_path / "k.zarr", mode="r").attrs["skipped"]
    assert [(e["sample"], e["path"]) for e in entries] == [(2, f"{archive}:CelebAMask-HQ/{member}")]


# --------------------------------------------------------------------------- APNG chunks


def _animated(png: bytes, frame: tuple[int, int]) -> bytes:
    """``png`` with an acTL and a first frame's fcTL of ``frame`` (width, height) pixels at 0, 0
    before its image data: what libpng, which knows no APNG, skips as ancillary chunks."""
    ihdr_end = 8 + 25
    actl = _chunk(b"acTL", struct.pack(">II", 1, 0))
    fctl = _chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, *frame, 0, 0, 1, 1, 0, 0))
    return png[:ihdr_end] + actl + fctl + png[ihdr_end:]


def _mask_png(mode: str, pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels).convert(mode) if mode != "P" else Image.fromarray(pixels, "P")
    if mode == "P":
        image.putpalette([0, 0, 0, 255, 255, 255])
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["1", "P", "L"])
def test_apng_chunks_do_not_crop_a_mask_to_their_frame(mode: str) -> None:
    """Pillow decodes an APNG's image data into its first frame's rectangle; the mask is the whole
    image, as libpng reads it (a mask of Avg-filtered rows included: Pillow decodes those too)."""
    rng = np.random.default_rng(3)
    on = rng.random((512, 512)) < 0.3
    png = _mask_png(mode, (on * (1 if mode == "P" else 255)).astype(np.uint8))
    if mode == "L":  # rows filtered with Avg, which send an 8-bit mask to Pillow
        rows = (on * 255).astype(np.int32)
        left = np.pad(rows[:, :-1], ((0, 0), (1, 0)))
        averaged = (rows[1:] - (left[1:] + rows[:-1]) // 2) % 256  # Avg: x - floor((left + above) / 2)
        raw = b"\x00" + rows[0].astype(np.uint8).tobytes() + b"".join(b"\x03" + row.astype(np.uint8).tobytes()
                                                                      for row in averaged)
        png = _png(512, 512, zlib.compress(raw))
        np.testing.assert_array_equal(imagecodecs.png_decode(png) != 0, on)  # the hand-made rows are right
    animated = _animated(png, (64, 32))
    np.testing.assert_array_equal(decode_mask(animated, "anno/0/00000_hair.png"), on)
    bitmap = base64.b64encode(_animated(_mask_png("1", on[:100, :80].astype(np.uint8) * 255), (8, 8))).decode()
    np.testing.assert_array_equal(decode_bitmap(bitmap, "ann/0.jpg.json: object 0"), on[:100, :80])
