"""The tree's promises, checked from the source: imports run one way and synth stays off the run-time path.

Every ``celebamask`` import in every module counts, including imports inside functions, so a
lazy import cannot slip a dependency past the rule.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
SHARED = {"errors", "config", "dataset", "progress"}  # the ground every stage stands on
ALLOWED: dict[str, set[str]] = {
    "store": set(),
    "sources": set(),
    "build": {"store", "sources"},
    "read": {"store"},
    "score": {"store", "read"},
    "synth": set(),
}


def _stage_imports() -> list[tuple[str, str, str]]:
    """(importing stage, imported top-level module, file) for every celebamask import."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        stage = parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                bits = name.split(".")
                if bits[0] == "celebamask" and len(bits) > 1 and bits[1] != stage:
                    found.append((stage, bits[1], str(path.relative_to(PACKAGE))))
    return found


def test_the_walker_sees_lazy_imports() -> None:
    """The rule below is only as good as this: cli imports synth inside a function."""
    assert ("cli", "synth", "cli.py") in _stage_imports()


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_imports_run_one_way(stage: str) -> None:
    wrong = sorted({(target, where) for source, target, where in _stage_imports()
                    if source == stage and target not in SHARED | ALLOWED[stage]})
    assert not wrong, f"{stage} may use only {sorted(SHARED | ALLOWED[stage])}; found {wrong}"


def test_shared_modules_use_no_stage() -> None:
    wrong = sorted({(source, target) for source, target, _ in _stage_imports()
                    if source in SHARED and target not in SHARED})
    assert not wrong


def test_only_the_cli_reaches_synth() -> None:
    assert {source for source, target, _ in _stage_imports() if target == "synth"} == {"cli"}


def test_synth_is_not_imported_by_using_the_package() -> None:
    """Opening, building, scoring and the command itself load no test-only code."""
    code = (
        "import sys, celebamask, celebamask.cli, celebamask.build.orchestrator, celebamask.score, "
        "celebamask.read.xarray, celebamask.read.preview, celebamask.sources.download\n"
        "print(sorted(m for m in sys.modules if m.startswith('celebamask.synth')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
