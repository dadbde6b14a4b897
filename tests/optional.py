"""Optional test dependencies: a test module is skipped only when its package is truly absent.

A package that is installed but fails to import (torchvision built for another torch: 'operator
torchvision::nms does not exist') is an error, never a skip. And a package that `make test`
installed (listed in CELEBAMASK_TEST_REQUIRE by the Makefile) must be there: its absence means the
install step is broken, so its tests fail instead of silently not running in CI.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

import pytest

REQUIRED_VARIABLE = "CELEBAMASK_TEST_REQUIRE"


def required() -> set[str]:
    """The distributions' import names that this run must have (space-separated in the variable)."""
    return set(os.environ.get(REQUIRED_VARIABLE, "").split())


def optional(module: str, why: str) -> ModuleType:
    """``module`` imported; the calling test module skipped if its top-level package is not
    installed at all and not required; a failed import of an installed package propagates."""
    top = module.partition(".")[0]
    if importlib.util.find_spec(top) is None:
        if top in required():
            pytest.fail(f"{top} is not installed, yet this run requires it ({REQUIRED_VARIABLE}: make test "
                        f"installs it): rm .venv/.installed-test and run make test again", pytrace=False)
        pytest.skip(f"{top} is not installed ({why})", allow_module_level=True)
    return importlib.import_module(module)
