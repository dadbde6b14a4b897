"""Seeded mutation fuzzing of the mask and image decoders against validating decoders (issue 17).

Each mutant of a synthetic PNG mask or JPEG (bit flips, byte changes, truncations, chunk and
segment edits with their checksums fixed so they reach the decoder proper) must either raise
CelebaMaskError, one line naming the file, or give exactly the oracle's pixels; an oracle that
rejects the file means we must reject it too. Oracles: libpng (imagecodecs.png_decode) for masks,
"on" being its first channel non-zero; libjpeg-turbo's ``djpeg -strict`` (warnings fatal) for
JPEGs at the scale the build decodes, Pillow's Lanczos finishing any remaining factor.

Budget: CELEBAMASK_FUZZ_SECONDS in all (default 20, split between the two tests); base seed:
CELEBAMASK_FUZZ_SEED (default 0). A failure names the base seed and the mutant's number, and the
corpus is deterministic, so ``CELEBAMASK_FUZZ_SEED=<seed>`` replays it.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import time
import zlib
from collections.abc import Callable

import imagecodecs
import numpy as np
import pytest
import simplejpeg
from PIL import Image

from celebamask.build.merge import decode_mask
from celebamask.build.resize import decode_image
from celebamask.errors import CelebaMaskError
from tests.test_decoders import encode_png

SECONDS = float(os.environ.get("CELEBAMASK_FUZZ_SECONDS", "20"))
SEED = int(os.environ.get("CELEBAMASK_FUZZ_SEED", "0"))
MIN_MUTANTS = 60  # fewer than this in the budget would make the test say little


# --------------------------------------------------------------------------- corpus


def _shapes(seed: int) -> np.ndarray:
    """A mask-like 512² picture: a few filled ellipses, 0 elsewhere."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:512, :512]
    on = np.zeros((512, 512), dtype=bool)
    for _ in range(3):
        cy, cx, ry, rx = rng.integers(60, 450), rng.integers(60, 450), rng.integers(10, 80), rng.integers(10, 80)
        on |= ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1
    return on


def _pillow_png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def png_corpus() -> list[tuple[str, bytes]]:
    """Masks as the dataset stores them (Pillow, 8-bit L, 0/255) and in other legal encodings."""
    on = [_shapes(seed) for seed in range(6)]
    grey = (on[0] * 255).astype(np.uint8)
    palette = Image.fromarray(on[3].astype(np.uint8), mode="L").convert("P")
    palette.putpalette([0, 0, 0, 255, 255, 255])
    rgb16 = np.zeros((512, 512, 3), dtype=np.uint16)
    rgb16[on[4], 0] = 3  # only the low byte set
    rgb16[on[5], 1] = 999  # first sample zero: off
    return [
        ("pillow L", _pillow_png(Image.fromarray(grey), compress_type=zlib.Z_RLE)),
        ("pillow L optimize", _pillow_png(Image.fromarray(grey), optimize=True)),
        ("filters 0-4 L", encode_png(grey[:, :, None], [0, 1, 2, 3, 4])),
        ("RGBA paeth", encode_png(np.repeat((on[1] * 200).astype(np.uint8)[:, :, None], 4, axis=2), [4, 2])),
        ("1-bit", _pillow_png(Image.fromarray(on[2]).convert("1"))),
        ("palette", _pillow_png(palette)),
        ("16-bit RGB interlaced", encode_png(rgb16, [0, 1, 2, 3, 4], interlaced=True)),
        ("16-bit L", encode_png(((on[2] * 257).astype(np.uint16))[:, :, None], [1, 2])),
    ]


