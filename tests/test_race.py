"""Two builds on one store: while the first is suspended (SIGSTOP) mid-build, every second build
(plain, --resume, --overwrite with another config, even with --break-lock) is refused because
the first holds the lock; resumed (SIGCONT), the first finishes a store that is all its own."""

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


CLI = [sys.executable, "-m", "celebamask"]


def _shards_written(store: Path) -> int:
    folder = store / "label" / "c"
    return len(list(folder.iterdir())) if folder.is_dir() else 0


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX job control signals")
def test_a_suspended_build_keeps_the_store_its_own(synthetic_source: Path, built_store: Path, tmp_path: Path) -> None:
    source = synthetic_source
    store = tmp_path / "s.zarr"
    first = subprocess.Popen([*CLI, "build", str(source), str(store), "--jobs", "1", "--shard-size", "1", "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while _shards_written(store) < 2 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGSTOP)
        assert first.poll() is None, "the first build ended before it could be suspended: make it longer"
        frozen = _shards_written(store)
        assert 0 < frozen < 24
        for extra in ([], ["--resume"], ["--overwrite", "--config", "official", "--break-lock"]):
            second = subprocess.run([*CLI, "build", str(source), str(store), "--jobs", "1", "--shard-size", "1",
                                     "--quiet", *extra], capture_output=True, text=True, timeout=60)
            assert second.returncode == 1, (extra, second.stderr)
            assert second.stderr.splitlines() == [second.stderr.strip()] and second.stderr.startswith(
                f"error: {store}: locked by another build (pid {first.pid} on "), (extra, second.stderr)
        assert _shards_written(store) == frozen  # nothing written meanwhile
        assert zarr.open_group(store, mode="r").attrs["complete"] is False
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err

    # the same source built undisturbed (shard size 8, two jobs: the arrays' values do not depend on either)
    built, expected = zarr.open_group(store, mode="r"), zarr.open_group(built_store, mode="r")
    assert built.attrs["complete"] is True
    assert built.attrs["provenance"]["config"]["name"] == "default"
    for name in ("image", "label", "masks", "valid", "sample_id"):
        np.testing.assert_array_equal(np.asarray(built[name][:]), np.asarray(expected[name][:]), err_msg=name)
    verified = subprocess.run([*CLI, "verify", str(store), "--quiet"], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
