"""The test stack's own guard rails: which optional packages a run may skip, and that `make test`
requires the ones it installed (so a broken install step fails CI instead of skipping tests)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.optional import REQUIRED_VARIABLE, optional

ROOT = Path(__file__).resolve().parent.parent
ABSENT = "celebamask_no_such_package_for_tests"


def test_an_absent_package_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRED_VARIABLE, "datasets torch")
    with pytest.raises(pytest.skip.Exception, match=f"{ABSENT} is not installed"):
        optional(ABSENT, "a reason")


def test_an_absent_package_this_run_requires_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRED_VARIABLE, f"datasets {ABSENT} torch")
    with pytest.raises(pytest.fail.Exception, match=f"{ABSENT} is not installed, yet this run requires it"):
        optional(f"{ABSENT}.sub", "a reason")


def test_an_installed_package_that_fails_to_import_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As torchvision built for another torch does: not a skip, whatever pytest's importorskip does."""
    package = tmp_path / "celebamask_broken_for_tests"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RuntimeError, match="nms"):
        optional("celebamask_broken_for_tests", "a reason")
    (package / "__init__.py").write_text("import celebamask_missing_dependency_for_tests\n")
    with pytest.raises(ModuleNotFoundError, match="celebamask_missing_dependency_for_tests"):
        optional("celebamask_broken_for_tests.sub", "a reason")


def test_an_installed_package_is_returned() -> None:
    import json

    assert optional("json", "a reason") is json


def _make_test_commands(*variables: str) -> list[str]:
    done = subprocess.run(["make", "-n", "-s", "-C", str(ROOT), "test", *variables],
                          capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(("test_torch", "required", "installed"), [
    (None, "datasets torch torchvision", None),
    ("torch==2.13.0", "datasets torch", "'torch==2.13.0'"),
    ("torch>=2.1,<3 torchvision~=0.29", "datasets torch torchvision", "'torch>=2.1,<3' 'torchvision~=0.29'"),
])
def test_make_test_requires_what_it_installs(test_torch: str | None, required: str, installed: str | None) -> None:
    commands = _make_test_commands(*([f"TEST_TORCH={test_torch}"] if test_torch else []))
    assert commands[-1].endswith("-m pytest -q")
    assert commands[-1].startswith(f"{REQUIRED_VARIABLE}='{required}' ")
    if installed is not None:  # a TEST_TORCH other than the venv's re-runs the install, each requirement quoted
        assert any(line.endswith(f"pip install --quiet -e '.[test]' {installed}") for line in commands)