def jpeg_corpus() -> list[tuple[str, bytes, int]]:
    """(name, JPEG, store size): full-size and halved decodes, baseline and progressive, 4:2:0 and
    4:4:4, restart markers, greyscale."""
    rng = np.random.default_rng(1)
    out = []
    for size, options in [(512, {"subsampling": 2}), (512, {"progressive": True, "subsampling": 0}),
                          (1024, {"subsampling": 2, "optimize": True}), (1024, {"progressive": True}),
                          (512, {"restart_marker_blocks": 4}), (512, {"mode": "L"})]:
        y, x = np.mgrid[:size, :size]
        rgb = np.stack([(x // 4) % 256, (y // 3) % 256, ((x + y) // 8) % 256], -1) + rng.integers(0, 40, (size, size, 3))
        image = Image.fromarray(rgb.astype(np.uint8)).convert(options.pop("mode", "RGB"))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85, **options)
        out.append((f"{size} {options} {image.mode}", buffer.getvalue(), 512))
    return out


# --------------------------------------------------------------------------- mutations


def _png_chunks(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each well-formed chunk after the signature."""
    chunks, position = [], 8
    while position + 12 <= len(data):
        length = struct.unpack_from(">I", data, position)[0]
        end = position + 12 + length
        if end > len(data):
            break
        chunks.append((position, end))
        position = end
    return chunks


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _edit_chunk(data: bytes, rng: np.random.Generator, kinds: tuple[bytes, ...] | None = None) -> tuple[bytes, str]:
    """Change one byte or bit of a chunk's body (or its type) and fix the CRC: past the CRC check."""
    chunks = [(s, e) for s, e in _png_chunks(data) if kinds is None or data[s + 4 : s + 8] in kinds] or _png_chunks(data)
    start, end = chunks[int(rng.integers(len(chunks)))]
    kind, body = bytearray(data[start + 4 : start + 8]), bytearray(data[start + 8 : end - 4])
    if body and rng.random() < 0.9:
        at = int(rng.integers(len(body)))
        if rng.random() < 0.5:
            body[at] ^= 1 << int(rng.integers(8))
        else:
            body[at] = int(rng.integers(256))
        what = f"{bytes(kind).decode('latin-1')} body byte {at}"
    else:
        kind[int(rng.integers(4))] ^= 0x20  # case bit: critical <-> ancillary, ...
        what = f"chunk type {bytes(data[start + 4 : start + 8])!r} -> {bytes(kind)!r}"
    return data[:start] + _chunk(bytes(kind), bytes(body)) + data[end:], f"{what}, CRC fixed"


def _rezip_rows(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Inflate the image data, change one byte of the filtered rows (filter bytes included), deflate
    it again as one valid stream in one IDAT: damage that no checksum sees."""
    chunks = _png_chunks(data)
    idats = [(s, e) for s, e in chunks if data[s + 4 : s + 8] == b"IDAT"]
    raw = bytearray(zlib.decompress(b"".join(data[s + 8 : e - 4] for s, e in idats)))
    at = int(rng.integers(len(raw)))
    raw[at] = int(rng.integers(256)) if rng.random() < 0.5 else raw[at] ^ (1 << int(rng.integers(8)))
    if rng.random() < 0.2:
        raw = raw[: int(rng.integers(len(raw)))] if rng.random() < 0.5 else raw + bytes(int(rng.integers(1, 600)))
        what = f"rows resized to {len(raw)} bytes"
    else:
        what = f"filtered row byte {at}"
    start, end = idats[0][0], idats[-1][1]
    return data[:start] + _chunk(b"IDAT", zlib.compress(bytes(raw), 6)) + data[end:], what


def _chunk_order(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Delete, duplicate or swap whole chunks, or insert a new one with a valid CRC."""
    chunks = _png_chunks(data)
    pieces = [data[s:e] for s, e in chunks]
    k = int(rng.integers(len(pieces)))
    action = int(rng.integers(4))
    if action == 0:
        what = f"chunk {k} deleted"
        del pieces[k]
    elif action == 1:
        what = f"chunk {k} duplicated"
        pieces.insert(k, pieces[k])
    elif action == 2 and k + 1 < len(pieces):
        what = f"chunks {k}, {k + 1} swapped"
        pieces[k], pieces[k + 1] = pieces[k + 1], pieces[k]
    else:
        kind = bytes(rng.choice([b"PLTE", b"tRNS", b"IDAT", b"IHDR", b"gAMA", b"sBIT", b"bKGD", b"zzZz", b"ABCD"]))
        body = rng.integers(0, 256, int(rng.integers(0, 20)), dtype=np.uint8).tobytes()
        what = f"{kind!r} chunk of {len(body)} random bytes inserted before chunk {k}"
        pieces.insert(k, _chunk(kind, body))
    return data[:8] + b"".join(pieces), what


def _bit_flip(data: bytes, rng: np.random.Generator, lo: int = 0, hi: int | None = None) -> tuple[bytes, str]:
    mutated = bytearray(data)
    at = int(rng.integers(lo, hi or len(data)))
    bit = int(rng.integers(8))
    mutated[at] ^= 1 << bit
    return bytes(mutated), f"bit {bit} of byte {at} flipped"


def _byte_set(data: bytes, rng: np.random.Generator, lo: int = 0, hi: int | None = None) -> tuple[bytes, str]:
    mutated = bytearray(data)
    at = int(rng.integers(lo, hi or len(data)))
    mutated[at] = int(rng.integers(256))
    return bytes(mutated), f"byte {at} set to {mutated[at]}"


def _truncate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    keep = int(rng.integers(len(data)))
    return data[:keep], f"truncated to {keep} bytes"


PNG_MUTATIONS: list[Callable[[bytes, np.random.Generator], tuple[bytes, str]]] = [
    _bit_flip, _byte_set, _truncate, _edit_chunk, _chunk_order, _rezip_rows,
    lambda d, r: _edit_chunk(d, r, (b"IHDR",)), lambda d, r: _edit_chunk(d, r, (b"IDAT",)),
    lambda d, r: _edit_chunk(d, r, (b"PLTE", b"tRNS")),
]


def _jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each length-carrying marker segment up to and including the first SOS."""
    segments, position = [], 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        segments.append((position, end))
        if marker == 0xDA or end > len(data):
            break
        position = end
    return segments


def _jpeg_segment_edit(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    segments = _jpeg_segments(data)
    start, end = segments[int(rng.integers(len(segments)))]
    action = int(rng.integers(4))
    if action == 0:
        return data[:start] + data[end:], f"segment 0x{data[start + 1]:02X} at {start} deleted"
    if action == 1:
        return data[:end] + data[start:], f"segment 0x{data[start + 1]:02X} at {start} duplicated"
    mutate = _bit_flip if action == 2 else _byte_set
    mutated, what = mutate(data, rng, start + 2, end)
    return mutated, f"segment 0x{data[start + 1]:02X}: {what}"


def _jpeg_scan_edit(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """A bit flip or byte change in the entropy-coded data (after the first scan header)."""
    scan = _jpeg_segments(data)[-1][1]
    mutate = _bit_flip if rng.random() < 0.7 else _byte_set
    mutated, what = mutate(data, rng, scan, len(data) - 2)
    return mutated, f"scan data: {what}"


def _jpeg_insert(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    at = int(rng.integers(2, len(data)))
    extra = rng.integers(0, 256, int(rng.integers(1, 8)), dtype=np.uint8).tobytes()
    return data[:at] + extra + data[at:], f"{len(extra)} bytes inserted at {at}"


JPEG_MUTATIONS: list[Callable[[bytes, np.random.Generator], tuple[bytes, str]]] = [
    _bit_flip, _byte_set, _truncate, _jpeg_segment_edit, _jpeg_segment_edit, _jpeg_scan_edit, _jpeg_scan_edit, _jpeg_insert,
]


# --------------------------------------------------------------------------- oracles


def png_oracle(data: bytes) -> np.ndarray | None:
    """libpng's verdict: the "on" pixels (first channel non-zero), or None if it rejects the file."""
    try:
        pixels = imagecodecs.png_decode(data)
    except Exception:  # noqa: BLE001 - any refusal counts
        return None
    first = pixels if pixels.ndim == 2 else pixels[:, :, 0]
    return first != 0


def _read_ppm(out: bytes) -> np.ndarray:
    fields, position = [], 0
    while len(fields) < 4:
        while out[position : position + 1].isspace():
            position += 1
        end = position
        while not out[end : end + 1].isspace():
            end += 1
        fields.append(out[position:end])
        position = end
    width, height = int(fields[1]), int(fields[2])
    return np.frombuffer(out[position + 1 :], dtype=np.uint8).reshape(height, width, 3)


LAST_JPEG_COMPLAINT: list[str] = []  # what djpeg said of the last file it rejected


def jpeg_oracle(data: bytes, size: int) -> np.ndarray | None:
    """``djpeg -strict -rgb`` at the smallest scale n/8 giving at least ``size`` (the build's rule),
    Lanczos for the rest; None if libjpeg errs or warns, or the frame is not a square ≥ ``size``."""
    try:
        width, height = Image.open(io.BytesIO(data)).size
    except Exception:  # noqa: BLE001 - djpeg would fail too; let it say
        width = height = 0
    scale = next((n for n in range(1, 9) if width and -(-width * n // 8) >= size and -(-height * n // 8) >= size), 8)
    done = subprocess.run(["djpeg", "-strict", "-rgb", "-scale", f"{scale}/8"], input=data, capture_output=True, timeout=30)
    if done.returncode or not done.stdout:
        LAST_JPEG_COMPLAINT[:] = [done.stderr.decode(errors="replace").strip()]
        return None
    pixels = _read_ppm(done.stdout)
    if pixels.shape[0] != pixels.shape[1] or pixels.shape[0] < size:
        return None
    if pixels.shape[0] != size:
        pixels = np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.LANCZOS))
    return pixels


# --------------------------------------------------------------------------- the fuzz loop


def fuzz(corpus: list[tuple[str, bytes, int]], mutations: list, decode: Callable[[bytes, str, int], np.ndarray],
         oracle: Callable[[bytes, int], np.ndarray | None], seconds: float) -> tuple[int, int, list[str]]:
    """Mutate, decode, compare until ``seconds`` pass; (mutants, rejected, escapes)."""
    escapes: list[str] = []
    deadline = time.monotonic() + seconds
    count = rejected = 0
    path = "fuzz/mutant.bin"
    while time.monotonic() < deadline or count < MIN_MUTANTS:
        rng = np.random.default_rng([SEED, count])
        name, original, size = corpus[int(rng.integers(len(corpus)))]
        mutation = mutations[int(rng.integers(len(mutations)))]
        data, what = mutation(original, rng)
        where = f"CELEBAMASK_FUZZ_SEED={SEED} mutant {count} ({name}: {what})"
        count += 1
        LAST_JPEG_COMPLAINT.clear()
        expected = oracle(data, size)
        try:
            got = decode(data, path, size)
        except CelebaMaskError as exc:
            rejected += 1
            if "\n" in str(exc) or not str(exc).startswith(path + ": "):
                escapes.append(f"{where}: error not one line naming the file: {str(exc)!r}")
            continue
        except Exception as exc:  # noqa: BLE001 - exactly what must not happen
            escapes.append(f"{where}: {type(exc).__name__} escaped: {exc}")
            continue
        if expected is None:
            escapes.append(f"{where}: the oracle rejects it, we decoded it {LAST_JPEG_COMPLAINT}")
        elif got.shape != expected.shape or not np.array_equal(got, expected):
            wrong = np.count_nonzero(got != expected) if got.shape == expected.shape else got.shape
            escapes.append(f"{where}: pixels differ from the oracle's ({wrong} values)")
        if len(escapes) >= 10:
            break
    return count, rejected, escapes


def test_mutated_masks_are_libpngs_pixels_or_an_error_naming_the_file() -> None:
    corpus = [(name, data, 512) for name, data in png_corpus()]
    for name, data, _ in corpus:  # the unmutated corpus decodes, and to libpng's pixels
        np.testing.assert_array_equal(decode_mask(data, name), png_oracle(data), err_msg=name)
    count, rejected, escapes = fuzz(corpus, PNG_MUTATIONS, lambda d, p, _: decode_mask(d, p),
                                    lambda d, _: png_oracle(d), SECONDS / 2)
    assert not escapes, "\n".join(escapes)
    assert 0 < rejected < count, (count, rejected)  # mutants of both kinds: the comparison was exercised


@pytest.mark.skipif(shutil.which("djpeg") is None, reason="needs libjpeg-turbo's djpeg (the strict JPEG oracle)")
def test_mutated_jpegs_are_strict_libjpegs_pixels_or_an_error_naming_the_file() -> None:
    corpus = jpeg_corpus()
    for name, data, size in corpus:
        np.testing.assert_array_equal(decode_image(data, name, size), jpeg_oracle(data, size), err_msg=name)
    count, rejected, escapes = fuzz(corpus, JPEG_MUTATIONS, decode_image, jpeg_oracle, SECONDS / 2)
    assert not escapes, "\n".join(escapes)
    assert 0 < rejected < count, (count, rejected)


def _bad_huffman_code() -> tuple[bytes, bytes]:
    """The original and a one-bit mutant (CELEBAMASK_FUZZ_SEED=0 mutant 70) that djpeg -strict
    rejects for a bad Huffman code, and that libjpeg-turbo's fast Huffman path (the whole file in
    memory) decoded to garbage without a warning until the build forced its careful path."""
    _, original, _ = jpeg_corpus()[2]
    rng = np.random.default_rng([0, 70])
    rng.integers(6), rng.integers(len(JPEG_MUTATIONS))  # the draws fuzz() makes first
    return original, _jpeg_scan_edit(original, rng)[0]


@pytest.mark.skipif(shutil.which("djpeg") is None, reason="needs libjpeg-turbo's djpeg (the strict JPEG oracle)")
def test_a_bad_huffman_code_is_an_error() -> None:
    original, damaged = _bad_huffman_code()
    assert jpeg_oracle(damaged, 512) is None and LAST_JPEG_COMPLAINT == ["Corrupt JPEG data: bad Huffman code"]
    garbage = simplejpeg.decode_jpeg(damaged, min_height=512, min_width=512, strict=True)  # the fast path: no word
    assert np.count_nonzero(jpeg_oracle(original, 512) != garbage) > 1000
    with pytest.raises(CelebaMaskError, match="^x.jpg: cannot decode JPEG: .*bad Huffman code"):
        decode_image(damaged, "x.jpg", 512)
    np.testing.assert_array_equal(decode_image(original, "x.jpg", 512), jpeg_oracle(original, 512))
