"""verify on damaged stores: every kind of damage is a listed problem naming what is wrong, exit 1,
never a traceback, and never a second problem that only follows from the first."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from celebamask.cli import main

CHUNKS_PER_LABEL_SHARD = 8  # built_store: shard size 8, one row per chunk


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _damaged_copy(built_store: Path, tmp_path: Path) -> Path:
    store = tmp_path / "d.zarr"
    shutil.copytree(built_store, store)
    return store


def _problems(store: Path) -> list[str]:
    result = run("verify", store, "--quiet")
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == f"{store}: {len(lines) - 1} problem(s)", result.output
    assert all(line.startswith("problem: ") for line in lines[:-1]), result.output
    return [line.removeprefix("problem: ") for line in lines[:-1]]


def _claim_huge_length(path: Path) -> None:
    """Rewrite the shard's index (at its end, 16 bytes per chunk and a crc32c) so that chunk 0
    claims 2**40 bytes, with a correct checksum: only a bounds check can tell."""
    data = bytearray(path.read_bytes())
    size = CHUNKS_PER_LABEL_SHARD * 16
    entries = np.frombuffer(bytes(data[-size - 4:-4]), dtype="<u8").reshape(-1, 2).copy()
    entries[0, 1] = 2**40
    body = entries.tobytes()
    data[-size - 4:] = body + google_crc32c.value(body).to_bytes(4, "little")
    path.write_bytes(bytes(data))


SHARD_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "shorter than its index": (lambda p: p.write_bytes(p.read_bytes()[:100]), "is truncated (100 bytes"),
    "cut at the end": (lambda p: p.write_bytes(p.read_bytes()[:-10]), "has a damaged index"),
    "index claiming a huge length": (_claim_huge_length, "has an impossible index: chunk 0 at bytes"),
}


@pytest.mark.parametrize("case", list(SHARD_DAMAGE))
def test_a_damaged_label_shard_is_one_problem_naming_the_file(built_store: Path, tmp_path: Path, case: str) -> None:
    store = _damaged_copy(built_store, tmp_path)
    damage, expected = SHARD_DAMAGE[case]
    damage(store / "label" / "c" / "1" / "0" / "0")
    problems = _problems(store)
    # one problem: the valid-row count, the masks and the class counts of that shard are not
    # reported again as if the rows were wrong
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{store}/label: shard 1 (rows 8-15): file label/c/1/0/0 {expected}"), problems


@pytest.mark.parametrize("name", ["valid/c/0", "sample_id/c/0", "shard_done/c/1", "image/c/2/0/0/0", "masks/c/0/0/0"])
def test_an_empty_file_of_any_array_is_reported(built_store: Path, tmp_path: Path, name: str) -> None:
    store = _damaged_copy(built_store, tmp_path)
    (store / name).write_bytes(b"")
    problems = _problems(store)
    assert len(problems) == 1 and f"file {name} is empty (0 bytes)" in problems[0], problems


MALFORMED = {
    "size": "big",
    "shard_size": 0,
    "provenance": [],
    "classes": [{"id": "a", "name": "skin"}],
    "skipped": [1],
    "background": None,
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_attribute_is_a_problem_not_a_traceback(built_store: Path, tmp_path: Path, name: str) -> None:
    store = _damaged_copy(built_store, tmp_path)
    zarr.open_group(store, mode="r+").update_attributes({name: MALFORMED[name]})
    problems = _problems(store)
    shown = json.dumps(MALFORMED[name])
    assert f"{store}: attribute {name} is malformed: {shown}, expected" in problems[0], problems
    # the edit is also seen by the metadata checksum; nothing else is wrong with the store
    assert problems[1:] == [f"{store}: metadata (its zarr.json files) differ from what the build recorded: "
                            "damaged, or edited after the build"], problems


def test_a_class_table_that_is_not_a_list_still_verifies_the_shards(built_store: Path, tmp_path: Path) -> None:
    store = _damaged_copy(built_store, tmp_path)
    zarr.open_group(store, mode="r+").update_attributes({"classes": "x"})
    (store / "valid" / "c" / "2").write_bytes(b"")
    problems = _problems(store)
    assert any("attribute classes is malformed" in p for p in problems)
    assert any("file valid/c/2 is empty" in p for p in problems)


@pytest.mark.parametrize("make", ["empty folder", "other files", "plain zarr group", "an array of the store", "missing"])
def test_verify_on_something_that_is_not_a_store_is_one_error_line(built_store: Path, tmp_path: Path, make: str) -> None:
    path = tmp_path / "thing"
    expected = "not a celebamask store"
    if make == "empty folder":
        path.mkdir()
    elif make == "other files":
        path.mkdir()
        (path / "notes.txt").write_text("mine")
    elif make == "plain zarr group":
        zarr.open_group(path, mode="w").create_array("x", shape=(3,), dtype="i4")
    elif make == "an array of the store":
        path = built_store / "label"
    else:
        expected = "does not exist"
    result = run("verify", path)  # no --quiet: not even a progress line may come first
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"error: {path}: {expected}"], result.output


def test_samples_without_source_compare_with_the_recorded_source(built_store: Path, synthetic_source: Path,
                                                                 tmp_path: Path) -> None:
    store = _damaged_copy(built_store, tmp_path)
    labels = zarr.open_group(store, mode="r+")["label"]
    wrong = np.asarray(labels[5]).copy()
    wrong[:4, :5] = 0 if wrong[0, 0] != 0 else 1
    labels[5] = wrong  # masks no longer paint it either, but only the source comparison counts pixels
    result = run("verify", store, "--samples", "24", "--quiet")
    assert result.exit_code == 1
    assert f"{store}/label: row 5 (sample 5) differs from the source in 20 pixels" in result.output, result.output
    good = run("verify", built_store, "--samples", "3", "--quiet")
    assert good.exit_code == 0 and f"3 random valid samples (or all, if fewer) match the source {synthetic_source}" \
        in good.output, good.output


def test_samples_without_source_when_the_recorded_source_is_gone(built_store: Path, tmp_path: Path) -> None:
    store = _damaged_copy(built_store, tmp_path)
    group = zarr.open_group(store, mode="r+")
    provenance = dict(group.attrs["provenance"])
    gone = str(tmp_path / "moved-away")
    provenance["source"] = {**provenance["source"], "location": gone}
    group.update_attributes({"provenance": provenance})
    result = run("verify", store, "--samples", "2")
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"error: {gone}: the store's recorded source is not there; "
                                          "pass --source SRC with --samples"], result.output


@pytest.mark.parametrize("name", ["masks", "flags", "class_area", "class_present_unpainted", "label"])
def test_an_array_whose_metadata_was_lost_is_named(built_store: Path, tmp_path: Path, name: str) -> None:
    """A lost zarr.json hides the array from zarr (its chunks then read as nothing at all): verify
    names the array, besides the metadata checksum that no longer matches."""
    store = _damaged_copy(built_store, tmp_path)
    (store / name / "zarr.json").unlink()
    problems = _problems(store)
    assert f"{store}/{name}: array is missing" in problems, problems
    assert problems[0].startswith(f"{store}: metadata (its zarr.json files) differ"), problems


METADATA_EDITS = {  # array -> (edit of its zarr.json, the problem verify must name)
    "valid": (lambda meta: meta.update(data_type="uint8", fill_value=0), "valid: data type uint8, expected bool"),
    "image": (lambda meta: meta.update(data_type="int8"), "image: data type int8, expected uint8"),
    "sample_id": (lambda meta: meta.update(shape=[meta["shape"][0] // 2]), "sample_id: shape (12,), expected (24,)"),
    "attributes": (lambda meta: meta["shape"].__setitem__(0, 99), "attributes: 99 rows, expected 24"),
}


@pytest.mark.parametrize("name", list(METADATA_EDITS))
def test_an_array_whose_metadata_says_another_shape_or_type_is_a_problem(built_store: Path, tmp_path: Path,
                                                                         name: str) -> None:
    store = _damaged_copy(built_store, tmp_path)
    edit, expected = METADATA_EDITS[name]
    path = store / name / "zarr.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    problems = _problems(store)
    assert f"{store}/{expected}" in problems, problems


@pytest.mark.parametrize(("name", "dtype"), [("image", "int8"), ("label", "int16"), ("valid", "uint8")])
def test_readers_refuse_a_store_whose_arrays_metadata_says_another_type(built_store: Path, tmp_path: Path,
                                                                         name: str, dtype: str) -> None:
    """open_store (and so info, stats, preview, score, torch) would read int8 pixels or the like."""
    from celebamask import open_store
    from celebamask.errors import CelebaMaskError

    store = _damaged_copy(built_store, tmp_path)
    path = store / name / "zarr.json"
    meta = json.loads(path.read_text())
    meta.update(data_type=dtype, fill_value=0)
    path.write_text(json.dumps(meta))
    with pytest.raises(CelebaMaskError, match=f"store is damaged: {name} is {dtype}, not "):
        open_store(store)
    result = run("stats", store)
    assert result.exit_code == 1 and result.output.startswith(f"error: {store}: store is damaged"), result.output


@pytest.mark.parametrize("damage", ["group zarr.json cut", "label with an extra dimension"])
def test_readers_name_the_store_when_its_metadata_cannot_be_read(built_store: Path, tmp_path: Path,
                                                                 damage: str) -> None:
    from celebamask import open_store
    from celebamask.errors import CelebaMaskError

    store = _damaged_copy(built_store, tmp_path)
    if damage == "group zarr.json cut":
        path = store / "zarr.json"
        path.write_text(path.read_text()[:40])
    else:
        path = store / "label" / "zarr.json"
        meta = json.loads(path.read_text())
        meta["shape"].append(2)
        path.write_text(json.dumps(meta))
    with pytest.raises(CelebaMaskError, match="store is damaged: .* cannot be read"):
        open_store(store)
    for command in ("stats", "info"):
        result = run(command, store)
        assert result.exit_code == 1 and result.output.startswith(f"error: {store}: store is damaged"), result.output
