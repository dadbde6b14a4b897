"""Where a store lives: a local folder, or a URL zarr can reach through fsspec (s3://, gs://,
memory://, …). One picklable value the coordinator and every worker open for themselves.

Local folders use zarr's LocalStore (atomic chunk writes, safe against a kill mid-write);
``file://`` URLs are treated as local folders for that reason.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

from celebamask.errors import CelebaMaskError


@dataclass(frozen=True)
class StoreTarget:
    url: str  # an absolute local path, or a URL with a scheme
    storage_options: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_local(self) -> bool:
        return "://" not in self.url

    @property
    def in_process_only(self) -> bool:
        """fsspec's memory filesystem lives in one process: workers must be threads."""
        return self.url.startswith("memory://")

    def __str__(self) -> str:
        return self.url

    def zarr_store(self, read_only: bool = False) -> LocalStore | FsspecStore:
        if self.is_local:
            return LocalStore(self.url, read_only=read_only)
        try:
            return FsspecStore.from_url(self.url, storage_options=self.storage_options or None, read_only=read_only)
        except ImportError as exc:
            raise CelebaMaskError(self.url, f"no filesystem for this URL is installed ({exc}); "
                                            "for s3:// install the [s3] extra") from exc

    def _listed_now(self) -> FsspecStore:
        """A read-only URL store that lists anew. fsspec keeps each folder's listing per filesystem
        and never refreshes one it has, so objects that workers (other processes) wrote after the
        coordinator first listed would be missing or reported as not found."""
        store = self.zarr_store(read_only=True)
        store.fs.invalidate_cache()  # type: ignore[union-attr]
        return store  # type: ignore[return-value]

    def open_group(self, mode: str = "r", **kwargs: Any) -> zarr.Group:
        return zarr.open_group(self.zarr_store(read_only=mode == "r"), mode=mode, zarr_format=3, **kwargs)  # type: ignore[arg-type]

    def exists(self) -> bool:
        if self.is_local:
            return os.path.lexists(self.url)
        return not sync(self._listed_now().is_empty(""))

    def is_empty_folder(self) -> bool:
        if self.is_local:
            return os.path.isdir(self.url) and not os.listdir(self.url)
        return not self.exists()

    def list_keys(self) -> list[str]:
        """Every key (file) in the store, sorted."""
        store = self.zarr_store(read_only=True)

        async def collect() -> list[str]:
            return [key async for key in store.list()]

        return sorted(sync(collect()))

    def read_key(self, key: str) -> bytes:
        if self.is_local:
            with open(os.path.join(self.url, key), "rb") as handle:
                return handle.read()
        from zarr.core.buffer import default_buffer_prototype

        buffer = sync(self.zarr_store(read_only=True).get(key, prototype=default_buffer_prototype()))
        if buffer is None:
            raise FileNotFoundError(f"{self.url}/{key}")
        return buffer.to_bytes()

    def has_key(self, key: str) -> bool:
        if self.is_local:
            return os.path.isfile(os.path.join(self.url, key))
        return bool(sync(self._listed_now().exists(key)))

    def delete(self) -> None:
        if self.is_local:
            _delete_local_store(self.url)
        else:
            sync(self.zarr_store().delete_dir(""))

    def nbytes(self) -> int:
        if self.is_local:
            total = 0
            for folder, _, files in os.walk(self.url):
                total += sum(os.path.getsize(os.path.join(folder, name)) for name in files)
            return total
        return int(sync(self._listed_now().getsize_prefix("")))


def _delete_local_store(root: str) -> None:
    """Deepest first, so each array's zarr.json goes after its chunks and the group's zarr.json
    last: a delete cut off midway (kill -9) leaves a store ``--overwrite`` still knows as its own."""
    for folder, dirs, files in os.walk(root, topdown=False):
        for name in files:
            if not (folder == root and name == "zarr.json"):
                os.remove(os.path.join(folder, name))
        for name in dirs:
            path = os.path.join(folder, name)
            os.remove(path) if os.path.islink(path) else os.rmdir(path)
    shutil.rmtree(root)


def as_target(location: StoreTarget | str | Path, storage_options: dict[str, Any] | None = None) -> StoreTarget:
    if isinstance(location, StoreTarget):
        return location
    text = os.fspath(location)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if "://" not in text:
        return StoreTarget(os.path.abspath(os.path.expanduser(text)))
    return StoreTarget(text, dict(storage_options or {}))


def parse_storage_options(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs from the command line; values that read as JSON (true, 3, null) are typed."""
    import json

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CelebaMaskError(pair, "storage option must be key=value")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options
