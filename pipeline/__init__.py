"""celebamask: CelebAMask-HQ as one sharded Zarr v3 store.

Public API: :func:`open_store` (and the ``celebamask`` command line). Everything else may change.
"""

import pipeline.codecs  # noqa: F401 - registers the store's own zarr codecs
from pipeline.errors import CelebaMaskError
from pipeline.reader import CelebAMaskStore, open_store

__all__ = ["CelebAMaskStore", "CelebaMaskError", "open_store"]
