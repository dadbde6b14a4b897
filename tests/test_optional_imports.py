"""Optional extras that are not installed fail with a message saying what to install."""

from __future__ import annotations

import subprocess
import sys


def test_celebamask_torch_without_torch_says_how_to_install_it() -> None:
    # torch is installed here; None in sys.modules makes `import torch` fail as if it were not.
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import celebamask.torch\n"
            "except ModuleNotFoundError as e:\n    print(type(e).__name__, e.name, '|', e)\n"
            "else:\n    print('imported')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    line = result.stdout.strip()
    assert line.startswith("ModuleNotFoundError torch |"), line
    assert "needs PyTorch" in line and "celebamask[torch]" in line
    # the package itself imports without torch
    base = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None; import celebamask; "
                           "from celebamask import open_store"], capture_output=True, text=True, timeout=60)
    assert base.returncode == 0, base.stderr
