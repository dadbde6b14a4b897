"""The direct shard writer and row reader (pipeline/store/shards.py) agree with zarr in both directions."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import celebamask.build.orchestrator as build_module
import celebamask.store.layout as store_module
from celebamask import open_store
from celebamask.build.orchestrator import build_store
from celebamask.errors import CelebaMaskError
from celebamask.store.shards import RowReader

PRESETS = ["lossless", "lossless-compact", "jpeg:90"]


def _build(source: Path, target: Path, preset: str) -> Path:
    if preset.startswith("jpeg"):
        pytest.importorskip("imagecodecs", reason="the [jpeg] extra is not installed")
    build_store(source, target, jobs=1, limit=11, shard_size=4, image_codec=preset)
    return target


@pytest.mark.parametrize("preset", PRESETS)
def test_shards_written_directly_read_the_same_through_zarr_and_the_row_reader(
        synthetic_source: Path, tmp_path: Path, preset: str) -> None:
    built = _build(synthetic_source, tmp_path / "s.zarr", preset)
    group = zarr.open_group(built, mode="r")
    for name in ("image", "label", "masks"):  # uint8 and uint32 (masks' bytes decoded straight into rows)
        array = group[name]
        reader = RowReader(array)
        assert reader.files is not None  # the fast path, not zarr's
        whole = array[:]
        for row in range(array.shape[0]):
            np.testing.assert_array_equal(reader(row), whole[row])
        np.testing.assert_array_equal(reader.rows(2, 11), whole[2:11])  # across shard boundaries


def test_direct_writer_and_zarr_writer_store_the_same_values(
        synthetic_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    direct = _build(synthetic_source, tmp_path / "direct.zarr", "lossless")
    monkeypatch.setattr(build_module, "_direct_writers", lambda group: None)
    monkeypatch.setattr(store_module, "row_files", lambda array: None)
    through_zarr = _build(synthetic_source, tmp_path / "zarr.zarr", "lossless")
    a, b = open_store(direct), open_store(through_zarr)
    names = sorted(a.group.array_keys())
    assert {"image", "label", "valid", "class_present", "class_area"} <= set(names)
    for name in names:  # every array, the per-row ones (plain chunks, not shards) too
        np.testing.assert_array_equal(a.group[name][:], b.group[name][:], err_msg=name)
    np.testing.assert_array_equal(a.batch(0, 11)["image"], b.images[:])


def test_shard_workers_never_import_zarr() -> None:
    """Worker processes start fast because the task's module needs no zarr (pipeline/build/worker.py)."""
    code = "import sys, celebamask.build.worker, celebamask.store.chunks; sys.exit('zarr' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_damaged_chunk_is_reported_not_decoded(synthetic_source: Path, tmp_path: Path) -> None:
    built = _build(synthetic_source, tmp_path / "s.zarr", "lossless")
    shard = next(p for p in (built / "label" / "c").rglob("*") if p.is_file())
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF  # inside the first chunk
    shard.write_bytes(bytes(data))
    store = open_store(built)
    first_row = int(shard.relative_to(built / "label" / "c").parts[0]) * 4
    with pytest.raises(CelebaMaskError, match="crc32c") as caught:
        store[first_row]
    assert caught.value.path == str(shard)
    with pytest.raises(CelebaMaskError, match="crc32c"):
        store.batch(first_row, first_row + 1)
    with pytest.raises(ValueError, match="checksum"):  # plain zarr refuses it too
        zarr.open_group(built, mode="r")["label"][first_row]


def test_unwritten_shards_read_as_fill(synthetic_source: Path, tmp_path: Path) -> None:
    from celebamask.config import load_config
    from celebamask.store.layout import create_store

    create_store(tmp_path / "empty.zarr", [0, 1, 2], load_config("default"), 2, {})
    store = open_store(tmp_path / "empty.zarr", allow_incomplete=True)
    assert (store[2]["label"] == 255).all() and (store[0]["image"] == 0).all()
    assert (store.batch(0, 3)["label"] == 255).all()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_workers_reuse_freed_memory_instead_of_faulting_in_new_pages() -> None:
    """Each sample's arrays (here 2 MB, like a label map widened to int64) come back from the heap:
    without the setting glibc maps and unmaps them, touching fresh pages every time."""
    code = (
        "import resource, sys, numpy as np\n"
        "from celebamask.build.worker import reuse_freed_memory\n"
        "if sys.argv[1] == 'reuse': reuse_freed_memory()\n"
        "np.ones(1 << 18)\n"  # a first allocation and free of that size
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(50): np.ones(1 << 18)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    faults = {mode: int(subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("default", "reuse")}
    assert faults["reuse"] < 50 <= faults["default"], faults
