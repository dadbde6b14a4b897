"""Damaged scan data in a sequential JPEG is an error, and the rewrite that makes it one keeps the
pixels exact (issue 17; celebamask.build.jpeg_scans).

libjpeg-turbo misses two kinds of damage on its own: a code that no table defines (its fast
Huffman path, taken whenever the whole file is in memory, decodes it as 0 without a warning), and
a scan whose last block ends a few bytes before its data does (the bytes it read ahead are
dropped silently). The oracle here is independent of libjpeg: a walk of the scan data in Python,
code by code, against the file's own tables, which says whether every code is defined, whether
the data runs out, and how many whole bytes are left after the last block. Whatever it finds
wrong must be an error naming the file; what it finds clean must decode to libjpeg's pixels of
the file as it is.
"""

from __future__ import annotations

import functools
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from PIL import Image, ImageFile

from celebamask.build.jpeg_scans import rewritten_for_checks
from celebamask.build.resize import decode_image
from celebamask.errors import CelebaMaskError


def _huffman_tables(body: bytes, tables: dict[tuple[int, int], dict[str, int]]) -> None:
    """Canonical codes (as bit strings) of each table in one DHT segment."""
    i = 0
    while i + 17 <= len(body):
        kind, counts = body[i], body[i + 1 : i + 17]
        symbols = body[i + 17 : i + 17 + sum(counts)]
        codes, code, k = {}, 0, 0
        for length, count in enumerate(counts, start=1):
            for _ in range(count):
                codes[format(code, f"0{length}b")] = symbols[k]
                code, k = code + 1, k + 1
            code <<= 1
        tables[kind >> 4, kind & 15] = codes
        i += 17 + sum(counts)


def _entropy_bits(data: bytes, start: int) -> tuple[str, int]:
    """The scan's entropy-coded bits from ``start`` (stuffed zero bytes removed) up to the next
    marker, and that marker's offset."""
    out, position = bytearray(), start
    while position < len(data):
        if data[position] == 0xFF:
            if position + 1 < len(data) and data[position + 1] == 0x00:
                out.append(0xFF)
                position += 2
                continue
            break
        out.append(data[position])
        position += 1
    return "".join(format(byte, "08b") for byte in out), position


def _walk_scan(bits: str, blocks: list[tuple[dict[str, int], dict[str, int]]], mcus: int,
               symbols: list[tuple[int, int]]) -> str | None:
    """Decode ``mcus`` MCUs of (DC table, AC table) blocks, noting each code's (bit offset, length) in
    ``symbols``; what is wrong, or None."""
    position = 0

    def symbol(table: dict[str, int]) -> int | None:
        nonlocal position
        for length in range(1, 17):
            if position + length > len(bits):
                raise EOFError
            found = table.get(bits[position : position + length])
            if found is not None:
                symbols.append((position, length))
                position += length
                return found
        return None

    try:
        for _ in range(mcus):
            for dc, ac in blocks:
                size = symbol(dc)
                if size is None:
                    return "bad Huffman code (DC)"
                position += size
                k = 1
                while k < 64:
                    run_size = symbol(ac)
                    if run_size is None:
                        return "bad Huffman code (AC)"
                    run, size = run_size >> 4, run_size & 15
                    if size:
                        position += size
                        k += run + 1
                    elif run == 15:
                        k += 16
                    else:
                        break
                if position > len(bits):
                    raise EOFError
    except EOFError:
        return "premature end of data"
    if len(bits) - position >= 8:
        return f"{(len(bits) - position) // 8} whole bytes after the last block"
    return None


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def huffman_verdict(data: bytes, first_scan: list | None = None) -> str | None:
    """None if every scan of this sequential JPEG (no restart interval) decodes with codes its tables
    define and without running out of data; else what is wrong. ``first_scan`` is given the first
    scan's byte range, its bits and its codes' (bit offset, length)."""
    tables: dict[tuple[int, int], dict[str, int]] = {}
    sampling: dict[int, tuple[int, int]] = {}
    width = height = 0
    position = 2
    while position + 2 <= len(data):
        if data[position] != 0xFF:
            return f"no marker at {position}"
        marker = data[position + 1]
        if marker == 0xD9:
            return None
        end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        body = data[position + 4 : end]
        if marker == 0xC4:
            _huffman_tables(body, tables)
        elif marker in (0xC0, 0xC1):
            height, width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
            sampling = {body[6 + 3 * k]: (body[7 + 3 * k] >> 4, body[7 + 3 * k] & 15) for k in range(body[5])}
        elif marker == 0xDD:
            assert int.from_bytes(body[:2], "big") == 0, "the walk does not do restart intervals"
        elif marker == 0xDA:
            scan = [(body[1 + 2 * k], body[2 + 2 * k]) for k in range(body[0])]
            h_max, v_max = max(h for h, _ in sampling.values()), max(v for _, v in sampling.values())
            if len(scan) == 1:
                h, v = sampling[scan[0][0]]
                mcus = _ceil(_ceil(width * h, h_max), 8) * _ceil(_ceil(height * v, v_max), 8)  # one block each
                repeats = [1]
            else:
                mcus = _ceil(width, 8 * h_max) * _ceil(height, 8 * v_max)
                repeats = [sampling[c][0] * sampling[c][1] for c, _ in scan]
            blocks = []
            for (component, selectors), count in zip(scan, repeats):
                if (0, selectors >> 4) not in tables or (1, selectors & 15) not in tables:
                    return "scan names a table the file does not define"
                blocks += [(tables[0, selectors >> 4], tables[1, selectors & 15])] * count
            bits, position = _entropy_bits(data, end)
            symbols: list[tuple[int, int]] = []
            problem = _walk_scan(bits, blocks, mcus, symbols)
            if first_scan is not None and not first_scan:
                first_scan += [end, position, bits, symbols]
            if problem:
                return problem
            continue
        position = end
    return "no end-of-image marker"


