"""Ctrl-C during a build: exit 130, one line naming --resume, and the resume completes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from celebamask.cli import _hoist_global_flags, main
from celebamask.synth.generate import generate_source

CLI = [sys.executable, "-m", "celebamask"]


def test_sigint_leaves_a_resumable_store(tmp_path: Path) -> None:
    source = generate_source(tmp_path / "src", 200, seed=5, jobs=2)
    store = tmp_path / "s.zarr"
    build = subprocess.Popen([*CLI, "build", str(source), str(store), "--jobs", "2", "--shard-size", "4"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list((store / "label" / "c").glob("*"))) < 3 and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    build.send_signal(signal.SIGINT)
    _, err = build.communicate(timeout=120)
    assert build.returncode == 130, err
    interrupted = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert interrupted == [f"interrupted: resume with celebamask build {source} {store} --resume"], err
    assert "Aborted!" not in err and "Traceback" not in err
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
