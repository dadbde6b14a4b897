"""celebamask: CelebAMask-HQ as one sharded Zarr v3 store.

Public API: :func:`open_store` and the store object it returns, the scoring functions, the torch
dataset (``celebamask.torch``) and the ``celebamask`` command line. Everything else may change.
The names below load on first use, so a build's worker processes, which import only
``celebamask.build.worker``, never pay for importing zarr.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celebamask.errors import CelebaMaskError
    from celebamask.read.reader import CelebAMaskStore, open_store
    from celebamask.score import score_maps, summarize

__all__ = ["CelebAMaskStore", "CelebaMaskError", "open_store", "score_maps", "summarize"]
_HOMES = {
    "CelebAMaskStore": "celebamask.read.reader",
    "open_store": "celebamask.read.reader",
    "CelebaMaskError": "celebamask.errors",
    "score_maps": "celebamask.score",
    "summarize": "celebamask.score",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'celebamask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
