"""celebamask: CelebAMask-HQ as one sharded Zarr v3 store.

Public API: :func:`open_store` (and the ``celebamask`` command line). Everything else may change.
The names below load on first use, so a build's worker processes, which import only
``pipeline.worker``, never pay for importing zarr.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.errors import CelebaMaskError
    from pipeline.reader import CelebAMaskStore, open_store

__all__ = ["CelebAMaskStore", "CelebaMaskError", "open_store"]
_HOMES = {"CelebAMaskStore": "pipeline.reader", "open_store": "pipeline.reader", "CelebaMaskError": "pipeline.errors"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
