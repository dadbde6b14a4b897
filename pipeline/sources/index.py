"""Find a CelebAMask-HQ download (folder, .zip or .tar) and index it with one listing per folder.

The official merge script checks each of 18 possible files per image and, when its paths are
wrong, silently paints nothing. Here every mask that exists is listed once, parsed, checked
(known class, an image to go with it) and paired with its image; anything unexpected stops
the build with the file's name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from celebamask.dataset import ANNOTATION_FILES, IGNORED_MASK_NAMES, MASK_CLASS_NAMES
from celebamask.errors import CelebaMaskError

IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
DATASET_DIR = "CelebAMask-HQ"
IMAGE_NAME = re.compile(r"^(\d+)\.jpg$", re.IGNORECASE)
MASK_NAME = re.compile(r"^(\d+)_([A-Za-z_]+)\.png$", re.IGNORECASE)
# How many folders below what the user names the dataset root may lie (Kaggle copies add or
# drop levels; celebamaskhq.zip holds CelebAMask-HQ/, some copies nest it once more).
MAX_ROOT_DEPTH = 3
# Roots the older versions accepted, kept for callers; any folder up to MAX_ROOT_DEPTH deep is found.
ROOT_CANDIDATES = ("", DATASET_DIR, f"{DATASET_DIR}/{DATASET_DIR}")
OFFICIAL, SUPERVISELY = "official", "supervisely"  # the layouts a source can have

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One image and the masks that exist for it, as paths relative to the dataset root.

    ``problem`` is set (as a CelebaMaskError) when indexing already found the sample unusable and
    the user asked to skip bad samples: its row is then written as invalid without decoding.
    """

    index: int
    image: str
    masks: dict[str, str] = field(hash=False)  # class name -> relative path
    problem: CelebaMaskError | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True)
class SourceRef:
    """Picklable handle a worker uses to open the source itself (a zip handle cannot travel)."""

    location: str  # the folder or archive the user named, absolute
    root: str  # dataset root inside it: a folder path, or a member prefix inside the archive
    archive: str = ""  # "zip", "tar", or "" for a folder
    layout: str = OFFICIAL  # OFFICIAL (CelebA-HQ-img/ + CelebAMask-HQ-mask-anno/) or SUPERVISELY (Dataset Ninja)

    @property
    def is_zip(self) -> bool:
        return self.archive == "zip"

    def open(self) -> "SourceFiles":
        files = self.open_files()
        if self.layout == SUPERVISELY:
            from celebamask.sources.supervisely import SuperviselyFiles

            return SuperviselyFiles(files)
        return files

    def open_files(self) -> "SourceFiles":
        """The files as stored, whatever the layout."""
        if self.archive == "tar":
            from celebamask.sources.archives import TarFiles

            return TarFiles(self)
        return ZipFiles(self) if self.archive == "zip" else DirectoryFiles(self)


