"""Public home of the torch dataset: ``from celebamask.torch import CelebAMaskDataset``.

The implementation lives in ``celebamask.read.torch``; this path stays put whatever the layout.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ModuleNotFoundError as missing:  # pragma: no cover - exercised in an environment without torch
    raise ModuleNotFoundError(
        "celebamask.torch needs PyTorch: install it for your machine (CPU or CUDA) first, "
        "then pip install 'celebamask[torch]'", name=missing.name) from None

from celebamask.read.torch import CelebAMaskDataset

__all__ = ["CelebAMaskDataset"]
