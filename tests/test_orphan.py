"""A shard task whose build is gone writes nothing: a worker that outlived its coordinator (kill -9)
or whose store another build has replaced stops before it writes its shard, so a store built
meanwhile at the same path holds only its own rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from celebamask.build.orchestrator import build_store
from celebamask.build.worker import ROW_ARRAYS, ShardOwner, build_shard
from celebamask.config import load_config
from celebamask.errors import CelebaMaskError
from celebamask.sources.index import index_source, locate_source
from celebamask.store.chunks import PARTIAL_SUFFIX
from celebamask.store.location import as_target
from celebamask.store.shards import row_files

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "celebamask"]


def dead_pid() -> int:
    """A pid that certainly ran on this host and is gone (its process was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --------------------------------------------------------------------------- one task, called directly


@pytest.fixture
def store_without_shard_1(synthetic_source: Path, tmp_path: Path) -> tuple[Path, dict[Path, bytes]]:
    """A whole store (8 samples, shards of 4) with shard 1's files deleted; and those files' bytes."""
    store = tmp_path / "s.zarr"
    build_store(synthetic_source, store, jobs=1, shard_size=4, limit=8)
    group = zarr.open_group(store, mode="r")
    paths = [Path(row_files(group[name]).path(1)) for name in ROW_ARRAYS if name in group]  # type: ignore[union-attr]
    assert len(paths) == len(ROW_ARRAYS)
    removed = {path: path.read_bytes() for path in paths}
    for path in paths:
        path.unlink()
    return store, removed


@pytest.mark.parametrize("through", ["files", "zarr"])
def test_a_task_of_a_gone_build_writes_nothing(synthetic_source: Path, store_without_shard_1: tuple[Path, dict[Path, bytes]],
                                               through: str) -> None:
    store, removed = store_without_shard_1
    group = zarr.open_group(store, mode="r")
    build_id = group.attrs["build_id"]
    destination = ({name: row_files(group[name]) for name in ROW_ARRAYS} if through == "files"  # type: ignore[arg-type]
                   else as_target(store))
    ref = locate_source(synthetic_source)
    samples = index_source(ref).samples[4:8]
    config = load_config("default")

    def task(owner: ShardOwner):  # type: ignore[no-untyped-def]
        return build_shard(ref, samples, config, destination, 1, 4, owner)

    gone = dead_pid()
    for owner, problem in [
        (ShardOwner("another-build", os.getpid()),
         f"the store was replaced while this build ran (it now records build {build_id}, this build is another-build); "
         "stopping without writing into it"),
        (ShardOwner(build_id, gone),
         f"the build that handed out this shard (coordinator pid {gone}) is no longer running: nobody would record "
         "the shard, so it is not written"),
    ]:
        result = task(owner)
        assert isinstance(result.error, CelebaMaskError)
        assert (result.error.path, result.error.problem) == (str(store), problem)
        assert not any(path.exists() for path in removed)
        assert not [p for p in store.rglob("*") if p.name.endswith(PARTIAL_SUFFIX)]

    # the same task of the store's own build, run by its coordinator, writes the very files deleted
    result = task(ShardOwner(build_id, os.getpid()))
    assert result.error is None
    assert {path: path.read_bytes() for path in removed} == removed


def test_a_task_of_a_build_whose_store_is_gone_writes_nothing(synthetic_source: Path,
                                                              store_without_shard_1: tuple[Path, dict[Path, bytes]]) -> None:
    store, removed = store_without_shard_1
    group = zarr.open_group(store, mode="r")
    destination = {name: row_files(group[name]) for name in ROW_ARRAYS}  # type: ignore[arg-type]
    build_id = group.attrs["build_id"]
    (store / "zarr.json").unlink()  # what an --overwrite deleting the store leaves a moment later
    ref = locate_source(synthetic_source)
    result = build_shard(ref, index_source(ref).samples[4:8], load_config("default"), destination, 1, 4,
                         ShardOwner(build_id, os.getpid()))
    assert isinstance(result.error, CelebaMaskError)
    assert "it now records no build id (deleted or replaced)" in result.error.problem
    assert not any(path.exists() for path in removed)


# --------------------------------------------------------------------------- the audit's scenario, end to end


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    parent = int(handle.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                found.append(int(entry))
    return found


def _open_gate(gate: str) -> int | None:
    """The FIFO opened for writing, once the gated task waits at it (None before)."""
    try:
        return os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader yet
        return None


@pytest.mark.skipif(not os.path.isdir("/proc") or not hasattr(os, "mkfifo"), reason="needs /proc and FIFOs")
def test_a_worker_that_outlives_its_coordinator_leaves_a_new_store_alone(
    synthetic_source: Path, built_store: Path, tmp_path: Path
) -> None:
    """The audit's reproduction without its sleeps: the last shard's task is held at a gate, the
    coordinator is killed (-9) once every other shard is recorded, a new build ``--overwrite
    --config official`` completes at the same path, and only then is the orphaned task let go."""
    store, gate = tmp_path / "s.zarr", str(tmp_path / "gate")
    os.mkfifo(gate)
    shards, last = 6, 5  # 24 samples, shards of 4
    env = {**os.environ, "GATE": gate, "GATE_SHARD": str(last),
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    log = tmp_path / "first.log"  # a file, not a pipe: the orphaned workers keep what they inherit open
    with open(log, "w") as output:
        first = subprocess.Popen([sys.executable, "-m", "tests.orphan_at", "build", str(synthetic_source), str(store),
                                  "--shard-size", "4", "--jobs", "2", "--quiet"], cwd=REPO, env=env,
                                 stdout=output, stderr=subprocess.STDOUT)
    writer: int | None = None
    orphans: list[int] = []
    try:
        deadline = time.monotonic() + 60
        recorded = [store / "shard_done" / "c" / str(k) for k in range(shards) if k != last]
        while (writer is None or not all(p.exists() for p in recorded)) and first.poll() is None:
            assert time.monotonic() < deadline, "the first build never reached its gated shard"
            writer = writer if writer is not None else _open_gate(gate)
            time.sleep(0.01)
        assert first.poll() is None, log.read_text()
        orphans = _children(first.pid)
        first.kill()
        first.wait()  # reaped: its lock is now a stale one, taken over by the next build
        assert orphans, "the coordinator had no worker processes"

        second = subprocess.run([*CLI, "build", str(synthetic_source), str(store), "--shard-size", "4", "--jobs", "2",
                                 "--quiet", "--overwrite", "--config", "official"],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        assert zarr.open_group(store, mode="r").attrs["complete"] is True

        os.close(writer)  # the orphaned task goes on: builds its default-config shard, then would write it
        writer = None
        done = Path(f"{gate}.done")
        while not done.exists():
            assert time.monotonic() < deadline, "the orphaned task never finished"
            time.sleep(0.01)
        outcome = done.read_text()
    finally:
        if writer is not None:
            os.close(writer)
        if first.poll() is None:
            first.kill()
            first.wait()
        for pid in orphans:  # the coordinator's workers, by their pids
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    clean = tmp_path / "clean.zarr"
    build_store(synthetic_source, clean, config="official", jobs=1, shard_size=4)
    built, expected = zarr.open_group(store, mode="r"), zarr.open_group(clean, mode="r")
    default = zarr.open_group(built_store, mode="r")
    # the orphan's rows would differ: the default config paints the last shard's labels otherwise
    assert not np.array_equal(np.asarray(default["label"][20:24]), np.asarray(expected["label"][20:24]))
    for name in ("image", "label", "masks", "valid", "class_area", "class_present", "sample_id"):
        np.testing.assert_array_equal(np.asarray(built[name][:]), np.asarray(expected[name][:]), err_msg=name)
    verified = subprocess.run([*CLI, "verify", str(store), "--quiet"], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert outcome.startswith(f"the build that handed out this shard (coordinator pid {first.pid}) is no longer running")