def _jpeg(mode: str, size: int, seed: int, **options: object) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    rgb = np.stack([(x * 3) % 256, (y * 5) % 256, ((x + y) * 2) % 256], -1) + rng.integers(0, 60, (size, size, 3))
    buffer, block = io.BytesIO(), ImageFile.MAXBLOCK
    ImageFile.MAXBLOCK = 1 << 22  # Pillow's optimize=True needs the whole noisy file in one buffer
    try:
        Image.fromarray(rgb.astype(np.uint8)).convert(mode).save(buffer, format="JPEG", quality=92, **options)
    finally:
        ImageFile.MAXBLOCK = block
    return buffer.getvalue()


CORPUS = [
    ("grey 256", _jpeg("L", 256, 0), 256),
    ("4:4:4 256 optimised", _jpeg("RGB", 256, 1, subsampling=0, optimize=True), 128),
    ("4:2:0 384", _jpeg("RGB", 384, 2, subsampling=2), 384),
]


def _stuffed(bits: str) -> bytes:
    """Bits packed into entropy-coded bytes: padded with ones, a zero byte after each 0xFF."""
    bits += "1" * (-len(bits) % 8)
    packed = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    return packed.replace(b"\xff", b"\xff\x00")


def _decodes_without_a_word(damaged: bytes) -> bool:
    """Whether libjpeg-turbo given the file as it is, strict, decodes it without a warning."""
    try:
        simplejpeg.decode_jpeg(damaged, strict=True)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=8)
def _first_scan(data: bytes) -> tuple[int, int, str, list[tuple[int, int]]]:
    """The first scan's byte range, its bits and its codes' (bit offset, length) of a clean file."""
    scan: list = []
    assert huffman_verdict(data, scan) is None  # the walk reads a clean file as clean
    return tuple(scan)


