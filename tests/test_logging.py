"""--verbose shows what the library logs; without it the CLI prints only its own lines."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from celebamask.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def restore_package_logger():
    package_logger = logging.getLogger("celebamask")
    handlers, level = list(package_logger.handlers), package_logger.level
    yield
    package_logger.handlers[:] = handlers
    package_logger.setLevel(level)


@pytest.mark.usefixtures("restore_package_logger")
def test_verbose_shows_the_library_log(synthetic_source: Path, tmp_path: Path) -> None:
    quiet = run("build", str(synthetic_source), str(tmp_path / "q.zarr"), "--limit", "2", "--jobs", "1", "--quiet")
    assert quiet.exit_code == 0 and "celebamask.build.orchestrator" not in quiet.output
    loud = run("-v", "build", str(synthetic_source), str(tmp_path / "v.zarr"), "--limit", "2", "--jobs", "1", "--quiet")
    assert loud.exit_code == 0, loud.output
    assert "INFO celebamask.build.orchestrator: indexed" in loud.stderr and "complete" in loud.stderr
    assert "DEBUG" not in loud.stderr
    details = run("-vv", "build", str(synthetic_source), str(tmp_path / "d.zarr"), "--limit", "2", "--jobs", "1",
                  "--quiet")
    assert details.stderr.count("INFO celebamask.build.orchestrator: indexed") == 1  # one handler, not one per run
    assert "DEBUG celebamask.build.orchestrator" in details.stderr


def test_build_and_verify_show_progress_unless_quiet(synthetic_source: Path, tmp_path: Path) -> None:
    store = tmp_path / "p.zarr"
    shown = run("build", str(synthetic_source), str(store), "--limit", "6", "--shard-size", "2", "--jobs", "1")
    assert shown.exit_code == 0, shown.output
    # not a terminal: plain lines (here the closing one), no tqdm \r frames
    assert "build: 6/6 samples (100%)" in shown.stderr and "\r" not in shown.stderr, shown.stderr
    assert shown.stdout.startswith(f"built {store}: 6 samples")
    checked = run("verify", str(store))
    assert checked.exit_code == 0, checked.output
    assert "verify: 6/6 samples (100%)" in checked.stderr and "\r" not in checked.stderr, checked.stderr

    quiet = run("build", str(synthetic_source), str(tmp_path / "q.zarr"), "--limit", "6", "--jobs", "1", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "" and "built" in quiet.stdout
    assert run("verify", str(store), "--quiet").stderr == ""
