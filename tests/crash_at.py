"""Run ``celebamask`` in this process and SIGKILL it at its N-th write into a local store.

    CRASH_AT=N CRASH_MODE=before|mid python -m tests.crash_at build SOURCE STORE --jobs 1 ...

``before``: killed just before the write; ``mid``: the write's temporary file is on disk but not
yet renamed into place. With ``CRASH_AT=0`` nothing is killed and every write's key is printed to
stderr as ``write <key>``, so a test can choose its moments. Use ``--jobs 1``: worker processes
would not carry the hook.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import zarr.storage._local as zarr_local

import celebamask.store.chunks as chunks
from celebamask.cli import main

CRASH_AT = int(os.environ.get("CRASH_AT", "0"))
MODE = os.environ.get("CRASH_MODE", "before")
_writes = 0
_lock = threading.Lock()  # zarr writes from several threads


def _reached(path: str | Path, temporary: bytes) -> bool:
    global _writes
    with _lock:
        _writes += 1
        if not CRASH_AT:
            sys.stderr.write(f"write {path}\n")
        if _writes != CRASH_AT:
            return False
    if MODE == "mid":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(f"{path}.{os.getpid()}.partial", "wb") as handle:
            handle.write(temporary)
    os.kill(os.getpid(), signal.SIGKILL)
    return True


_real_put, _real_write_file = zarr_local._put, chunks.write_file


def _put(path, value, exclusive=False):  # type: ignore[no-untyped-def]
    _reached(path, bytes(value.as_buffer_like()))
    return _real_put(path, value, exclusive)


def _write_file(path, parts):  # type: ignore[no-untyped-def]
    _reached(path, b"".join(bytes(memoryview(part)) for part in parts))
    return _real_write_file(path, parts)


zarr_local._put = _put
chunks.write_file = _write_file

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
