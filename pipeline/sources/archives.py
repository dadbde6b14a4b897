"""Where the dataset lies in what the user named: a folder, a .zip or a .tar, at any depth up to
three folders, in the official layout or as a Supervisely project; and reading a .tar in place.

A download's name says nothing (``celebamaskhq.zip``, ``archive.zip``, ``celebamask-hq.tar``),
so an archive is recognised by its bytes, and the root by what it holds.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from celebamask.errors import CelebaMaskError
from celebamask.sources.index import (
    IMAGE_DIR,
    MASK_DIR,
    MAX_ROOT_DEPTH,
    OFFICIAL,
    SUPERVISELY,
    SourceFiles,
    SourceRef,
)

SUPERVISELY_META = "meta.json"
LOOKED_FOR = (f"{IMAGE_DIR}/ and {MASK_DIR}/ side by side, or a Supervisely project (meta.json beside ds*/ann/), "
              f"in it or up to {MAX_ROOT_DEPTH} folders below")
# Folders whose contents are data, never a dataset root: not searched below.
_DATA_FOLDERS = frozenset({IMAGE_DIR, MASK_DIR, "img", "ann"})


def find_root(location: str) -> SourceRef:
    """The one dataset root in ``location`` (a folder or an archive file), the shallowest found."""
    if os.path.isfile(location):
        archive, names = _archive_listing(location)
        dirs = {str(PurePosixPath(n).parent) for n in names}
        dirs |= {str(p) for d in list(dirs) for p in PurePosixPath(d).parents}
        dirs.discard(".")
        files = set(names)
        root, layout = _choose(location, _candidates_in_listing(dirs, files))
        return SourceRef(location, root, archive, layout)
    found = _candidates_in_folder(location)
    if not found:
        archived = _archive_in_folder(location)
        if archived is not None:
            return archived
    root, layout = _choose(location, found)
    return SourceRef(location, os.path.join(location, root) if root else location, "", layout)


def _choose(location: str, found: list[tuple[str, str]]) -> tuple[str, str]:
    if not found:
        raise CelebaMaskError(location, f"not a CelebAMask-HQ download: looked for {LOOKED_FOR}")
    depth = min(_depth(root) for root, _ in found)
    shallowest = [(root, layout) for root, layout in found if _depth(root) == depth]
    if len(shallowest) > 1:
        shown = ", ".join(f"{root or '.'} ({layout})" for root, layout in shallowest)
        raise CelebaMaskError(location, f"holds more than one copy of the dataset: {shown}; point at one of them")
    return shallowest[0]


def _depth(root: str) -> int:
    return 0 if not root else len(PurePosixPath(root).parts)


def _candidates_in_listing(dirs: set[str], files: set[str]) -> list[tuple[str, str]]:
    found = []
    for folder in sorted(dirs | {""}):
        if _depth(folder) > MAX_ROOT_DEPTH:
            continue
        prefix = f"{folder}/" if folder else ""
        if f"{prefix}{IMAGE_DIR}" in dirs and f"{prefix}{MASK_DIR}" in dirs:
            found.append((folder, OFFICIAL))
        elif f"{prefix}{SUPERVISELY_META}" in files and any(
                d.startswith(prefix) and d.endswith("/ann") and d.count("/") == prefix.count("/") + 1 for d in dirs):
            found.append((folder, SUPERVISELY))
    if not found:
        _explain_half_layout(dirs)
    return found


def _explain_half_layout(dirs: Iterable[str]) -> None:
    """One of the two official folders without the other: say which one is missing, and where."""
    dirs = set(dirs)
    for folder in sorted(dirs | {""}):
        prefix = f"{folder}/" if folder else ""
        for present, absent in ((IMAGE_DIR, MASK_DIR), (MASK_DIR, IMAGE_DIR)):
            if f"{prefix}{present}" in dirs and _depth(folder) <= MAX_ROOT_DEPTH:
                raise CelebaMaskError(folder or ".", f"has {present}/ but no {absent}/ beside it")


def _candidates_in_folder(location: str) -> list[tuple[str, str]]:
    """Walk folders up to MAX_ROOT_DEPTH below ``location`` (never into image or mask folders)."""
    found: list[tuple[str, str]] = []
    frontier = [""]
    for depth in range(MAX_ROOT_DEPTH + 1):
        next_frontier = []
        for rel in frontier:
            subdirs, has_meta = _scan(os.path.join(location, rel) if rel else location)
            if IMAGE_DIR in subdirs and MASK_DIR in subdirs:
                found.append((rel, OFFICIAL))
            elif has_meta and any(os.path.isdir(os.path.join(location, rel, d, "ann")) for d in subdirs):
                found.append((rel, SUPERVISELY))
            else:
                for present, absent in ((IMAGE_DIR, MASK_DIR), (MASK_DIR, IMAGE_DIR)):
                    if present in subdirs:
                        raise CelebaMaskError(os.path.join(location, rel), f"has {present}/ but no {absent}/ beside it")
                next_frontier += [f"{rel}/{d}" if rel else d for d in subdirs if d not in _DATA_FOLDERS]
        if found:
            return found  # the shallowest level that holds a root
        frontier = next_frontier
    return found


def _archive_in_folder(location: str) -> SourceRef | None:
    """A folder holding the downloaded archive (what ``celebamask download`` leaves): the one
    .zip or .tar up to MAX_ROOT_DEPTH folders below that holds the dataset."""
    found = []
    for folder, subdirs, names in os.walk(location):
        rel = os.path.relpath(folder, location)
        subdirs[:] = [d for d in subdirs if not d.startswith(".") and d not in _DATA_FOLDERS]
        if rel != "." and len(Path(rel).parts) >= MAX_ROOT_DEPTH:
            subdirs[:] = []
        for name in names:
            path = os.path.join(folder, name)
            if name.lower().endswith((".jpg", ".png", ".txt", ".json")) or name.startswith("."):
                continue
            try:
                found.append(find_root(path))
            except CelebaMaskError:
                continue
    if len(found) > 1:
        shown = ", ".join(ref.location for ref in found)
        raise CelebaMaskError(location, f"holds more than one copy of the dataset: {shown}; point at one of them")
    return found[0] if found else None


def _scan(folder: str) -> tuple[list[str], bool]:
    try:
        with os.scandir(folder) as entries:
            entries = list(entries)
    except OSError:
        return [], False
    subdirs = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    return subdirs, any(e.name == SUPERVISELY_META and e.is_file() for e in entries)


def _archive_listing(location: str) -> tuple[str, list[str]]:
    """("zip" or "tar", the member file names); refuse what is neither, naming why."""
    if zipfile.is_zipfile(location):
        with zipfile.ZipFile(location) as archive:
            return "zip", [info.filename for info in archive.infolist() if not info.is_dir()]
    with open(location, "rb") as handle:
        head = handle.read(4)
    if head == b"PK\x03\x04":  # a zip's first member, but no directory at the end
        raise CelebaMaskError(location, "zip archive is truncated (no central directory at its end): "
                                        "an incomplete download?")
    if _is_tar(location):
        return "tar", list(tar_members(location))
    raise CelebaMaskError(location, "source is a file but neither a zip nor a tar archive")


def _is_tar(location: str) -> bool:
    try:
        return tarfile.is_tarfile(location)
    except OSError:
        return False


# Per process: a worker opens the same tar for every shard it builds; its headers are read once.
_TAR_MEMBERS: dict[tuple[str, int, int], tuple[dict[str, tuple[int, int]], dict[str, str]]] = {}
_TAR_KINDS = {tarfile.SYMTYPE: "a symbolic link", tarfile.CHRTYPE: "a device", tarfile.BLKTYPE: "a device",
              tarfile.FIFOTYPE: "a named pipe (FIFO)"}


def tar_members(location: str) -> dict[str, tuple[int, int]]:
    """Each regular member's name -> (offset of its data, size), read from the tar's headers (a
    hard link has its target's data).

    Only an uncompressed tar can be read in place (a compressed one would be inflated from its
    start for every member): a .tar.gz/.bz2/.xz is refused with what to do instead."""
    return _tar_listing(location)[0]


def tar_unusable(location: str) -> dict[str, str]:
    """Each member that is neither a folder nor data (a symbolic link, a device, ...) -> what it
    is: one named like a mask must be that sample's error, not a class lost unseen."""
    return _tar_listing(location)[1]


def _tar_listing(location: str) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    stat = os.stat(location)
    key = (location, stat.st_size, stat.st_mtime_ns)
    if key not in _TAR_MEMBERS:
        members: dict[str, tuple[int, int]] = {}
        unusable: dict[str, str] = {}
        try:
            with tarfile.open(location, mode="r:") as archive:
                hard_links: dict[str, str] = {}
                for info in archive:
                    name = info.name.removeprefix("./")
                    if info.isfile():
                        members[name] = (info.offset_data, info.size)
                    elif info.islnk():
                        hard_links[name] = info.linkname.removeprefix("./")
                    elif not info.isdir():
                        kind = _TAR_KINDS.get(info.type, "not a regular file")
                        target = f" (to {info.linkname})" if info.issym() else ""
                        unusable[name] = (f"is {kind}{target} inside the tar, not a file; "
                                          "unpack it (tar -xf) and give the folder")
                for name, target in hard_links.items():  # a hard link has its target's data
                    if target in members:
                        members[name] = members[target]
                    else:
                        unusable[name] = f"is a hard link to {target}, which the tar does not hold"
        except tarfile.ReadError as exc:
            if _is_tar(location):
                raise CelebaMaskError(location, "compressed tar archive: it cannot be read in place; "
                                                "unpack it (tar -xf) and give the folder") from exc
            raise CelebaMaskError(location, f"cannot read tar archive: {exc}") from exc
        except (OSError, EOFError) as exc:
            raise CelebaMaskError(location, f"cannot read tar archive (truncated?): {exc}") from exc
        _TAR_MEMBERS.clear()
        _TAR_MEMBERS[key] = (members, unusable)
    return _TAR_MEMBERS[key]


class TarFiles(SourceFiles):
    """Reads members of an uncompressed tar in place: one header scan, then a seek per file."""

    def __init__(self, ref: SourceRef) -> None:
        super().__init__(ref)
        self.members = tar_members(ref.location)
        prefix = self.member("") if ref.root else ""
        self.unusable = {name[len(prefix):]: problem for name, problem in tar_unusable(ref.location).items()
                         if name.startswith(prefix)}
        try:
            self.handle = open(ref.location, "rb")
        except OSError as exc:
            raise CelebaMaskError(ref.location, f"cannot open tar archive: {exc.strerror or exc}") from exc

    def member(self, rel: str) -> str:
        return f"{self.ref.root}/{rel}" if self.ref.root else rel

    def display(self, rel: str) -> str:
        return f"{self.ref.location}:{self.member(rel)}"

    def read(self, rel: str) -> bytes:
        entry = self.members.get(self.member(rel))
        if entry is None:
            raise CelebaMaskError(self.display(rel), "cannot read from archive: no such member")
        offset, size = entry
        try:
            self.handle.seek(offset)
            data = self.handle.read(size)
        except OSError as exc:
            raise CelebaMaskError(self.display(rel), f"cannot read from archive: {exc.strerror or exc}") from exc
        if len(data) != size:
            raise CelebaMaskError(self.display(rel), f"archive ends inside this member ({len(data)} of {size} bytes)")
        return data

    def exists(self, rel: str) -> bool:
        return self.member(rel) in self.members

    def listing(self) -> list[str]:
        """Every file below the root, relative to it."""
        prefix = self.member("") if self.ref.root else ""
        return [name[len(prefix):] for name in self.members if name.startswith(prefix)]

    def list_images(self) -> list[str]:
        return [n for n in [*self.listing(), *self.unusable] if n.startswith(f"{IMAGE_DIR}/")]

    def list_masks(self) -> list[str]:
        return [n for n in [*self.listing(), *self.unusable] if n.startswith(f"{MASK_DIR}/")]

    def close(self) -> None:
        self.handle.close()


def list_all(files: SourceFiles) -> list[str]:
    """Every file below the root of any SourceFiles, relative to the root."""
    if hasattr(files, "listing"):
        return files.listing()  # type: ignore[no-any-return]
    members = getattr(files, "members", None)
    if members is not None:  # ZipFiles
        prefix = f"{files.ref.root}/" if files.ref.root else ""
        return [name[len(prefix):] for name in members if name.startswith(prefix)]
    root = files.ref.root
    return [os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            for folder, _, names in os.walk(root) for name in names]
