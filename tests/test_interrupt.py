"""Ctrl-C during a build: exit 130, one line naming --resume, and the resume completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from celebamask.cli import _hoist_global_flags, main
from celebamask.synth.generate import generate_source

CLI = [sys.executable, "-m", "celebamask"]


def _interrupted_build(source: Path, store: Path, whole_group: bool) -> str:
    """stderr of a ``--jobs 2`` build sent SIGINT once a few shards are written: to the build
    alone, or (``whole_group``, as a terminal's Ctrl-C does) to it and its workers."""
    build = subprocess.Popen([*CLI, "build", str(source), str(store), "--jobs", "2", "--shard-size", "4", "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list((store / "label" / "c").glob("*"))) < 3 and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert build.poll() is None, "the build ended before it could be interrupted: make it longer"
    if whole_group:
        os.killpg(build.pid, signal.SIGINT)
    else:
        build.send_signal(signal.SIGINT)
    _, err = build.communicate(timeout=120)
    assert build.returncode == 130, err
    return err


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_source(tmp_path_factory.mktemp("interrupt") / "src", 200, seed=5, jobs=2)


def test_sigint_to_the_build_alone_is_one_line(source: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    err = _interrupted_build(source, store, whole_group=False)
    # nothing else: no "Aborted!", no traceback, no joblib warning about cancelled tasks, no
    # resource_tracker warning about semaphores a killed worker left behind
    assert err.splitlines() == [f"interrupted: resume with celebamask build {source} {store} --resume"], err


def test_sigint_leaves_a_resumable_store(source: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    err = _interrupted_build(source, store, whole_group=True)
    assert err.splitlines() == [f"interrupted: resume with celebamask build {source} {store} --resume"], err
    assert not store.with_name(store.name + ".lock").exists()  # released: the resume may take it
    resumed = subprocess.run([*CLI, "build", str(source), str(store), "--jobs", "2", "--shard-size", "4", "--resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and resumed.stdout.startswith("built "), resumed.stdout + resumed.stderr
    verified = subprocess.run([*CLI, "verify", str(store), "--quiet"], capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0 and ": ok" in verified.stdout, verified.stdout


def test_global_flags_work_after_the_subcommand() -> None:
    commands = {"build": None, "info": None}
    assert _hoist_global_flags(["info", "x", "-v", "--debug"], commands) == ["-v", "--debug", "info", "x"]
    assert _hoist_global_flags(["-v", "info", "x"], commands) == ["-v", "info", "x"]
    assert _hoist_global_flags(["info", "--", "-v"], commands) == ["info", "--", "-v"]
    result = CliRunner().invoke(main, ["classes", "--debug", "-v"])
    assert result.exit_code == 0, result.output
