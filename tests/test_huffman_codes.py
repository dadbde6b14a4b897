"""Every bad Huffman code in a sequential JPEG is an error (issue 17).

libjpeg-turbo's fast Huffman path, the one it takes when the whole file is in memory, decodes a
code that no table defines as 0 without a warning; the build forces its careful path, which warns
(celebamask.build.resize). The oracle here is independent of libjpeg: a walk of the scan data in
Python, code by code, against the file's own tables. Bit flips early in the scan (where the fast
path would run) that the walk finds a bad code or a premature end for must be errors naming the
file; ones it finds clean must decode to the pixels of the undamaged path's decode.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
import simplejpeg
from PIL import Image, ImageFile

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
        with pytest.raises(CelebaMaskError, match="^" + path.replace(".", r"\.") + ": .*bad Huffman code"):
            decode_image(damaged, path, size)


def test_decoded_as_it_comes_a_bad_code_goes_unnoticed() -> None:
    """The test above is not vacuous: libjpeg-turbo given the file as it is (its fast path) decodes
    some of these without a word."""
    rng = np.random.default_rng(17)
    silent = 0
    for _, original, _ in CORPUS:
        for _ in range(8):
            damaged, _ = with_a_bad_code(original, rng)
            try:
                simplejpeg.decode_jpeg(damaged, strict=True)
                silent += 1
            except ValueError:
                pass
    assert silent >= 1, silent  # (most are caught anyway: the decoder, out of step, meets other damage)


def test_the_round_trip_through_the_walk_changes_nothing() -> None:
    """The damage is only the sixteen bits: the same rewrite without them gives the file back."""
    for _, original, _ in CORPUS:
        start, end, bits, _ = _first_scan(original)
        assert original[:start] + _stuffed(bits) + original[end:] == original
