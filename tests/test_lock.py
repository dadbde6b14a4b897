"""One writer per store, and what --overwrite and --resume may touch: the lock refuses a second
build naming its holder, a stale lock is recognised, --break-lock breaks only what is safe to
break; --overwrite replaces only a celebamask store; resume re-checks shards and source files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import types
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
from celebamask.store.location import as_target
from celebamask.store.lock import new_build_id, store_lock


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def files_of(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def lock_file(store: Path) -> Path:
    return store.with_name(store.name + ".lock")


def write_lock(store: Path, pid: int, host: str) -> None:
    owner = {"pid": pid, "host": host, "started": "2026-01-01T00:00:00+00:00", "build_id": "x", "process_start": None}
    lock_file(store).write_text(json.dumps(owner))


def dead_pid() -> int:
    """A pid that certainly ran on this host and is gone (its process was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def mark_incomplete(store: Path, unfinished: int | None = None) -> None:
    """What a build killed after its first shards leaves: not complete, ``unfinished`` not recorded."""
    group = zarr.open_group(store, mode="r+")
    group.attrs["complete"] = False
    if unfinished is not None:
        group["shard_done"][unfinished] = False


@pytest.fixture
def complete_store(synthetic_source: Path, tmp_path: Path) -> Path:
    store = tmp_path / "s.zarr"
    build_store(synthetic_source, store, jobs=1, shard_size=4, limit=8)
    return store


# --------------------------------------------------------------------------- the lock


@pytest.mark.parametrize("mode", [[], ["--resume"], ["--overwrite"]])
def test_a_live_lock_refuses_any_second_build_naming_the_holder(
    synthetic_source: Path, complete_store: Path, mode: list[str]
) -> None:
    mark_incomplete(complete_store, unfinished=1)
    before = files_of(complete_store)
    store = complete_store
    with store_lock(as_target(store), new_build_id()):  # this process is the live holder
        result = run("build", synthetic_source, store, "--shard-size", "4", "--limit", "8", "--quiet", *mode)
        assert result.exit_code == 1
        assert len(result.output.splitlines()) == 1 and result.output.startswith(
            f"error: {store}: locked by another build (pid {os.getpid()} on {socket.gethostname()}, started "
        ), result.output
        assert "wait for it to finish" in result.output and str(lock_file(store)) in result.output
        assert "--break-lock" not in result.output  # a live build on this host is never broken
        broken = run("build", synthetic_source, store, "--shard-size", "4", "--limit", "8", "--quiet",
                     "--break-lock", *mode)
        assert broken.exit_code == 1 and "locked by another build" in broken.output  # a live holder is never broken
    assert files_of(complete_store) == before
    assert not lock_file(store).exists()  # released by its holder


def test_a_stale_lock_of_a_dead_build_is_recognised_and_taken_over(
    synthetic_source: Path, complete_store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mark_incomplete(complete_store, unfinished=1)
    pid = dead_pid()
    write_lock(complete_store, pid, socket.gethostname())
    build_store(synthetic_source, complete_store, jobs=1, shard_size=4, limit=8, resume=True)
    assert f"removed the lock of a build that is no longer running (pid {pid} on" in caplog.text
    assert open_store(complete_store).complete and not lock_file(complete_store).exists()


@pytest.mark.parametrize("holder", ["another host", "unreadable"])
def test_break_lock_removes_a_lock_that_cannot_be_judged_from_here(
    synthetic_source: Path, tmp_path: Path, holder: str
) -> None:
    store = tmp_path / "s.zarr"
    if holder == "another host":
        write_lock(store, 1, "node-that-is-not-" + socket.gethostname())
    else:
        lock_file(store).write_bytes(b"\x00garbage")
    refused = run("build", synthetic_source, store, "--limit", "4", "--quiet")
    assert refused.exit_code == 1 and len(refused.output.splitlines()) == 1
    assert ("pass --break-lock" if holder == "unreadable" else "locked by another build (pid 1 on node-that") \
        in refused.output, refused.output
    assert "pass --break-lock" in refused.output  # the way out, for another host's lock too
    assert not store.exists()
    built = run("build", synthetic_source, store, "--limit", "4", "--quiet", "--break-lock")
    assert built.exit_code == 0 and built.output.startswith("built "), built.output
    assert not lock_file(store).exists() and open_store(store).complete


def test_the_lock_is_keyed_on_the_real_path_so_a_symlink_cannot_bypass_it(
    synthetic_source: Path, complete_store: Path, tmp_path: Path
) -> None:
    mark_incomplete(complete_store, unfinished=1)
    link = tmp_path / "link.zarr"
    link.symlink_to(complete_store)
    before = files_of(complete_store)
    with store_lock(as_target(complete_store), new_build_id()):
        for mode in (["--resume"], ["--overwrite"]):
            result = run("build", synthetic_source, link, "--shard-size", "4", "--limit", "8", "--quiet", *mode)
            assert result.exit_code == 1, result.output
            assert len(result.output.splitlines()) == 1 and result.output.startswith(
                f"error: {link}: locked by another build (pid {os.getpid()} on "), result.output
            assert str(lock_file(complete_store)) in result.output
        assert not lock_file(link).exists()
    assert files_of(complete_store) == before


def test_a_plain_rerun_after_a_killed_build_is_one_already_exists_line(
    synthetic_source: Path, complete_store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stale lock is not looked at before the store is refused: no takeover warning first."""
    mark_incomplete(complete_store, unfinished=1)
    write_lock(complete_store, dead_pid(), socket.gethostname())
    stale = lock_file(complete_store).read_bytes()
    result = run("build", synthetic_source, complete_store, "--shard-size", "4", "--limit", "8", "--quiet")
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"error: {complete_store}: already exists; pass --overwrite to replace it"]
    assert "removed the lock" not in caplog.text and lock_file(complete_store).read_bytes() == stale


# --------------------------------------------------------------------------- --overwrite


def test_overwrite_refuses_a_users_own_zarr_group(synthetic_source: Path, tmp_path: Path) -> None:
    theirs = tmp_path / "experiment.zarr"
    group = zarr.open_group(theirs, mode="w")
    group.create_array("weights", shape=(4,), dtype="f4")[:] = np.arange(4)
    (theirs / "notes.txt").write_text("results of March")
    before = files_of(theirs)
    result = run("build", synthetic_source, theirs, "--overwrite", "--limit", "2", "--quiet")
    assert result.exit_code == 1 and result.output.startswith(f"error: {theirs}: exists and is not a celebamask store")
    assert files_of(theirs) == before


def test_overwrite_refuses_the_source_folder_even_with_a_stray_zarr_json(source_copy: Path) -> None:
    (source_copy / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    before = files_of(source_copy)
    result = run("build", source_copy, source_copy, "--overwrite", "--limit", "2", "--quiet")
    assert result.exit_code == 1 and "holds the source" in result.output, result.output
    assert files_of(source_copy) == before
    inside = run("build", source_copy / "CelebA-HQ-img" / "..", source_copy.parent, "--overwrite", "--quiet")
    assert inside.exit_code == 1 and "holds the source" in inside.output, inside.output  # a folder containing it
    assert files_of(source_copy) == before


def test_overwrite_refuses_a_symlink_to_the_source_or_to_a_store(
    source_copy: Path, complete_store: Path, tmp_path: Path
) -> None:
    to_source, to_store = tmp_path / "link-to-source.zarr", tmp_path / "link-to-store.zarr"
    to_source.symlink_to(source_copy)
    to_store.symlink_to(complete_store)
    before_source, before_store = files_of(source_copy), files_of(complete_store)
    result = run("build", source_copy, to_source, "--overwrite", "--limit", "2", "--quiet")
    assert result.exit_code == 1 and "holds the source" in result.output, result.output
    result = run("build", source_copy, to_store, "--overwrite", "--limit", "2", "--quiet")
    assert result.exit_code == 1 and "is a symbolic link" in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1
    assert files_of(source_copy) == before_source and files_of(complete_store) == before_store
    assert to_source.is_symlink() and to_store.is_symlink()


def _put_mine(store: Path, outside: Path, what: str) -> str:
    """Put something of the user's into a store; returns how the refusal names it."""
    outside.mkdir()
    (outside / "precious.txt").write_text("kept")
    if what == "file in label/c":
        (store / "label" / "c" / "mine.txt").write_text("mine")
        return "label/c/mine.txt"
    if what == "chunk key beyond the grid":  # 2 shards at --limit 8 --shard-size 4
        (store / "label" / "c" / "7" / "0").mkdir(parents=True)
        (store / "label" / "c" / "7" / "0" / "0").write_bytes(b"not ours")
        return "label/c/7/0/0"
    if what == "chunk key of another rank":
        (store / "sample_id" / "c" / "x").write_bytes(b"not ours")
        return "sample_id/c/x"
    if what == "empty folder":
        (store / "mine").mkdir()
        return "mine/"
    if what == "top-level symlink":
        (store / "link").symlink_to(outside)
        return "link"
    (store / "label" / "c" / "link").symlink_to(outside / "precious.txt")  # a symlink inside label/c
    return "label/c/link"


@pytest.mark.parametrize("what", ["file in label/c", "chunk key beyond the grid", "chunk key of another rank",
                                  "empty folder", "top-level symlink", "symlink in label/c"])
def test_overwrite_refuses_a_store_holding_the_users_files_anywhere(
    synthetic_source: Path, complete_store: Path, tmp_path: Path, what: str
) -> None:
    """Inside an array's folder only its zarr.json and the chunk keys of its grid are the store's own."""
    named = _put_mine(complete_store, tmp_path / "outside", what)
    before = files_of(complete_store)
    links = sorted(p for p in complete_store.rglob("*") if p.is_symlink() or p.is_dir())
    result = run("build", synthetic_source, complete_store, "--limit", "4", "--overwrite", "--quiet")
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [f"error: {complete_store}: holds files that are not part of the store: "
                                          f"{named}; refusing to overwrite it"]
    assert files_of(complete_store) == before
    assert sorted(p for p in complete_store.rglob("*") if p.is_symlink() or p.is_dir()) == links
    assert (tmp_path / "outside" / "precious.txt").read_text() == "kept"
    assert len(open_store(complete_store)) == 8  # the old store, untouched


def test_overwrite_replaces_a_store_holding_only_its_own_files_and_temporaries(
    synthetic_source: Path, complete_store: Path
) -> None:
    """A killed writer's temporary beside a chunk and a chunk folder left empty are the store's own."""
    (complete_store / "label" / "c" / "0" / "0" / "0.4242.partial").write_bytes(b"half")
    for chunk in (complete_store / "label" / "c" / "1" / "0").iterdir():
        chunk.unlink()
    result = run("build", synthetic_source, complete_store, "--limit", "4", "--overwrite", "--quiet")
    assert result.exit_code == 0 and result.output.startswith("built "), result.output
    assert len(open_store(complete_store)) == 4
    assert not (complete_store / "label" / "c" / "1").exists()


# --------------------------------------------------------------------------- --resume


def test_resume_rebuilds_a_lost_shard_file_of_a_complete_store(synthetic_source: Path, complete_store: Path,
                                                               tmp_path: Path) -> None:
    expected = np.asarray(zarr.open_group(complete_store, mode="r")["label"][4:8])
    lost = complete_store / "label" / "c" / "1" / "0" / "0"
    lost.unlink()
    result = run("build", synthetic_source, complete_store, "--shard-size", "4", "--limit", "8", "--resume", "--quiet")
    assert result.exit_code == 0 and result.output.startswith("built "), result.output  # not "nothing to do"
    assert lost.exists()
    np.testing.assert_array_equal(np.asarray(zarr.open_group(complete_store, mode="r")["label"][4:8]), expected)
    again = run("build", synthetic_source, complete_store, "--shard-size", "4", "--limit", "8", "--resume", "--quiet")
    assert again.exit_code == 0 and "already complete" in again.output, again.output
    assert run("verify", complete_store, "--quiet").exit_code == 0


@pytest.mark.parametrize("unfinished", [False, True])
@pytest.mark.parametrize("name", ["label", "masks", "attributes"])
def test_resume_refuses_a_store_that_lost_an_arrays_metadata_and_overwrite_replaces_it(
    synthetic_source: Path, complete_store: Path, name: str, unfinished: bool
) -> None:
    """A lost zarr.json hides its array from zarr: a resume must not call the store up to date,
    nor build on without that array; --overwrite still takes the store (its orphaned chunk files
    are its own), and the store it builds is the clean one."""
    clean = zarr.open_group(complete_store, mode="r")
    expected = {key: np.asarray(clean[key][:]) for key in ("label", "masks", "attributes")}
    (complete_store / name / "zarr.json").unlink()
    if unfinished:
        mark_incomplete(complete_store, unfinished=1)
    options = ("--shard-size", "4", "--limit", "8", "--quiet")
    result = run("build", synthetic_source, complete_store, *options, "--resume")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--overwrite" in lines[0], result.output
    if unfinished:
        assert f"{complete_store}/{name}: array is missing" in lines[0], lines[0]
    else:
        assert "is marked complete, but its metadata" in lines[0], lines[0]
    replaced = run("build", synthetic_source, complete_store, *options, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    store = zarr.open_group(complete_store, mode="r")
    for key, values in expected.items():
        np.testing.assert_array_equal(np.asarray(store[key][:]), values, err_msg=key)
    assert run("verify", complete_store, "--quiet").exit_code == 0


def test_overwrite_still_refuses_a_users_file_among_orphaned_chunks(synthetic_source: Path,
                                                                     complete_store: Path) -> None:
    """Only chunk keys (c/<digits>/...) of an array a build creates count as the store's own."""
    (complete_store / "label" / "zarr.json").unlink()
    mine = complete_store / "label" / "c" / "notes.txt"
    mine.write_text("mine")
    result = run("build", synthetic_source, complete_store, "--limit", "4", "--overwrite", "--quiet")
    assert result.exit_code == 1 and "label/c/notes.txt" in result.output, result.output
    assert mine.read_text() == "mine"


def _damage(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    else:  # cut to half its bytes: passes a size check, fails its crc32c
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.parametrize("unfinished", [False, True])
@pytest.mark.parametrize(("name", "how"), [("attributes", "missing"), ("pose", "truncated"), ("flags", "empty"),
                                           ("sample_id", "missing"), ("celeba_file", "truncated"), ("split", "empty")])
def test_resume_rewrites_a_damaged_chunk_of_the_coordinators_arrays(
    synthetic_source: Path, complete_store: Path, name: str, how: str, unfinished: bool
) -> None:
    """Arrays written when the store was created (not by a shard) are re-checked too: a lost,
    empty or truncated chunk is rewritten as the clean build wrote it, never left as fill values."""
    clean = zarr.open_group(complete_store, mode="r")
    expected = {key: np.asarray(clean[key][:]) for key in clean.array_keys() if key != "shard_done"}
    chunk = next((complete_store / name / "c").glob("1*"))  # the second row block: rows 4 ... 7
    chunk = chunk if chunk.is_file() else chunk / "0"
    original = chunk.read_bytes()
    _damage(chunk, how)
    if unfinished:
        mark_incomplete(complete_store, unfinished=1)
    result = run("build", synthetic_source, complete_store, "--shard-size", "4", "--limit", "8", "--resume", "--quiet")
    assert result.exit_code == 0 and result.output.startswith("built "), result.output  # not "nothing to do"
    assert chunk.read_bytes() == original
    store = zarr.open_group(complete_store, mode="r")
    for key, values in expected.items():
        np.testing.assert_array_equal(np.asarray(store[key][:]), values, err_msg=key)
    assert open_store(complete_store).complete
    assert run("verify", complete_store, "--quiet").exit_code == 0


def test_resume_refuses_to_rewrite_a_chunk_from_annotations_that_changed(source_copy: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    build_store(source_copy, store, jobs=1, shard_size=4, limit=8)
    (store / "attributes" / "c" / "1" / "0").unlink()
    before = files_of(store)
    annotations = source_copy / "CelebAMask-HQ-attribute-anno.txt"
    lines = annotations.read_text().splitlines()
    fields = lines[2].split()  # 0.jpg: row 0, in the intact first chunk
    fields[1] = "1" if fields[1] == "-1" else "-1"
    annotations.write_text("\n".join([*lines[:2], " ".join(fields), *lines[3:]]) + "\n")
    result = run("build", source_copy, store, "--shard-size", "4", "--limit", "8", "--resume", "--quiet")
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"error: {store}: attributes/c/1/0 is missing; cannot rewrite it from the source: the source's values "
        "differ from those in the store's other chunks; build the store again with --overwrite"]
    assert files_of(store) == before
    annotations.unlink()
    gone = run("build", source_copy, store, "--shard-size", "4", "--limit", "8", "--resume", "--quiet")
    assert gone.exit_code == 1 and len(gone.output.splitlines()) == 1, gone.output
    assert "attributes/c/1/0 is missing; cannot rewrite it" in gone.output and "not in the source" in gone.output
    assert files_of(store) == before


def _replace_jpeg(path: Path) -> None:
    """Other pixels under the same name (and a size that differs, so any stamp sees it)."""
    Image.new("RGB", (512, 512), (200, 10, 10)).save(path, format="JPEG", quality=30)


def test_resume_refuses_when_a_built_shards_file_changed_and_names_it(source_copy: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    build_store(source_copy, store, jobs=1, shard_size=4, limit=8)
    mark_incomplete(store, unfinished=1)
    before = files_of(store)
    _replace_jpeg(source_copy / "CelebA-HQ-img" / "2.jpg")  # row 2: shard 0, recorded as built
    result = run("build", source_copy, store, "--shard-size", "4", "--limit", "8", "--resume", "--quiet")
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [f"error: {store}: cannot resume: built with different options: "
                                          "source files changed since the build started: CelebA-HQ-img/2.jpg"]
    assert files_of(store) == before


def test_resume_reads_changed_files_of_unbuilt_shards_afresh(source_copy: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    build_store(source_copy, store, jobs=1, shard_size=4, limit=8)
    mark_incomplete(store, unfinished=1)
    _replace_jpeg(source_copy / "CelebA-HQ-img" / "5.jpg")  # row 5: shard 1, not built yet
    result = run("build", source_copy, store, "--shard-size", "4", "--limit", "8", "--resume", "--quiet")
    assert result.exit_code == 0, result.output
    fresh = tmp_path / "fresh.zarr"
    build_store(source_copy, fresh, jobs=1, shard_size=4, limit=8)
    np.testing.assert_array_equal(np.asarray(zarr.open_group(store, mode="r")["image"][:]),
                                  np.asarray(zarr.open_group(fresh, mode="r")["image"][:]))


@pytest.mark.parametrize(("limit", "named"), [(["--limit", "6"], "--limit 8 vs 6"), ([], "--limit 8 vs None")])
def test_resume_with_another_limit_names_the_limit(synthetic_source: Path, complete_store: Path,
                                                   limit: list[str], named: str) -> None:
    mark_incomplete(complete_store, unfinished=1)
    result = run("build", synthetic_source, complete_store, "--shard-size", "4", "--resume", "--quiet", *limit)
    assert result.exit_code == 1 and named in result.output, result.output
    assert "different files" not in result.output  # the file list differs because of --limit, by design
    resumed = run("build", synthetic_source, complete_store, "--shard-size", "4", "--limit", "8", "--resume", "--quiet")
    assert resumed.exit_code == 0 and resumed.output.startswith("built "), resumed.output
    assert len(open_store(complete_store)) == 8


def test_the_lock_is_released_after_a_failed_build(source_copy: Path, tmp_path: Path) -> None:
    (source_copy / "CelebA-HQ-img" / "1.jpg").write_bytes(b"not a jpeg")
    store = tmp_path / "s.zarr"
    with pytest.raises(CelebaMaskError, match="1.jpg"):
        build_store(source_copy, store, jobs=1, shard_size=4, limit=8)
    assert not lock_file(store).exists()


@pytest.mark.parametrize("damaged", [False, True])
def test_a_resume_never_takes_over_a_store_another_build_made_meanwhile(
    synthetic_source: Path, complete_store: Path, monkeypatch: pytest.MonkeyPatch, damaged: bool
) -> None:
    """Another build (its lock deleted by hand) replaces the store while a resume re-checks it:
    the resume writes nothing into it (no repair, no build id, none of its old attributes)."""
    import celebamask.build.orchestrator as orchestrator
    from celebamask.store.owner import BUILD_ID

    mark_incomplete(complete_store, unfinished=1)
    if damaged:  # a lost shard file: the resume would rewrite the shard record
        (complete_store / "label" / "c" / "0" / "0" / "0").unlink()
    recheck = orchestrator._recheck_done_shards

    def replaced_meanwhile(store, group, *args, **kwargs):  # type: ignore[no-untyped-def]
        zarr.open_group(complete_store, mode="r+").update_attributes({BUILD_ID: "the-other-build", "note": "theirs"})
        return recheck(store, group, *args, **kwargs)

    monkeypatch.setattr(orchestrator, "_recheck_done_shards", replaced_meanwhile)
    with pytest.raises(CelebaMaskError, match="replaced while this build ran"):
        build_store(synthetic_source, complete_store, jobs=1, shard_size=4, limit=8, resume=True)
    attrs = zarr.open_group(complete_store, mode="r").attrs
    assert attrs[BUILD_ID] == "the-other-build" and attrs["note"] == "theirs"
    assert bool(zarr.open_group(complete_store, mode="r")["shard_done"][0])  # not unrecorded by the resume


class _Killed(BaseException):
    """Stands in for kill -9: nothing after it runs (no cleanup an Exception would trigger)."""


@pytest.mark.parametrize("after", [1, 7, 40, 90, -2, -1])
def test_an_overwrite_cut_off_while_deleting_the_old_store_can_be_run_again(
    synthetic_source: Path, complete_store: Path, monkeypatch: pytest.MonkeyPatch, after: int
) -> None:
    """Whatever the old store's delete got through, what is left is still a store of ours to
    --overwrite (never 'holds files that are not part of the store' nor 'not a Zarr store')."""
    import celebamask.store.location as location

    expected = np.asarray(zarr.open_group(complete_store, mode="r")["label"][:])
    entries = sum(1 for _ in complete_store.rglob("*"))
    cut_at = after if after > 0 else entries + after
    calls = {"n": 0}
    real_remove, real_rmdir = os.remove, os.rmdir

    def counting(real):  # type: ignore[no-untyped-def]
        def call(path, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == cut_at:
                raise _Killed
            return real(path, *args, **kwargs)
        return call

    # only the store's delete sees the counting os
    counted = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
    counted.remove, counted.rmdir = counting(real_remove), counting(real_rmdir)
    monkeypatch.setattr(location, "os", counted)
    with pytest.raises(_Killed):
        build_store(synthetic_source, complete_store, jobs=1, shard_size=4, limit=8, overwrite=True)
    monkeypatch.undo()
    lock_file(complete_store).unlink(missing_ok=True)  # a killed build leaves its lock (taken over anyway)
    result = run("build", synthetic_source, complete_store, "--shard-size", "4", "--limit", "8", "--overwrite", "--quiet")
    assert result.exit_code == 0 and result.output.startswith("built "), result.output
    np.testing.assert_array_equal(np.asarray(zarr.open_group(complete_store, mode="r")["label"][:]), expected)
    assert run("verify", complete_store, "--quiet").exit_code == 0


@pytest.mark.parametrize("mode", ["--overwrite", "--resume"])
def test_a_users_file_ending_in_partial_is_not_taken_for_a_writers_temporary(
    synthetic_source: Path, complete_store: Path, mode: str
) -> None:
    """Only <chunk>.<pid>.partial (and zarr's <name>.<uuid>.partial) are a killed writer's."""
    mine = complete_store / "thesis.partial"
    mine.write_text("mine")
    if mode == "--resume":
        mark_incomplete(complete_store, unfinished=1)
    result = run("build", synthetic_source, complete_store, "--shard-size", "4", "--limit", "8", mode, "--quiet")
    assert mine.read_text() == "mine"
    if mode == "--overwrite":
        assert result.exit_code == 1 and "thesis.partial" in result.output, result.output


def test_two_builds_taking_over_one_stale_lock_never_both_hold_it(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Build B takes the dead build's lock over just after build A has read it: A must not then
    delete B's fresh lock and take its own (both would write the store)."""
    import celebamask.store.lock as lock

    store = tmp_path / "s.zarr"
    write_lock(store, dead_pid(), socket.gethostname())
    read = lock._Backend.read
    raced = {"yet": False}

    def read_then_another_build_takes_over(self):  # type: ignore[no-untyped-def]
        text = read(self)
        if not raced["yet"]:
            raced["yet"] = True
            os.remove(self.path)
            write_lock(store, os.getppid(), socket.gethostname())  # B: a live build on this host
        return text

    monkeypatch.setattr(lock._Backend, "read", read_then_another_build_takes_over)
    with pytest.raises(CelebaMaskError, match="locked by another build"):
        with store_lock(as_target(store), new_build_id()):
            pass
    assert json.loads(lock_file(store).read_text())["pid"] == os.getppid()  # B's lock stands
    assert [p.name for p in tmp_path.iterdir()] == [lock_file(store).name]  # nothing left aside


@pytest.mark.parametrize("mine", ["masks/c/0/0/7", "masks/c/0/0/0", "label/c/99/0/0", "label/c/0/7", "label/c/0/1/0"])
def test_a_users_file_named_like_a_chunk_of_no_array_of_this_store_is_refused(
    synthetic_source: Path, tmp_path: Path, mine: str
) -> None:
    """Orphaned chunk files count as the store's own only for an array its build creates (no masks
    with --no-masks), with that array's number of indices, inside its grid."""
    store = tmp_path / "s.zarr"
    build_store(synthetic_source, store, jobs=1, shard_size=4, limit=8, masks=False)
    (store / "label" / "zarr.json").unlink()  # label's chunks are orphans: label/c/<0 or 1>/0/0 only
    path = store / mine
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("mine")
    result = run("build", synthetic_source, store, "--shard-size", "4", "--limit", "8", "--no-masks", "--overwrite",
                 "--quiet")
    assert result.exit_code == 1 and mine in result.output, result.output
    assert path.read_text() == "mine"
