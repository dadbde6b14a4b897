"""Read-time conventions from the ``masks`` array: any config's label maps, and each class's own
(unpainted) mask. Mixed into :class:`celebamask.read.reader.CelebAMaskStore`.

A store built with ``--no-masks`` reads everywhere else; what needs the masks raises one line
saying how to get them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr

from celebamask.config import MASK_SIZE, ClassConfig, load_config, parse_config
from celebamask.errors import CelebaMaskError
from celebamask.store.maskbits import BIT_OF, MASK_BITS, paint_bits

if TYPE_CHECKING:
    from celebamask.store.shards import RowReader

Rows = int | slice | Sequence[int] | np.ndarray


class MaskQueries:
    group: zarr.Group
    location: str
    labels: zarr.Array

    if TYPE_CHECKING:
        def __len__(self) -> int: ...
        def _row(self, row: int) -> int: ...
        def _read_row(self, array: zarr.Array, row: int) -> np.ndarray: ...
        _row_readers: dict[str, RowReader]

    @property
    def has_masks(self) -> bool:
        """Whether the store keeps every class's own mask (built without ``--no-masks``)."""
        return "masks" in self.group

    @property
    def masks(self) -> zarr.Array:
        """The lazy ``masks`` array (sample, y, x) uint32: bit k set where class ``mask_bits[k]`` is on."""
        return self._masks_array("the masks array")

    @property
    def mask_bits(self) -> list[str]:
        """Mask class names in bit order (``masks.attrs["bits"]``)."""
        return list(self.masks.attrs["bits"])  # type: ignore[arg-type]

    def _masks_array(self, what: str) -> zarr.Array:
        if "masks" not in self.group:
            raise CelebaMaskError(self.location, f"{what} needs the store's 'masks' array, which this store was built "
                                                 "without (--no-masks); rebuild it without --no-masks")
        return self.group["masks"]  # type: ignore[return-value]

    def mask_bits_of(self, row: int) -> np.ndarray:
        """Row ``row`` of ``masks``: (y, x) uint32 bits."""
        return self._read_row(self._masks_array("mask bits"), self._row(row))

    def own_mask(self, row: int, names: str | Iterable[str]) -> np.ndarray:
        """Where any of the classes ``names`` has its own mask on in ``row`` (before painting: overlaps kept)."""
        wanted = [names] if isinstance(names, str) else list(names)
        bits = self._masks_array(f"the unpainted mask of {', '.join(wanted)}")
        pattern = 0
        for name in wanted:
            if name not in BIT_OF:
                raise KeyError(f"unknown mask class {name!r}; the masks hold: {', '.join(MASK_BITS)}")
            pattern |= 1 << BIT_OF[name]
        return (self._read_row(bits, self._row(row)) & np.uint32(pattern)) != 0

    def label_maps(self, rows: Rows, config: str | Path | ClassConfig | None = None) -> np.ndarray:
        """Label maps of ``rows`` painted from ``masks`` by ``config`` (a preset name, a TOML path or
        a loaded config; default the store's own), (n, size, size) uint8 — or (size, size) for an int.

        Bit-identical to building the store with that config: masks sit on the store's grid, so the
        maps have the store's size. A config whose ``size`` differs from the store's is rendered
        exactly only from a full-resolution (512) store, by the build's nearest resize; from a
        smaller store the config's paint order is used at the store's size when the config asks
        for 512 (every preset), and anything else is refused.
        """
        masks = self._masks_array("label_maps")
        store_size = int(masks.shape[-1])
        chosen = self._render_config(config, store_size)
        indices = self._row_indices(rows)
        maps = self._paint_rows(masks, indices, chosen)
        if chosen.size != store_size:
            from celebamask.store.maskbits import resize_label

            maps = np.stack([resize_label(m, chosen.size) for m in maps]) if len(maps) else \
                np.zeros((0, chosen.size, chosen.size), dtype=np.uint8)
        return maps[0] if isinstance(rows, (int, np.integer)) else maps

    def _render_config(self, config: str | Path | ClassConfig | None, store_size: int) -> ClassConfig:
        if config is None:
            return self.own_config()
        loaded = config if isinstance(config, ClassConfig) else load_config(config)
        if loaded.size == store_size:
            return loaded
        if store_size == MASK_SIZE:
            return loaded  # painted at 512, then nearest-resized as the build does
        if loaded.size == MASK_SIZE:
            return replace(loaded, size=store_size)
        raise CelebaMaskError(loaded.path, f"config size {loaded.size} cannot be rendered from a store of size "
                                           f"{store_size} (a build resizes from 512); use a 512 store or size {store_size}")

    def own_config(self) -> ClassConfig:
        """The config the store was built with, as recorded in its provenance."""
        recorded = dict(self.group.attrs.get("provenance", {})).get("config", {})  # type: ignore[call-overload]
        if "text" not in recorded:
            raise CelebaMaskError(self.location, "records no build config in its provenance")
        text = str(recorded["text"])
        return parse_config(tomllib.loads(text), text, str(recorded.get("path", "recorded config")))

    def _row_indices(self, rows: Rows) -> np.ndarray:
        if isinstance(rows, slice):
            return np.arange(len(self))[rows]
        if isinstance(rows, (int, np.integer)):
            return np.asarray([self._row(int(rows))])
        return np.asarray([self._row(int(r)) for r in rows], dtype=np.int64)

    def _paint_rows(self, masks: zarr.Array, indices: np.ndarray, config: ClassConfig) -> np.ndarray:
        """Label maps of ``indices`` painted by ``config``, each row painted as soon as it is
        decoded (on the decode pool) where the shard files are read directly."""
        from celebamask.store.shards import RowReader, convert_rows

        if masks.path not in self._row_readers:
            self._row_readers[masks.path] = RowReader(masks, must_exist=self.complete)
        reader = self._row_readers[masks.path]
        if reader.files is None:
            return paint_bits(self._mask_rows(masks, indices), config)
        out = np.empty((len(indices), *masks.shape[1:]), dtype=np.uint8)
        return convert_rows(reader, indices, lambda bits, target: paint_bits(bits, config, out=target), out)

    def _mask_rows(self, masks: zarr.Array, indices: np.ndarray) -> np.ndarray:
        size = masks.shape[1:]
        out = np.empty((len(indices), *size), dtype=np.uint32)
        if len(indices) and np.all(np.diff(indices) == 1) and len(indices) > 1:
            from celebamask.store.shards import RowReader, read_rows

            if masks.path not in self._row_readers:
                self._row_readers[masks.path] = RowReader(masks, must_exist=self.complete)
            (block,) = read_rows([(self._row_readers[masks.path], int(indices[0]), int(indices[-1]) + 1)])
            return np.asarray(block)
        for k, row in enumerate(indices):
            out[k] = self._read_row(masks, int(row))
        return out
