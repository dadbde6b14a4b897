"""Never lose work, never lie: resume after SIGKILL, the catalogue of bad inputs, skip mode, verify, zip."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from PIL import Image

from celebamask import open_store
from celebamask.build.orchestrator import build_store
from celebamask.cli import main
from celebamask.errors import CelebaMaskError
from celebamask.synth.generate import generate_zip
from tests.reference import reference_label

MASKS = "CelebAMask-HQ-mask-anno/0"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def arrays_of(store: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(store, mode="r")
    return {name: np.asarray(array[:]) for name, array in group.arrays() if name != "shard_done"}


def assert_same_arrays(a: Path, b: Path) -> None:
    left, right = arrays_of(a), arrays_of(b)
    assert sorted(left) == sorted(right)
    for name in left:
        np.testing.assert_array_equal(left[name], right[name], err_msg=name)


@pytest.fixture(scope="module")
def clean_build(synthetic_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("clean") / "clean.zarr"
    build_store(synthetic_source, store, jobs=2, shard_size=2)
    return store


# --------------------------------------------------------------------------- resume


def shards_recorded(store: Path) -> int:
    folder = store / "shard_done" / "c"
    return sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".partial")) if folder.exists() else 0


@pytest.mark.parametrize("kill_after_shards", [0, 3, 8])
def test_sigkill_then_resume_equals_an_uninterrupted_build(
    synthetic_source: Path, clean_build: Path, tmp_path: Path, kill_after_shards: int
) -> None:
    store = tmp_path / "killed.zarr"
    command = [sys.executable, "-m", "celebamask.cli", "build", str(synthetic_source), str(store),
               "--shard-size", "2", "--jobs", "2", "--quiet"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (store / "zarr.json").exists() and shards_recorded(store) >= kill_after_shards:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the build finished before it could be killed; make the source bigger"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert zarr.open_group(store, mode="r").attrs["complete"] is False
    with pytest.raises(CelebaMaskError, match="incomplete"):
        open_store(store)

    result = run("build", synthetic_source, store, "--shard-size", "2", "--jobs", "2", "--resume", "--quiet")
    assert result.exit_code == 0, result.output
    assert zarr.open_group(store, mode="r").attrs["complete"] is True
    assert_same_arrays(store, clean_build)
    assert not list(store.rglob("*.partial"))


def _crashing_build(source: Path, store: Path, crash_at: int, mode: str) -> subprocess.CompletedProcess[str]:
    """The build of tests/crash_at.py: in one process, SIGKILLed at its ``crash_at``-th store write."""
    command = [sys.executable, "-m", "tests.crash_at", "build", str(source), str(store),
               "--shard-size", "8", "--jobs", "1", "--quiet"]
    env = {**os.environ, "CRASH_AT": str(crash_at), "CRASH_MODE": mode}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="module")
def store_writes(synthetic_source: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Every store write of a build (shard size 8, one job), in order, as keys inside the store."""
    store = tmp_path_factory.mktemp("writes") / "s.zarr"
    done = _crashing_build(synthetic_source, store, 0, "before")
    assert done.returncode == 0, done.stderr
    return [os.path.relpath(line[len("write "):], store) for line in done.stderr.splitlines() if line.startswith("write ")]


# Moments to be killed at: (the write, counted from 1, or the key of its first write; mode).
# "mid": the write's temporary file is whole on disk but not yet renamed into place.
CRASH_MOMENTS = {
    "store folder made, nothing written yet": (1, "before"),
    "first metadata file half written": (1, "mid"),
    "arrays being created": ("label/zarr.json", "mid"),
    "shard record being created": ("shard_done/zarr.json", "mid"),
    "a shard half written": ("label/c/1/0/0", "mid"),
    "a shard written, not yet recorded": ("shard_done/c/1", "before"),
    "final metadata write": (-1, "mid"),
}


