"""A cheap content fingerprint of the source files a build uses, so a resume notices edited files.

Hashing 30,000 images and their masks would cost as much as the build, so each file is stamped
by what the filesystem already knows: in a folder its size and modification time (ns); in a zip
its size and the CRC-32 the archive stores for it (a real checksum of its content, for free).
A file rewritten with the same size and an mtime set back by hand is not noticed; everything
else that changes a file's bytes is. The stamps are kept in the store as
``source_stamps/stamps.json.gz`` (one gzip-compressed JSON object in a group of its own; layout 1
kept it at the top) so a resume can name the files that changed; the provenance records their digest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Sequence

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from celebamask.sources.index import Sample, SourceRef
from celebamask.store.layout import LAYOUT1_SOURCE_STAMPS_KEY
from celebamask.store.layout import SOURCE_STAMPS_KEY as STAMPS_KEY
from celebamask.store.location import StoreTarget

Stamps = dict[str, list[int]]  # file relative to the dataset root -> [size, mtime_ns or crc]


def source_stamps(ref: SourceRef, samples: Sequence[Sample]) -> Stamps | None:
    """Each used file's stamp, or None for a source kind that offers none (names are then all
    that a resume compares)."""
    names = sorted({name for sample in samples for name in (sample.image, *sample.masks.values())})
    if not ref.is_zip and os.path.isdir(ref.root):
        stamps: Stamps = {}
        for name in names:
            try:
                info = os.stat(os.path.join(ref.root, name))
            except OSError:
                continue  # reported by the build that reads it
            stamps[name] = [info.st_size, info.st_mtime_ns]
        return stamps
    if ref.is_zip:
        import zipfile

        prefix = f"{ref.root}/" if ref.root else ""
        try:
            with zipfile.ZipFile(ref.location) as archive:
                members = {info.filename: info for info in archive.infolist()}
        except (OSError, zipfile.BadZipFile):
            return None
        return {name: [members[prefix + name].file_size, members[prefix + name].CRC]
                for name in names if prefix + name in members}
    return None


def stamps_digest(stamps: Stamps | None) -> str | None:
    if stamps is None:
        return None
    return hashlib.sha256(json.dumps(stamps, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_source_stamps(target: StoreTarget, stamps: Stamps | None) -> None:
    if stamps is None:
        return
    data = gzip.compress(json.dumps(stamps, sort_keys=True, separators=(",", ":")).encode(), mtime=0)
    store = target.zarr_store()
    sync(store.set(STAMPS_KEY, default_buffer_prototype().buffer.from_bytes(data)))


def read_source_stamps(target: StoreTarget) -> Stamps | None:
    for key in (STAMPS_KEY, LAYOUT1_SOURCE_STAMPS_KEY):
        try:
            return json.loads(gzip.decompress(target.read_key(key)))  # type: ignore[no-any-return]
        except (OSError, ValueError, EOFError):
            continue
    return None


def changed_files(recorded: Stamps | None, now: Stamps | None) -> list[str]:
    """Files whose stamp differs (or that appeared or went) between the two; [] if either is unknown."""
    if recorded is None or now is None:
        return []
    return sorted(name for name in recorded.keys() | now.keys() if recorded.get(name) != now.get(name))
