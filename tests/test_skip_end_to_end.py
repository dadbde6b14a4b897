"""End to end: a source with a few broken files, built with ``--on-error skip --jobs 2``, is a
complete store whose skipped samples are recorded (attributes, ``valid``, blank rows) and whose
other rows are bit-equal to a clean build's."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import zarr
from click.testing import CliRunner

from celebamask import open_store
from celebamask.cli import main

MASKS = "CelebAMask-HQ-mask-anno/0"


def _build(source: Path, store: Path, *extra: str):
    return CliRunner().invoke(main, ["build", str(source), str(store), "--jobs", "2", "--shard-size", "4", "--quiet", *extra])


def _damage_idat_keeping_crc(png: bytes) -> bytes:
    """One byte in the middle of the zlib stream changed and the chunk's CRC recomputed: only the
    stream's own checks can see it."""
    position = 8
    while True:
        length, kind = struct.unpack_from(">I4s", png, position)
        if kind == b"IDAT":
            break
        position += 12 + length
    body = bytearray(png[position + 8 : position + 8 + length])
    body[len(body) // 2] ^= 0x55
    chunk = struct.pack(">I", length) + b"IDAT" + bytes(body) + struct.pack(">I", zlib.crc32(b"IDAT" + bytes(body)))
    return png[:position] + chunk + png[position + 12 + length :]


def _break_files(root: Path) -> dict[int, Path]:
    """Three samples in three shards, each with one broken file: sample -> the file."""
    truncated_mask = sorted((root / MASKS).glob("00003_*.png"))[0]
    truncated_mask.write_bytes(truncated_mask.read_bytes()[: truncated_mask.stat().st_size // 2])
    image = root / "CelebA-HQ-img" / "10.jpg"
    image.write_bytes(image.read_bytes()[: image.stat().st_size * 6 // 10])
    stream_mask = sorted((root / MASKS).glob("00017_*.png"))[-1]
    stream_mask.write_bytes(_damage_idat_keeping_crc(stream_mask.read_bytes()))
    return {3: truncated_mask, 10: image, 17: stream_mask}


def test_skip_build_with_broken_files_equals_a_clean_build_elsewhere(synthetic_source: Path, source_copy: Path,
                                                                   tmp_path: Path) -> None:
    broken = _break_files(source_copy)
    failed = _build(source_copy, tmp_path / "failed.zarr")
    assert failed.exit_code == 1 and failed.output.startswith("error: ") and len(failed.output.strip().splitlines()) == 1
    assert any(str(path) in failed.output for path in broken.values()), failed.output

    assert _build(synthetic_source, tmp_path / "clean.zarr").exit_code == 0
    skipped = _build(source_copy, tmp_path / "skip.zarr", "--on-error", "skip")
    assert skipped.exit_code == 0, skipped.output

    store = open_store(tmp_path / "skip.zarr")
    assert store.attrs["complete"] is True
    entries = {entry["sample"]: entry for entry in store.attrs["skipped"]}
    assert sorted(entries) == sorted(broken)
    for sample, path in broken.items():
        assert entries[sample]["path"] == str(path) and entries[sample]["error"], entries[sample]
    ids = np.asarray(store.sample_ids[:])
    bad_rows = np.isin(ids, list(broken))
    assert bad_rows.sum() == len(broken)

    clean, damaged = zarr.open_group(tmp_path / "clean.zarr", mode="r"), zarr.open_group(tmp_path / "skip.zarr", mode="r")
    names = sorted(name for name, _ in clean.arrays() if name != "shard_done")
    assert names == sorted(name for name, _ in damaged.arrays() if name != "shard_done")
    for name in names:
        left, right = np.asarray(clean[name][:]), np.asarray(damaged[name][:])
        assert left.shape == right.shape, name
        if left.ndim and left.shape[0] == len(ids):  # a per-sample array: the good rows are the clean build's
            np.testing.assert_array_equal(right[~bad_rows], left[~bad_rows], err_msg=name)
        else:
            np.testing.assert_array_equal(right, left, err_msg=name)
    valid = np.asarray(damaged["valid"][:])
    assert valid[~bad_rows].all() and not valid[bad_rows].any()
    assert not np.asarray(damaged["image"][:])[bad_rows].any()
    assert (np.asarray(damaged["label"][:])[bad_rows] == 255).all()
    assert not np.asarray(damaged["masks"][:])[bad_rows].any()
    assert not np.asarray(damaged["class_area"][:])[bad_rows].any()
