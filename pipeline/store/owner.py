"""Which build a store belongs to, read without zarr: the coordinator checks it before it records
anything, and each shard task just before it writes its shard (a worker must not import zarr)."""

from __future__ import annotations

import json
import os
from typing import Any

from celebamask.errors import CelebaMaskError

BUILD_ID = "build_id"  # group attribute: which build created (or took over) the store
GROUP_METADATA = "zarr.json"


def build_id_in(metadata: bytes) -> str | None:
    """The build id in a group's ``zarr.json`` document (None: none there, or not a document)."""
    try:
        document = json.loads(metadata)
        found = document.get("attributes", {}).get(BUILD_ID)
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def stored_build_id(target: Any) -> str | None:
    """The build id of the store ``target`` (a StoreTarget: anything with ``read_key``) as it is now,
    read afresh (None if it is gone)."""
    try:
        return build_id_in(target.read_key(GROUP_METADATA))
    except OSError:
        return None


def local_build_id(folder: str) -> str | None:
    """The build id of the local store at ``folder`` as it is now (None if it is gone)."""
    try:
        with open(os.path.join(folder, GROUP_METADATA), "rb") as handle:
            return build_id_in(handle.read())
    except OSError:
        return None


def replaced_store(path: object, found: str | None, build_id: str) -> CelebaMaskError:
    """The one line for a build whose store now records another build (or none)."""
    now = f"build {found}" if found else "no build id (deleted or replaced)"
    return CelebaMaskError(str(path), f"the store was replaced while this build ran (it now records {now}, this "
                                      f"build is {build_id}); stopping without writing into it")