def with_a_bad_code(data: bytes, rng: np.random.Generator) -> tuple[bytes, int]:
    """``data`` with one code in the first half of its first scan overwritten by sixteen ones: a code
    no table defines (an all-ones code is never assigned), where the file still has most of its
    bytes ahead (the fast path's ground). Also the byte offset of the damage."""
    start, end, bits, symbols = _first_scan(data)
    offset, _ = symbols[int(rng.integers(len(symbols) // 2))]
    damaged = bits[:offset] + "1" * 16 + bits[offset + 16 :]
    return data[:start] + _stuffed(damaged) + data[end:], start + offset // 8


@pytest.mark.parametrize(("name", "original", "size"), CORPUS, ids=[name for name, _, _ in CORPUS])
def test_a_bad_huffman_code_is_an_error_naming_the_file(name: str, original: bytes, size: int) -> None:
    rng = np.random.default_rng(17)
    for number in range(8):
        damaged, at = with_a_bad_code(original, rng)
        assert huffman_verdict(damaged).startswith("bad Huffman code")
        path = f"fuzz/{name} code {number} at byte {at}.jpg"
        with pytest.raises(CelebaMaskError, match="^" + re.escape(path) + ": .*bad Huffman code"):
            decode_image(damaged, path, size)


def test_decoded_as_it_comes_a_bad_code_goes_unnoticed() -> None:
    """The test above is not vacuous: libjpeg-turbo given the file as it is (its fast path) decodes
    some of these without a word."""
    rng = np.random.default_rng(17)
    silent = sum(_decodes_without_a_word(with_a_bad_code(original, rng)[0]) for _, original, _ in CORPUS for _ in range(8))
    assert silent >= 1, silent  # (most are caught anyway: the decoder, out of step, meets other damage)


def _without_flat_block_codes() -> bytes:
    """A greyscale JPEG whose optimised tables have no DC difference 0 and no end-of-block: each
    8×8 block one step brighter than the last, and a zero-mean checker in every block up to its
    last coefficient (the rewrite's added row cannot be coded with such tables)."""
    y, x = np.mgrid[:256, :256]
    steps = ((y // 8) * 32 + x // 8) % 27 * 8 + 20
    signs = np.random.default_rng(0).choice([1, -1], size=(32, 32)).repeat(8, 0).repeat(8, 1)
    pixels = (steps + np.where((x + y) % 2 == 0, 18, -18) * signs).clip(0, 255).astype(np.uint8)
    return _save(Image.fromarray(pixels, "L"), optimize=True)


def test_tables_without_a_flat_blocks_codes_still_have_their_codes_checked() -> None:
    data = _without_flat_block_codes()
    _, _, bits, symbols = _first_scan(data)  # the walk: every code defined, nothing left over
    assert symbols and len(bits) - (symbols[-1][0] + symbols[-1][1]) < 64
    np.testing.assert_array_equal(decode_image(data, "t.jpg", 256),
                                  simplejpeg.decode_jpeg(data, min_height=256, min_width=256, strict=True))
    rng = np.random.default_rng(17)
    silent = 0
    for number in range(8):
        damaged, at = with_a_bad_code(data, rng)
        path = f"fuzz/no flat codes {number} at byte {at}.jpg"
        with pytest.raises(CelebaMaskError, match="^" + re.escape(path) + ": .*bad Huffman code"):
            decode_image(damaged, path, 256)
        silent += _decodes_without_a_word(damaged)
    assert silent, "libjpeg alone must miss some of these, or the test shows nothing"


def test_the_round_trip_through_the_walk_changes_nothing() -> None:
    """The damage is only the sixteen bits: the same rewrite without them gives the file back."""
    for _, original, _ in CORPUS:
        start, end, bits, _ = _first_scan(original)
        assert original[:start] + _stuffed(bits) + original[end:] == original


# --------------------------------------------------------------------------- where scans end


def _ends_early(data: bytes, rng: np.random.Generator) -> bytes:
    """A copy whose scan data goes on for 1..7 bytes after its last block (the bytes libjpeg reads
    ahead and drops), as damage that shortens the coded blocks leaves it."""
    extra = rng.integers(0, 256, int(rng.integers(1, 8)), dtype=np.uint8).tobytes().replace(b"\xff", b"\xff\x00")
    end = data.rindex(b"\xff\xd9")
    return data[:end] + extra + data[end:]


@pytest.mark.parametrize(("name", "original", "size"), CORPUS, ids=[name for name, _, _ in CORPUS])
def test_a_scan_that_ends_before_its_data_is_an_error(name: str, original: bytes, size: int) -> None:
    rng = np.random.default_rng(5)
    for number in range(6):
        damaged = _ends_early(original, rng)
        assert "whole bytes after the last block" in huffman_verdict(damaged)
        path = f"fuzz/{name} {number}.jpg"
        with pytest.raises(CelebaMaskError, match="^" + re.escape(path) + ": .*damaged scan data"):
            decode_image(damaged, path, size)


def test_libjpeg_alone_lets_a_scan_end_early() -> None:
    """Not vacuous: the same copies given to libjpeg-turbo as they are decode without a word."""
    rng = np.random.default_rng(5)
    silent = sum(_decodes_without_a_word(_ends_early(original, rng)) for _, original, _ in CORPUS for _ in range(6))
    assert silent >= 3, silent


SMALL = [(name, data, size) for name, data, size in CORPUS if "256" in name] + [
    ("4:2:0 192", _jpeg("RGB", 192, 3, subsampling=2), 192)]


@pytest.mark.parametrize(("name", "original", "size"), SMALL, ids=[name for name, _, _ in SMALL])
def test_bit_flips_are_an_error_or_libjpegs_own_pixels(name: str, original: bytes, size: int) -> None:
    """Random flips in the scan data: what the walk finds wrong is an error; what it finds clean
    decodes to exactly what libjpeg makes of the damaged file as it is (the rewrite changes nothing)."""
    start, end, _, _ = _first_scan(original)
    rng = np.random.default_rng(11)
    wrong = clean = 0
    for number in range(20):
        mutant = bytearray(original)
        at = int(rng.integers(start, end))
        mutant[at] ^= 1 << int(rng.integers(8))
        mutant = bytes(mutant)
        verdict = huffman_verdict(mutant)
        path = f"fuzz/{name} flip {number} at {at}.jpg"
        if verdict is not None:
            wrong += 1
            with pytest.raises(CelebaMaskError, match="^" + re.escape(path) + ": "):
                decode_image(mutant, path, size)
            continue
        try:
            expected = simplejpeg.decode_jpeg(mutant, min_height=size, min_width=size, strict=True)
        except ValueError:
            continue  # libjpeg finds something the walk does not look at (a marker made by the flip)
        clean += 1
        if expected.shape[:2] != (size, size):
            expected = np.asarray(Image.fromarray(expected).resize((size, size), Image.Resampling.LANCZOS))
        np.testing.assert_array_equal(decode_image(mutant, path, size), expected, err_msg=path)
    assert wrong and clean, (wrong, clean)


# --------------------------------------------------------------------------- the pixels stay exact


def _encodings() -> list[tuple[str, bytes, int]]:
    """(name, JPEG, store size) across what the rewrite decodes itself and what it only checks: 4:2:0,
    4:2:2, 4:4:4 and greyscale; decoded at 1/2, 1/4, 5/8 (then Lanczos) and full scale; heights a
    whole number of MCU rows or not; optimised tables; progressive (left as it is)."""
    rng = np.random.default_rng(2)
    out = []
    for source, store in ((512, 256), (256, 256), (512, 128), (384, 256), (500, 256)):
        y, x = np.mgrid[:source, :source]
        rgb = (np.stack([(x * 3) % 256, (y * 2) % 256, (x + y) % 256], -1) + rng.integers(0, 50, (source, source, 3)))
        image = Image.fromarray(rgb.astype(np.uint8))
        for label, mode, options in (("4:2:0", "RGB", {"subsampling": 2}), ("4:2:2", "RGB", {"subsampling": 1}),
                                     ("4:4:4 optimised", "RGB", {"subsampling": 0, "optimize": True}),
                                     ("grey", "L", {}), ("progressive", "RGB", {"progressive": True})):
            out.append((f"{source}->{store} {label}", _save(image.convert(mode), **options), store))
    return out


def _save(image: Image.Image, **options: object) -> bytes:
    buffer, block = io.BytesIO(), ImageFile.MAXBLOCK
    ImageFile.MAXBLOCK = 1 << 22
    try:
        image.save(buffer, format="JPEG", quality=90, **options)
    finally:
        ImageFile.MAXBLOCK = block
    return buffer.getvalue()


def _libjpegs_pixels(data: bytes, size: int) -> np.ndarray:
    expected = simplejpeg.decode_jpeg(data, min_height=size, min_width=size, strict=True)
    if expected.shape[:2] != (size, size):
        expected = np.asarray(Image.fromarray(expected).resize((size, size), Image.Resampling.LANCZOS))
    return expected


def test_the_rewrite_keeps_libjpegs_pixels_exactly() -> None:
    taken = 0
    for name, data, size in _encodings():
        np.testing.assert_array_equal(decode_image(data, f"{name}.jpg", size), _libjpegs_pixels(data, size),
                                      err_msg=name)
        eighths = next(n for n in range(1, 9) if -(-int(name.split("->")[0]) * n // 8) >= size)
        taken += rewritten_for_checks(data, eighths).extra_rows
    assert taken >= 8, taken  # files the rewrite decodes itself, not only ones it checks or leaves alone


@pytest.mark.skipif(shutil.which("cjpeg") is None, reason="needs libjpeg-turbo's cjpeg (multi-scan and 4:4:0 JPEGs)")
@pytest.mark.parametrize("sampling", ["2x2,1x1,1x1", "1x2,1x1,1x1"])
@pytest.mark.parametrize("store_size", [128, 256])
def test_cjpegs_multi_scan_sequential_jpegs_are_checked_scan_by_scan(tmp_path: Path, sampling: str,
                                                                     store_size: int) -> None:
    """Sequential JPEGs with one scan per component (cjpeg -scans), 4:2:0 and 4:4:0, decoded at 1/2
    and at full scale: libjpeg's own pixels, and a second scan that ends before its data is an
    error (libjpeg alone decodes it without a word)."""
    source = np.random.default_rng(4).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    (tmp_path / "scans").write_text("0;\n1;\n2;\n")
    data = subprocess.run(["cjpeg", "-quality", "90", "-sample", sampling, "-scans", str(tmp_path / "scans")],
                          input=b"P6\n256 256\n255\n" + source.tobytes(), capture_output=True, check=True).stdout
    scans = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]
    assert len(scans) == 3
    np.testing.assert_array_equal(decode_image(data, "m.jpg", store_size),
                                  simplejpeg.decode_jpeg(data, min_height=store_size, min_width=store_size, strict=True))
    damaged = data[: scans[2]] + b"\x5a\x3c" + data[scans[2] :]  # two bytes after the second scan's last block
    simplejpeg.decode_jpeg(damaged, min_height=store_size, min_width=store_size, strict=True)  # libjpeg: not a word
    with pytest.raises(CelebaMaskError, match="^m.jpg: .*damaged scan data"):
        decode_image(damaged, "m.jpg", store_size)


# --------------------------------------------------------------------------- markers libjpeg skips


def _first_sos(data: bytes) -> int:
    position = 2
    while data[position + 1] != 0xDA:
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return position


def _before_first_scan(segment: bytes):  # type: ignore[no-untyped-def]
    return lambda data: data[: _first_sos(data)] + segment + data[_first_sos(data) :]


def _before_the_end(segment: bytes):  # type: ignore[no-untyped-def]
    return lambda data: data[:-2] + segment + data[-2:]


HARMLESS = {  # what libjpeg reads past without a word, and jpeg_scans once took for damage
    "RST0 among the headers": _before_first_scan(b"\xff\xd0"),
    "TEM among the headers": _before_first_scan(b"\xff\x01"),
    "DNL among the headers": _before_first_scan(b"\xff\xdc\x00\x04\x01\x00"),
    "RST0 after the scan": _before_the_end(b"\xff\xd0"),
    "DRI after the scan": _before_the_end(b"\xff\xdd\x00\x04\xff\xff"),
}


@pytest.mark.parametrize("marker", list(HARMLESS))
def test_markers_libjpeg_skips_neither_hide_a_bad_code_nor_change_the_pixels(marker: str) -> None:
    add = HARMLESS[marker]
    rng = np.random.default_rng(5)
    silent = 0
    for name, original, size in CORPUS:
        np.testing.assert_array_equal(decode_image(add(original), f"{name}.jpg", size),
                                      _libjpegs_pixels(original, size), err_msg=name)
        for number in range(4):
            damaged = add(with_a_bad_code(original, rng)[0])
            silent += _decodes_without_a_word(damaged)
            with pytest.raises(CelebaMaskError, match="bad Huffman code"):
                decode_image(damaged, f"fuzz/{name} {number}.jpg", size)
    assert silent >= 1, silent  # libjpeg on the file as it is lets some through


def _with_fill_byte(data: bytes) -> bytes:
    """A 0xFF fill byte before a stuffed zero in the first scan's data: FF FF 00 is the data byte
    0xFF, as FF 00 is (a marker may be preceded by fill bytes; libjpeg skips them before a zero too)."""
    sos = _first_sos(data)
    stuffed = data.index(b"\xff\x00", sos + (len(data) - sos) // 3)
    return data[:stuffed] + b"\xff" + data[stuffed:]


def test_a_fill_byte_before_a_stuffed_zero_keeps_the_pixels() -> None:
    """libjpeg-turbo's fast Huffman path misreads FF FF 00 (the careful path reads it right)."""
    misread = 0
    for name, original, size in CORPUS:
        filled = _with_fill_byte(original)
        expected = _libjpegs_pixels(original, size)
        np.testing.assert_array_equal(decode_image(filled, f"{name}.jpg", size), expected, err_msg=name)
        try:
            misread += not np.array_equal(_libjpegs_pixels(filled, size), expected)
        except ValueError:
            misread += 1
    cmyk = _save(Image.fromarray(np.asarray(Image.open(io.BytesIO(CORPUS[2][1])).convert("RGB"))).convert("CMYK"))
    with Image.open(io.BytesIO(cmyk)) as image:  # Pillow's pixels of the file as it is (it converts CMYK)
        image.draft("RGB", (192, 192))
        expected = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(decode_image(_with_fill_byte(cmyk), "cmyk.jpg", 192), expected)
    assert misread >= 1, misread
