"""One writer per store: a lock file beside the store, held for the whole build.

The lock is ``STORE.lock`` (a sibling, so ``--overwrite`` deleting the store never deletes the
lock that protects it). It is created atomically: ``O_CREAT | O_EXCL`` for a local folder, an
exclusive create (``mode="xb"``: S3's ``If-None-Match: *``, or the filesystem's own) for an
fsspec URL; a filesystem that has no exclusive create gets write-then-read-back, which narrows
but cannot close the race (documented in the README). The file records the owner's pid, host,
start time and build id, so a refused build names who holds the store, and a lock left by a
build that died on this host (its pid gone, or reused by another process) is recognised as
stale: it is taken over with a warning; a lock whose owner cannot be judged from here (another host, an
unreadable file) is broken with ``--break-lock``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from celebamask.errors import CelebaMaskError
from celebamask.store.location import StoreTarget

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


@dataclass(frozen=True)
class LockOwner:
    pid: int
    host: str
    started: str
    build_id: str
    process_start: str | None = None  # /proc start time: a reused pid is another process

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}"

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def lock_location(target: StoreTarget) -> str:
    """Where the lock of ``target`` lives: ``STORE.lock`` beside it. A local store's is keyed on
    its real path (symbolic links resolved): a build through a link to the store takes the same
    lock as one naming the store itself."""
    if target.is_local:
        return os.path.realpath(target.url) + LOCK_SUFFIX
    return target.url.rstrip("/") + LOCK_SUFFIX


def new_build_id() -> str:
    return uuid.uuid4().hex


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


def _this_process(build_id: str) -> LockOwner:
    return LockOwner(os.getpid(), socket.gethostname(), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     build_id, _process_start(os.getpid()))


def is_stale(owner: LockOwner) -> bool:
    """True only when the owner ran on this host and is certainly gone: a lock of another host
    cannot be judged from here."""
    if owner.host != socket.gethostname():
        return False
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    started = _process_start(owner.pid)
    return owner.process_start is not None and started is not None and started != owner.process_start


def _parse(text: bytes) -> LockOwner | None:
    try:
        data: dict[str, Any] = json.loads(text)
        return LockOwner(int(data["pid"]), str(data["host"]), str(data["started"]), str(data["build_id"]),
                         data.get("process_start"))
    except (ValueError, KeyError, TypeError):
        return None


class _Backend:
    """Exclusive create, read and delete of the lock file: a local path or an fsspec URL."""

    def __init__(self, target: StoreTarget) -> None:
        self.path = lock_location(target)
        self.fs: Any = None
        if not target.is_local:
            import fsspec

            self.fs, self.path = fsspec.core.url_to_fs(self.path, **(target.storage_options or {}))

    def create(self, content: str) -> bool:
        """Create the lock holding ``content``; False if it exists already."""
        if self.fs is None:
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(descriptor, "w") as handle:
                handle.write(content)
            return True
        try:
            with self.fs.open(self.path, "xb") as handle:
                handle.write(content.encode())
            return True
        except FileExistsError:
            return False
        except (NotImplementedError, ValueError, TypeError):  # no exclusive create: write, read back
            if self.fs.exists(self.path):
                return False
            self.fs.pipe_file(self.path, content.encode())
            return self.read() == content.encode()

    def read(self) -> bytes | None:
        try:
            if self.fs is None:
                with open(self.path, "rb") as handle:
                    return handle.read()
            self.fs.invalidate_cache()
            return bytes(self.fs.cat_file(self.path))
        except (FileNotFoundError, OSError):
            return None

    def take_over(self, stale: bytes) -> bool:
        """Remove the lock if it still holds ``stale``; False when another build took it over first.
        Locally by an atomic rename aside: two builds taking over one stale lock cannot both win
        (one would otherwise delete the lock the other had just created). A fresh lock moved aside
        by mistake is put back (a hard link: only while the path is free). Object stores have no
        atomic rename: there the lock is compared, then deleted."""
        if self.fs is not None:
            if self.read() != stale:
                return False
            self.remove()
            return True
        aside = f"{self.path}.{os.getpid()}.{uuid.uuid4().hex}.stale"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        try:
            with open(aside, "rb") as handle:
                if handle.read() == stale:
                    return True
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            return False
        finally:
            os.remove(aside)

    def remove(self) -> None:
        try:
            if self.fs is None:
                os.remove(self.path)
            else:
                self.fs.rm_file(self.path)
        except FileNotFoundError:
            pass


def _refusal(target: StoreTarget, location: str, owner: LockOwner | None) -> CelebaMaskError:
    if owner is None:
        return CelebaMaskError(target, f"locked by {location}, which is unreadable; if no build is running on "
                                       "this store, pass --break-lock")
    if is_stale(owner):
        return CelebaMaskError(target, f"locked by a build that is no longer running ({owner.describe()}): "
                                       f"a stale lock; pass --break-lock to remove {location}")
    if owner.host != socket.gethostname():  # cannot be judged from here: the user may vouch for it
        return CelebaMaskError(target, f"locked by another build ({owner.describe()}); wait for it to finish or stop "
                                       f"it; if no build runs on {owner.host} any more, pass --break-lock "
                                       f"(lock file {location})")
    return CelebaMaskError(target, f"locked by another build ({owner.describe()}); wait for it to finish or stop it "
                                   f"(lock file {location})")


def _may_take_over(owner: LockOwner | None, break_lock: bool) -> bool:
    """A holder proven gone (this host, pid dead or reused) cannot be writing; with ``break_lock``
    the user vouches for one that cannot be judged from here. A live build on this host, never."""
    if owner is not None and is_stale(owner):
        return True
    return break_lock and (owner is None or owner.host != socket.gethostname())


def held_by_another(target: StoreTarget, break_lock: bool = False) -> bool:
    """True when ``target``'s lock is there and this build could not take it over: it would be
    refused naming the holder."""
    text = _Backend(target).read()
    return text is not None and not _may_take_over(_parse(text), break_lock)


@contextmanager
def store_lock(target: StoreTarget, build_id: str, break_lock: bool = False) -> Iterator[LockOwner]:
    """Hold the store's lock for the ``with`` block, released however the block ends.

    ``break_lock`` removes a lock whose owner is certainly gone (or unreadable, or on another
    host: the user then vouches that no build runs there); a live owner on this host is never broken.
    """
    backend = _Backend(target)
    me = _this_process(build_id)
    content = me.to_json()
    try:
        created = backend.create(content)
        if not created:
            text = backend.read()
            owner = _parse(text) if text is not None else None
            # A holder proven gone (this host, pid dead or reused) cannot be writing: a killed build
            # must be resumable as it is, so its lock is taken over and the takeover reported.
            if _may_take_over(owner, break_lock):
                log.warning("%s: removed the lock of a build that is no longer running (%s)", target,
                            owner.describe() if owner is not None else "unreadable lock file")
                if text is None:  # unreadable: nothing to compare, removed as it is
                    backend.remove()
                    taken = True
                else:
                    taken = backend.take_over(text)
                created = taken and backend.create(content)
    except FileNotFoundError as exc:
        raise CelebaMaskError(target, f"cannot create its lock {backend.path}: the parent folder does not exist") from exc
    except PermissionError as exc:
        raise CelebaMaskError(target, f"cannot create its lock {backend.path}: permission denied") from exc
    if not created:
        text = backend.read()
        raise _refusal(target, backend.path, _parse(text) if text is not None else None)
    try:
        yield me
    finally:
        if backend.read() == content.encode():  # never remove a lock another build took after a break
            backend.remove()