@pytest.mark.parametrize("moment", list(CRASH_MOMENTS))
def test_killed_at_any_write_then_resume_equals_an_uninterrupted_build(
    synthetic_source: Path, built_store: Path, store_writes: list[str], tmp_path: Path, moment: str
) -> None:
    where, mode = CRASH_MOMENTS[moment]
    position = store_writes.index(where) + 1 if isinstance(where, str) else where % (len(store_writes) + 1)
    store = tmp_path / "killed.zarr"
    crashed = _crashing_build(synthetic_source, store, position, mode)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    group_file = store / "zarr.json"
    assert not group_file.exists() or json.loads(group_file.read_text())["attributes"]["complete"] is False
    if (store / "shard_done" / "zarr.json").exists():  # verify names what is unfinished, and only that
        problems = run("verify", store, "--quiet").output.strip().splitlines()[:-1]
        assert problems and all("store is not complete" in line or "were never finished" in line for line in problems), problems

    result = run("build", synthetic_source, store, "--shard-size", "8", "--jobs", "1", "--resume", "--quiet")
    assert result.exit_code == 0 and result.output.startswith("built "), result.output  # not "already complete"
    assert zarr.open_group(store, mode="r").attrs["complete"] is True
    assert_same_arrays(store, built_store)
    assert not list(store.rglob("*.partial"))
    assert run("verify", store, "--quiet").exit_code == 0