class SourceFiles:
    """Reads files of the dataset by their path relative to the root."""

    def __init__(self, ref: SourceRef) -> None:
        self.ref = ref
        # listed entries that are not readable regular files (relative path -> what they are
        # instead); each is the error of its sample
        self.unusable: dict[str, str] = {}

    def display(self, rel: str) -> str:
        raise NotImplementedError

    def read(self, rel: str) -> bytes:
        raise NotImplementedError

    def exists(self, rel: str) -> bool:
        raise NotImplementedError

    def present(self, rel: str) -> bool:
        """Whether anything (a file or not) has this name: an annotation file that is a dangling
        link must be an error, not an absent file."""
        return self.exists(rel) or rel in self.unusable

    def what_is(self, rel: str, wanted: str) -> str:
        """The error of a present name that is not a file (see ``present``)."""
        return self.unusable.get(rel, f"is not a regular file, not {wanted}")

    def list_images(self) -> list[str]:
        """Every file below IMAGE_DIR, at any depth, relative to the root."""
        raise NotImplementedError

    def list_masks(self) -> list[str]:
        """Every file below MASK_DIR, at any depth, relative to the root."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "SourceFiles":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DirectoryFiles(SourceFiles):
    def display(self, rel: str) -> str:
        return os.path.join(self.ref.root, rel)

    def read(self, rel: str) -> bytes:
        path = self.display(rel)
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise CelebaMaskError(path, f"cannot read: {exc.strerror or exc}") from exc

    def exists(self, rel: str) -> bool:
        return os.path.isfile(self.display(rel))

    def present(self, rel: str) -> bool:
        return os.path.lexists(self.display(rel))

    def what_is(self, rel: str, wanted: str) -> str:
        return _not_a_file(self.display(rel), wanted)

    def list_images(self) -> list[str]:
        return self._listing(IMAGE_DIR, IMAGE_NAME, "an image JPEG", folder_depth=0)

    def list_masks(self) -> list[str]:
        return self._listing(MASK_DIR, MASK_NAME, "a mask PNG", folder_depth=1)

    def _listing(self, top: str, pattern: re.Pattern[str], wanted: str, folder_depth: int) -> list[str]:
        """Every entry below ``top`` that is not a folder, at any depth (the index ignores the ones
        too deep, and says so). An entry that is not a readable regular file is listed too, its
        problem kept in ``unusable``: a dangling link dropped here would be a class lost unseen.
        A folder named like a data file is such an entry; any other folder is looked into."""
        # folder_depth: how many levels of folders hold the data (the mask folders 0/ to 14/)
        names: list[str] = []
        pending = [(top, 0)]
        while pending:
            folder, depth = pending.pop()
            with os.scandir(self.display(folder)) as entries:
                for entry in entries:
                    rel = f"{folder}/{entry.name}"
                    if entry.is_file():  # a regular file, or a link to one
                        names.append(rel)
                    elif depth < folder_depth and entry.is_dir():
                        pending.append((rel, depth + 1))
                    elif entry.is_dir(follow_symlinks=False) and not pattern.match(entry.name):
                        pending.append((rel, depth + 1))  # extra files, ignored; no link followed (no loop)
                    else:
                        names.append(rel)
                        self.unusable[rel] = _not_a_file(entry.path, wanted)
        return names


def _not_a_file(path: str, wanted: str) -> str:
    """What a path that is not a regular file is instead, said as the error names it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        try:
            target = os.readlink(path)
        except OSError:
            return f"vanished while the folder was listed, not {wanted}"
        return f"is a dangling symbolic link (to {target}), not {wanted}"
    except OSError as exc:
        return f"cannot be opened ({exc.strerror or exc}), not {wanted}"
    kind = ("a directory" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file")
    return f"is {kind}, not {wanted}"


# Zip compression methods by number (APPNOTE 4.4.5), for naming one Python's zipfile cannot read.
_ZIP_METHODS = {9: "Deflate64", 10: "PKWARE implode", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "xz",
                96: "JPEG variant", 97: "WavPack", 98: "PPMd", 99: "AES-encrypted"}


class ZipFiles(SourceFiles):
    """Reads members in place; the archive's central directory is the one scan."""

    def __init__(self, ref: SourceRef) -> None:
        super().__init__(ref)
        try:
            self.archive = zipfile.ZipFile(ref.location)
        except (OSError, zipfile.BadZipFile) as exc:
            raise CelebaMaskError(ref.location, f"cannot open zip archive: {exc}") from exc
        self.members = {info.filename: info for info in self.archive.infolist() if not info.is_dir()}
        for info in self.members.values():
            if stat.S_ISLNK(info.external_attr >> 16):  # read as is, it would be the link's target path
                self.unusable[self._relative(info.filename)] = ("is a symbolic link inside the zip, not a file; "
                                                               "unpack the zip with a tool that keeps links")

    def member(self, rel: str) -> str:
        return f"{self.ref.root}/{rel}" if self.ref.root else rel

    def display(self, rel: str) -> str:
        return f"{self.ref.location}:{self.member(rel)}"

    def read(self, rel: str) -> bytes:
        info = self.members.get(self.member(rel))
        if info is not None and info.flag_bits & 0x1:
            raise CelebaMaskError(self.display(rel), "cannot read from archive: the member is encrypted "
                                                     "(password-protected); unpack the zip with its password")
        try:
            return self.archive.read(self.member(rel))
        # Deflate64 or another method zipfile lacks (NotImplementedError), damaged (zlib.error,
        # BadZipFile, EOFError, ...): every one names the member
        except Exception as exc:  # noqa: BLE001
            detail = ""
            if isinstance(exc, NotImplementedError) and info is not None:
                method = _ZIP_METHODS.get(info.compress_type, "unknown")
                detail = f" (compression method {info.compress_type}, {method}: unpack the zip with another tool)"
            raise CelebaMaskError(self.display(rel), f"cannot read from archive: {exc}{detail}") from exc

    def exists(self, rel: str) -> bool:
        return self.member(rel) in self.members

    def _relative(self, name: str) -> str:
        return name[len(self.member("")):] if self.ref.root else name

    def _under(self, folder: str) -> list[str]:
        prefix = self.member(folder) + "/"
        return [self._relative(name) for name in self.members if name.startswith(prefix)]

    def list_images(self) -> list[str]:
        return self._under(IMAGE_DIR)

    def list_masks(self) -> list[str]:
        return self._under(MASK_DIR)

    def close(self) -> None:
        self.archive.close()


def locate_source(path: str | Path) -> SourceRef:
    """Accept the dataset root, a folder up to three levels above it, or the downloaded .zip or
    .tar (whatever its name), in the official layout or as a Supervisely (Dataset Ninja) project."""
    from celebamask.sources.archives import find_root

    location = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.exists(location):
        raise CelebaMaskError(location, "source does not exist")
    return find_root(location)


@dataclass
class Problems:
    """What indexing finds wrong. Without ``skip_bad`` the first problem raises; with it, a
    problem of one sample marks that sample (its first problem is kept) and any other is listed."""

    skip_bad: bool
    listed: list[CelebaMaskError] = field(default_factory=list)  # files that belong to no row
    of_sample: dict[int, CelebaMaskError] = field(default_factory=dict)

    def report(self, error: CelebaMaskError, index: int | None = None) -> None:
        if not self.skip_bad:
            raise error
        if index is None:
            self.listed.append(error)
        else:
            self.of_sample.setdefault(index, error)


@dataclass
class SourceIndex:
    ref: SourceRef
    samples: list[Sample]
    annotations: dict[str, str]  # annotation file name -> relative path, for those present
    ignored_files: list[str]
    problems: list[CelebaMaskError]  # files with no row of their own, skipped on request

    @property
    def mask_count(self) -> int:
        return sum(len(s.masks) for s in self.samples)

    def fingerprint(self, limit: int | None = None) -> str:
        """Identifies which files a build used, so a resume can refuse a different source."""
        digest = hashlib.sha256()
        for sample in self.samples[:limit]:
            digest.update(f"{sample.image}|{'|'.join(sorted(sample.masks.values()))}\n".encode())
        return digest.hexdigest()


def index_source(ref: SourceRef, skip_bad: bool = False) -> SourceIndex:
    """List images and masks once, parse their names, and pair them; refuse anything inconsistent.

    With ``skip_bad`` a problem that concerns one sample marks that sample instead of stopping,
    and files that belong to no row are kept in ``problems``.
    """
    if ref.layout == SUPERVISELY:
        from celebamask.sources.supervisely import index_supervisely

        index = index_supervisely(ref, skip_bad)
    else:
        index = _index_official(ref, skip_bad)
    _warn_ignored(ref, index.ignored_files)
    return index


# How many ignored paths the warning names (it is one line, whatever the count).
IGNORED_SHOWN = 3


def _warn_ignored(ref: SourceRef, ignored: list[str]) -> None:
    """Files outside the layout are legal, but one put a folder too deep loses its class unseen:
    say how many were passed over, naming the first few, in one line."""
    if not ignored:
        return
    shown = ", ".join(ignored[:IGNORED_SHOWN])
    more = f" and {len(ignored) - IGNORED_SHOWN} more" if len(ignored) > IGNORED_SHOWN else ""
    layout = (f"{IMAGE_DIR}/<index>.jpg or {MASK_DIR}/<folder>/<index:05d>_<class>.png" if ref.layout == OFFICIAL
              else "ds*/img/<index>.jpg or ds*/ann/<index>.jpg.json")
    log.warning("%s: ignored %d file%s not named or placed as %s: %s%s", ref.root if not ref.archive else ref.location,
                len(ignored), "" if len(ignored) == 1 else "s", layout, shown, more)


def _index_official(ref: SourceRef, skip_bad: bool) -> SourceIndex:
    with ref.open() as files:
        image_names = files.list_images()
        mask_names = files.list_masks()
        unusable = dict(files.unusable)
        problems = Problems(skip_bad)
        report = problems.report
        annotations = {name: name for name in ANNOTATION_FILES if files.exists(name)}
        for name in ANNOTATION_FILES:
            if name not in annotations and files.present(name):  # a dangling link is not an absent file
                report(CelebaMaskError(files.display(name), files.what_is(name, "an annotation file")))
        images_dir = files.display(IMAGE_DIR)
        masks_dir = files.display(MASK_DIR)
        display = files.display

    ignored: list[str] = []
    images: dict[int, str] = {}
    for rel in sorted(image_names):
        base = rel.rsplit("/", 1)[-1]
        match = IMAGE_NAME.match(base)
        if not match or rel.count("/") != 1:
            ignored.append(rel)
            continue
        index = int(match.group(1))
        if index in images:
            report(CelebaMaskError(display(rel), f"second image for sample {index} (also {images[index]})"))
            continue
        images[index] = rel
        if rel in unusable:
            report(CelebaMaskError(display(rel), unusable[rel]), index)
    if not images:
        raise CelebaMaskError(images_dir, "no images: looked for files named <index>.jpg")

    masks: dict[int, dict[str, str]] = {}
    for rel in sorted(mask_names):
        base = rel.rsplit("/", 1)[-1]
        # a mask lies in MASK_DIR/<folder>/ (or in MASK_DIR itself, as some copies have it)
        if base.startswith(".") or not base.lower().endswith(".png") or rel.count("/") > 2:
            ignored.append(rel)
            continue
        match = MASK_NAME.match(base)
        if not match:
            report(CelebaMaskError(display(rel), "mask file name is not <index:05d>_<class>.png"))
            continue
        index, class_name = int(match.group(1)), match.group(2).lower()
        if class_name in IGNORED_MASK_NAMES:
            ignored.append(rel)
            continue
        per_sample = masks.setdefault(index, {})
        if class_name not in MASK_CLASS_NAMES:
            known = ", ".join(MASK_CLASS_NAMES)
            report(CelebaMaskError(display(rel), f"unknown class {class_name!r}; known: {known}"), index)
            continue
        if class_name in per_sample:
            report(CelebaMaskError(display(rel), f"second {class_name} mask for sample {index} (also {per_sample[class_name]})"), index)
            continue
        if rel in unusable:
            report(CelebaMaskError(display(rel), unusable[rel]), index)
            continue
        per_sample[class_name] = rel
    if not masks:
        raise CelebaMaskError(masks_dir, "no masks: looked for <index:05d>_<class>.png in its numbered folders")

    orphans = sorted(set(masks) - set(images))
    for orphan in orphans:
        first = display(next(iter(masks[orphan].values()))) if masks[orphan] else masks_dir
        report(CelebaMaskError(first, f"mask with no image: {IMAGE_DIR}/{orphan}.jpg is missing ({len(orphans)} such samples)"))
    for index in sorted(images):
        if not masks.get(index):
            report(CelebaMaskError(display(images[index]), f"image with no masks in {MASK_DIR}/"), index)
    samples = [Sample(index, images[index], masks.get(index, {}), problems.of_sample.get(index)) for index in sorted(images)]
    return SourceIndex(ref, samples, annotations, sorted(ignored), problems.listed)