def test_resume_refuses_different_options_and_names_them(synthetic_source: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    group_path = store / "zarr.json"
    build_store(synthetic_source, store, jobs=1, shard_size=4, limit=8)
    attrs = json.loads(group_path.read_text())
    attrs["attributes"]["complete"] = False
    group_path.write_text(json.dumps(attrs))
    for extra, named in ((["--config", "official"], "config 'default'"), (["--shard-size", "2"], "--shard-size 4 vs 2"),
                         (["--limit", "6"], "--limit 8 vs 6")):
        args = ["--shard-size", "4", "--limit", "8", *extra]
        before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
        result = run("build", synthetic_source, store, "--jobs", "1", "--resume", "--quiet", *args[:0], *_dedupe(args))
        assert result.exit_code == 1
        assert named in result.output and "cannot resume" in result.output
        assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before


def _dedupe(args: list[str]) -> list[str]:
    """Later options win, as on a command line; keep only the last value of each."""
    values: dict[str, str] = {}
    for flag, value in zip(args[::2], args[1::2]):
        values[flag] = value
    return [item for pair in values.items() for item in pair]


def test_resume_of_a_complete_store_changes_nothing(synthetic_source: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    build_store(synthetic_source, store, jobs=1, limit=3)
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    result = run("build", synthetic_source, store, "--limit", "3", "--resume", "--quiet")
    assert result.exit_code == 0 and "already complete" in result.output
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before


def test_existing_store_untouched_without_flags(synthetic_source: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    build_store(synthetic_source, store, jobs=1, limit=2)
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    result = run("build", synthetic_source, store, "--quiet")
    assert result.exit_code == 1 and "already exists" in result.output
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("damage", ["not the dataset", "malformed annotation line"])
def test_overwrite_keeps_the_old_store_when_the_source_is_unusable(
    synthetic_source: Path, source_copy: Path, tmp_path: Path, damage: str
) -> None:
    store = tmp_path / "s.zarr"
    build_store(synthetic_source, store, jobs=1, limit=2)
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    if damage == "not the dataset":
        source, complaint = tmp_path / "holiday-photos", "not a CelebAMask-HQ download"
        source.mkdir()
    else:
        source, complaint = source_copy, "CelebA-HQ-to-CelebA-mapping.txt:3: orig_idx is not an integer"
        mapping = source / "CelebA-HQ-to-CelebA-mapping.txt"
        lines = mapping.read_text().splitlines()
        lines[2] = "1 one 000002.jpg"
        mapping.write_text("\n".join(lines) + "\n")
    result = run("build", source, store, "--overwrite", "--quiet")
    assert result.exit_code == 1 and complaint in result.output, result.output
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before


# --------------------------------------------------------------------------- the catalogue


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _without_iend(png: bytes) -> bytes:
    assert png[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the closing chunk every PNG ends with
    return png[:-12]


def png_of_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_of_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 60, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


CATALOGUE = {
    # case: (damage(root) -> the file that must be named, complaint)
    "jpeg that is not a jpeg": (lambda r: _replace(r / "CelebA-HQ-img/4.jpg", b"<html>not a photo</html>"), "not a JPEG"),
    "truncated jpeg": (lambda r: _replace(r / "CelebA-HQ-img/4.jpg", truncated((r / "CelebA-HQ-img/4.jpg").read_bytes())),
                       "cannot decode JPEG"),
    "jpeg cut before its end marker": (lambda r: _replace(r / "CelebA-HQ-img/4.jpg", (r / "CelebA-HQ-img/4.jpg").read_bytes()[:-2]),
                                       "truncated"),
    "png cut between chunks": (lambda r: _replace(r / MASKS / "00004_skin.png", _without_iend((r / MASKS / "00004_skin.png").read_bytes())),
                               "truncated"),
    "truncated png": (lambda r: _replace(r / MASKS / "00004_skin.png", truncated((r / MASKS / "00004_skin.png").read_bytes())),
                      "cannot decode PNG"),
    "zero-byte file": (lambda r: _replace(r / MASKS / "00004_hair.png", b""), "empty file"),
    "mask of the wrong size": (lambda r: _replace(r / MASKS / "00004_skin.png", png_of_size(256, 256)), "expected 512x512"),
    "image not square": (lambda r: _replace(r / "CelebA-HQ-img/4.jpg", jpeg_of_size(1024, 768)), "not square"),
    "unknown class suffix": (lambda r: _replace(r / MASKS / "00004_beard.png", png_of_size(512, 512)), "unknown class 'beard'"),
    "mask with no image": (lambda r: _delete(r / "CelebA-HQ-img/4.jpg", r / MASKS / "00004_skin.png"), "mask with no image"),
    "image with no masks": (lambda r: _delete_masks(r, 4), "image with no masks"),
    "malformed annotation line": (lambda r: _spoil_attribute_line(r, 4), "5_o_Clock_Shadow is '2'; attribute values are 1 or -1"),
}


def _replace(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _delete(path: Path, named: Path) -> Path:
    path.unlink()
    return named.parent


def _spoil_attribute_line(root: Path, index: int) -> Path:
    """The first attribute of ``index``.jpg becomes 2; returns 'file:line' (count and names come first)."""
    path = root / "CelebAMask-HQ-attribute-anno.txt"
    lines = path.read_text().splitlines()
    line = 2 + index + 1
    fields = lines[line - 1].split()
    assert fields[0] == f"{index}.jpg"
    lines[line - 1] = " ".join([fields[0], "2", *fields[2:]])
    path.write_text("\n".join(lines) + "\n")
    return Path(f"{path}:{line}")


def _delete_masks(root: Path, index: int) -> Path:
    for mask in (root / MASKS).glob(f"{index:05d}_*.png"):
        mask.unlink()
    return root / f"CelebA-HQ-img/{index}.jpg"


@pytest.mark.parametrize("case", sorted(CATALOGUE))
def test_catalogue_fails_with_the_file_named_then_skip_completes(source_copy: Path, tmp_path: Path, case: str) -> None:
    damage, complaint = CATALOGUE[case]
    named = damage(source_copy)
    store = tmp_path / "s.zarr"
    result = run("build", source_copy, store, "--jobs", "1", "--shard-size", "4", "--limit", "8", "--quiet")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and complaint in lines[0], result.output
    assert str(named) in lines[0]
    if store.exists():
        assert zarr.open_group(store, mode="r").attrs["complete"] is False

    skipped = run("build", source_copy, tmp_path / "skip.zarr", "--jobs", "1", "--shard-size", "4",
                  "--limit", "8", "--on-error", "skip", "--quiet")
    assert skipped.exit_code == 0, skipped.output
    opened = open_store(tmp_path / "skip.zarr")
    entries = opened.attrs["skipped"]
    assert any(complaint in e["error"] and str(named) in e["path"] for e in entries)
    valid = np.asarray(opened.group["valid"][:])
    ids = list(opened.sample_ids[:])
    if 4 in ids:  # the damaged sample has a row unless its image is gone
        row = ids.index(4)
        assert not valid[row] and (opened.labels[row] == 255).all() and not opened.images[row].any()
        assert not opened.group["class_area"][row].any() and not opened.group["class_present"][row].any()
        assert sum(valid) == len(ids) - 1
        assert opened.class_statistics()["skipped"] == 1
    else:
        assert valid.all() and any(e["sample"] is None for e in entries)
    info = run("info", tmp_path / "skip.zarr")
    assert "skipped:   1" in info.output and complaint in info.output


def test_source_that_is_not_the_dataset(tmp_path: Path) -> None:
    (tmp_path / "holiday-photos").mkdir()
    result = run("build", tmp_path / "holiday-photos", tmp_path / "s.zarr", "--quiet")
    assert result.exit_code == 1
    assert "looked for CelebA-HQ-img/ and CelebAMask-HQ-mask-anno/" in result.output
    assert not (tmp_path / "s.zarr").exists()


def test_output_path_that_cannot_be_written(synthetic_source: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run("build", synthetic_source, blocker / "s.zarr", "--quiet")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert str(blocker / "s.zarr") in result.output and "cannot create store" in result.output


def test_disk_full_is_clear_and_resumable(synthetic_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          clean_build: Path) -> None:
    from zarr.storage import LocalStore

    real_set = LocalStore.set
    writes = {"count": 0}

    async def set_until_full(self, key, value):  # type: ignore[no-untyped-def]
        if key.startswith("image/c/"):
            writes["count"] += 1
            if writes["count"] > 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return await real_set(self, key, value)

    import celebamask.store.chunks

    real_write_file = celebamask.store.chunks.write_file

    def write_file_until_full(path, parts):  # type: ignore[no-untyped-def]  # the direct shard writer
        if f"{os.sep}image{os.sep}c{os.sep}" in path:
            writes["count"] += 1
            if writes["count"] > 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_file(path, parts)

    monkeypatch.setattr(LocalStore, "set", set_until_full)
    monkeypatch.setattr(celebamask.store.chunks, "write_file", write_file_until_full)
    store = tmp_path / "full.zarr"
    result = run("build", synthetic_source, store, "--jobs", "1", "--shard-size", "2", "--quiet")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and str(store) in lines[0]
    assert zarr.open_group(store, mode="r").attrs["complete"] is False

    monkeypatch.setattr(LocalStore, "set", real_set)
    monkeypatch.setattr(celebamask.store.chunks, "write_file", real_write_file)
    resumed = run("build", synthetic_source, store, "--jobs", "1", "--shard-size", "2", "--resume", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert_same_arrays(store, clean_build)


@pytest.mark.parametrize("full_at", ["label/zarr.json", "shard_done/c/1", "zarr.json"])
def test_disk_full_while_writing_metadata_is_clear_and_resumable(
    synthetic_source: Path, built_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full_at: str
) -> None:
    """The disk fills while the store's arrays are created, a shard is recorded, or it is marked complete."""
    from zarr.storage import LocalStore

    real_set = LocalStore.set

    async def set_until_full(self, key, value):  # type: ignore[no-untyped-def]
        if key == full_at and (key != "zarr.json" or b'"complete": true' in value.to_bytes()):
            raise OSError(errno.ENOSPC, "No space left on device")
        return await real_set(self, key, value)

    monkeypatch.setattr(LocalStore, "set", set_until_full)
    store = tmp_path / "full.zarr"
    result = run("build", synthetic_source, store, "--jobs", "1", "--shard-size", "8", "--quiet")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {store}: cannot write ") and lines[0].endswith(
        ": No space left on device"), result.output
    assert json.loads((store / "zarr.json").read_text())["attributes"]["complete"] is False

    monkeypatch.setattr(LocalStore, "set", real_set)
    resumed = run("build", synthetic_source, store, "--jobs", "1", "--shard-size", "8", "--resume", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert_same_arrays(store, built_store)


def test_a_bad_sample_met_by_parallel_workers_gives_one_line(source_copy: Path, tmp_path: Path) -> None:
    """Two worker processes, many shards, the bad sample in a late one: the output is the error line
    alone (no warnings from workers killed mid-shard), the shards built meanwhile are kept, and the
    store resumes once the file is fixed."""
    mask = source_copy / MASKS / "00016_skin.png"
    good = mask.read_bytes()
    mask.write_bytes(truncated(good))
    command = [sys.executable, "-m", "celebamask.cli", "build", str(source_copy), "", "--shard-size", "2", "--jobs", "2", "--quiet"]
    for attempt in range(3):  # what it guards against happened in about half the runs
        store = tmp_path / f"s{attempt}.zarr"
        command[5] = str(store)
        failed = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert failed.returncode == 1
        assert (failed.stdout + failed.stderr).strip().splitlines() == [
            f"error: {mask}: cannot decode PNG: file ends inside its IDAT chunk"]
    done = np.asarray(zarr.open_group(store, mode="r")["shard_done"][:])
    assert not done[16 // 2] and done.sum() >= 1
    mask.write_bytes(good)
    assert run("build", source_copy, store, "--shard-size", "2", "--jobs", "2", "--resume", "--quiet").exit_code == 0
    assert run("verify", store, "--source", source_copy, "--samples", "24", "--quiet").exit_code == 0


# --------------------------------------------------------------------------- verify and zip


def test_verify_passes_a_good_store_and_catches_a_flipped_byte(synthetic_source: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    build_store(synthetic_source, store, jobs=1, shard_size=4, limit=8)
    good = run("verify", store, "--source", synthetic_source, "--samples", "3", "--quiet")
    assert good.exit_code == 0, good.output
    shard = store / "image" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x01
    shard.write_bytes(bytes(data))
    bad = run("verify", store, "--quiet")
    assert bad.exit_code == 1
    assert any("image" in line and "shard 1" in line and "checksum" in line for line in bad.output.splitlines())


def _flip(offset: Callable[[int], int]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[offset(len(data))] ^= 0x01
        path.write_bytes(bytes(data))
    return damage


def _swap(old: bytes, new: bytes) -> Callable[[Path], None]:
    """One byte of a metadata file changed (old and new differ in one byte, one bit)."""
    def damage(path: Path) -> None:
        text = path.read_bytes()
        assert text.count(old) == 1 and len(old) == len(new) and sum(a != b for a, b in zip(old, new)) == 1
        path.write_bytes(text.replace(old, new))
    return damage


VERIFY_DAMAGE = {
    # case: (file in the store, damage, what the problem line names)
    "byte in a label shard's index": ("label/c/1/0/0", _flip(lambda n: n - 10), "label: shard 1"),
    "byte in an annotation array": ("attributes/c/0/0", _flip(lambda n: n // 2), "attributes"),
    "byte in a row array": ("valid/c/1", _flip(lambda n: n // 2), "valid"),
    "class name in the group metadata": ("zarr.json", _swap(b'"name": "hair"', b'"name": "hais"'), "metadata"),
    "attribute name in array metadata": ("attributes/zarr.json", _swap(b'"Eyeglasses"', b'"Eyeglasres"'), "metadata"),
    "fill value in array metadata": ("sample_id/zarr.json", _swap(b'"fill_value": -1', b'"fill_value": -0'), "metadata"),
    "array metadata no longer JSON": ("label/zarr.json", _flip(lambda n: 0), "label/zarr.json"),
    "a shard file lost": ("image/c/1/0/0/0", lambda path: path.unlink(), "image: 1 of 2 chunk files are missing"),
}


@pytest.mark.parametrize("case", list(VERIFY_DAMAGE))
def test_verify_catches_damage_anywhere(synthetic_source: Path, tmp_path: Path, case: str) -> None:
    store = tmp_path / "s.zarr"
    build_store(synthetic_source, store, jobs=1, shard_size=4, limit=8)
    assert run("verify", store, "--quiet").exit_code == 0
    name, damage, named = VERIFY_DAMAGE[case]
    damage(store / name)
    result = run("verify", store, "--quiet")
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == f"{store}: {len(lines) - 1} problem(s)" and all(line.startswith("problem: ") for line in lines[:-1])
    assert any(named in line for line in lines[:-1]), result.output


def test_verify_with_source_catches_a_wrong_label(synthetic_source: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    build_store(synthetic_source, store, jobs=1, shard_size=4, limit=4)
    labels = zarr.open_group(store, mode="r+")["label"]
    wrong = np.asarray(labels[2]).copy()
    wrong[:10, :10] = 0 if wrong[0, 0] != 0 else 1
    labels[2] = wrong
    result = run("verify", store, "--source", synthetic_source, "--samples", "4", "--quiet")
    assert result.exit_code == 1 and "row 2 (sample 2) differs from the source in 100 pixels" in result.output


def test_verify_reports_an_incomplete_store(synthetic_source: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    build_store(synthetic_source, store, jobs=1, limit=2)
    zarr.open_group(store, mode="r+").update_attributes({"complete": False})
    result = run("verify", store, "--quiet")
    assert result.exit_code == 1 and "not complete" in result.output


def test_zip_source_builds_the_same_store_as_the_folder(tmp_path: Path) -> None:
    archive = generate_zip(tmp_path / "CelebAMask-HQ.zip", 6, seed=5, jobs=1)
    folder = tmp_path / "extracted"
    import zipfile

    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(folder)
    from_zip = build_store(archive, tmp_path / "zip.zarr", jobs=2, shard_size=4)
    from_folder = build_store(folder, tmp_path / "folder.zarr", jobs=2, shard_size=4)
    assert_same_arrays(Path(from_zip.store), Path(from_folder.store))
    np.testing.assert_array_equal(open_store(from_zip.store).labels[5], reference_label(folder / "CelebAMask-HQ", 5, "default"))
    assert open_store(from_zip.store).provenance["source"]["is_zip"] is True


def test_a_zip_cut_short_is_named_as_such(tmp_path: Path) -> None:
    archive = generate_zip(tmp_path / "CelebAMask-HQ.zip", 2, seed=5, jobs=1)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])  # a download that stopped
    result = run("build", cut, tmp_path / "s.zarr", "--quiet")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: {cut}: zip archive is truncated (no central directory at "
                                                  "its end): an incomplete download?"]
    assert not (tmp_path / "s.zarr").exists()


def test_verify_passes_a_store_whose_annotation_rows_are_all_skipped(source_copy: Path, tmp_path: Path) -> None:
    """Chunks holding nothing but fill values are still stored, so verify finds every chunk file."""
    named = _spoil_attribute_line(source_copy, 0)
    store = tmp_path / "s.zarr"
    assert run("build", source_copy, store, "--limit", "1", "--on-error", "skip", "--quiet").exit_code == 0
    group = zarr.open_group(store, mode="r")
    assert (np.asarray(group["attributes"][:]) == -1).all() and not np.asarray(group["valid"][:]).any()
    assert [entry["path"] for entry in group.attrs["skipped"]] == [str(named)]
    result = run("verify", store, "--quiet")
    assert result.exit_code == 0, result.output
