"""PyTorch access: a map-style Dataset over a store, safe with ``DataLoader(num_workers > 0)``.

Every worker process opens the store itself on first use: the dataset pickles (spawn) or is
inherited (fork) as a path and a list of rows, never as open zarr handles. Needs the ``torch`` extra.

With torchvision installed, ``image`` is a ``tv_tensors.Image`` and ``label``/``masks`` are
``tv_tensors.Mask``: torchvision's v2 transforms then move them together (a plain tensor beside an
Image is passed through untouched, so an unwrapped label would silently stay unflipped).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from celebamask.config import LABEL_FILL
from celebamask.read.reader import CelebAMaskStore, open_store
from celebamask.read.rows import selected_rows

try:
    from torchvision import tv_tensors
except ImportError:  # torchvision is optional; without it the samples are plain tensors
    tv_tensors = None

Sample = dict[str, Any]


class CelebAMaskDataset(torch.utils.data.Dataset):
    """Samples of a store as ``{"image", "label", "sample_id"}`` tensors, in row order.

    - ``image``: (3, H, W) uint8, or float32 in [0, 1] with ``float_image=True``.
    - ``label``: (H, W) int64 class ids.
    - ``sample_id``: the dataset index (``{sample_id}.jpg``) of the row.
    - ``masks`` (with ``masks=True``): (K, H, W) uint8, 1 where the k-th class of ``mask_names``
      has its own mask on (before painting: overlaps kept), else 0; needs the store's ``masks``.

    With torchvision installed, ``image`` is a ``tv_tensors.Image`` and ``label``/``masks`` are
    ``tv_tensors.Mask`` (plain tensors otherwise), so a v2 transform such as
    ``v2.RandomHorizontalFlip(p=1)`` flips all of them. Geometric v2 transforms resample masks by
    nearest neighbour; give the label its ignore value for the uncovered area, e.g.
    ``v2.RandomRotation(30, fill={tv_tensors.Image: 0, tv_tensors.Mask: 255})``.

    ``split``: a split name (``"train"``, ``"val"``, ``"test"``) or several; needs the store's
    ``split`` array. Rows a build marked invalid (a ``valid`` array, if the store has one) are
    always left out; ``exclude_flagged=True`` also leaves out the known flawed samples
    (configs/known_issues.toml, the store's ``flags`` array).

    ``classes`` chooses the label ids a model sees:
    - ``None``: the store's own ids (its class table, ``store.classes``);
    - a sequence of class names: the k-th name becomes id k;
    - a mapping ``{class name: id}``: several classes may share an id (e.g. both eyes → 1).
    Pixels of classes not chosen, and never-written pixels (label 255), become ``ignore_index``
    (default 255, to use as ``CrossEntropyLoss(ignore_index=255)``). Include ``"background"``
    to train on it.

    ``store`` may be a URL (``s3://…``) with fsspec ``storage_options``, or an opened store
    (whose storage options the workers reuse).

    ``transform(sample) -> sample`` is applied last, to the dict of tensors, so an augmentation
    can move image and label together.
    """

    def __init__(
        self,
        store: str | Path | CelebAMaskStore,
        split: str | Sequence[str] | None = None,
        classes: Sequence[str] | Mapping[str, int] | None = None,
        transform: Callable[[Sample], Sample] | None = None,
        *,
        float_image: bool = False,
        ignore_index: int = LABEL_FILL,
        storage_options: dict[str, Any] | None = None,
        exclude_flagged: bool = False,
        masks: bool = False,
    ) -> None:
        if isinstance(store, CelebAMaskStore):
            opened, self.allow_incomplete = store, not store.complete  # the caller already chose
        else:
            opened, self.allow_incomplete = open_store(store, storage_options=storage_options), False
        self.location = opened.location
        self.storage_options = opened.storage_options
        self.transform = transform
        self.float_image = float_image
        self.ignore_index = ignore_index
        self.rows = selected_rows(opened, split, exclude_flagged)
        self.label_lookup, self.class_names = _label_lookup(opened, classes, ignore_index)
        self.mask_names: list[str] = opened.mask_bits if masks else []  # an error if the store has none
        self.with_masks = masks
        self._store: CelebAMaskStore | None = None
        self._opened_in: int | None = None

    @property
    def num_classes(self) -> int:
        """Number of label ids a model predicts (``ignore_index`` not counted)."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Sample:
        row = int(self.rows[index])
        stored = self._open()[row]  # the store's direct row reader: one read per array
        image = torch.from_numpy(np.ascontiguousarray(stored["image"].transpose(2, 0, 1)))
        if self.float_image:
            image = image.to(torch.float32).div_(255)
        label = torch.from_numpy(self.label_lookup[stored["label"]])
        sample: Sample = {"image": _as_image(image), "label": _as_mask(label), "sample_id": stored["sample_id"]}
        if self.with_masks:
            sample["masks"] = _as_mask(torch.from_numpy(self._mask_planes(row)))
        return self.transform(sample) if self.transform else sample

    def _mask_planes(self, row: int) -> np.ndarray:
        """(K, H, W) uint8 0/1 from the row's bits: bit k of ``masks`` is plane k."""
        bits = self._open().mask_bits_of(row)
        shifts = np.arange(len(self.mask_names), dtype=np.uint32)[:, None, None]
        return ((bits[None] >> shifts) & np.uint32(1)).astype(np.uint8)

    def __getstate__(self) -> dict[str, Any]:
        # What goes to a spawned worker: the path and the rows, never open zarr handles.
        return {**self.__dict__, "_store": None, "_opened_in": None}

    def _open(self) -> CelebAMaskStore:
        """Open once per process: a forked worker inherits the parent's object, so check the pid."""
        if self._store is None or self._opened_in != os.getpid():
            self._store = open_store(self.location, allow_incomplete=self.allow_incomplete,
                                     storage_options=self.storage_options)
            self._opened_in = os.getpid()
        return self._store


def _label_lookup(
    store: CelebAMaskStore, classes: Sequence[str] | Mapping[str, int] | None, ignore_index: int
) -> tuple[np.ndarray, list[str]]:
    """A 256-entry table from stored label value to training id, and the names of the training ids."""
    lookup = np.full(256, ignore_index, dtype=np.int64)
    if classes is None:
        names = [""] * (max(c.id for c in store.classes) + 1)
        for info in store.classes:
            lookup[info.id] = info.id
            names[info.id] = info.name
        return lookup, names
    if isinstance(classes, str):
        raise TypeError("classes must be a list of class names or a {name: id} mapping, not a single string")
    if isinstance(classes, Mapping):
        wanted = {str(name): int(new_id) for name, new_id in classes.items()}
    else:
        listed = [str(name) for name in classes]
        if len(set(listed)) != len(listed):
            raise ValueError(f"classes lists a name twice: {listed}")
        wanted = {name: k for k, name in enumerate(listed)}
    if any(new_id < 0 for new_id in wanted.values()):
        raise ValueError(f"class ids must be non-negative: {wanted}")
    count = max(wanted.values(), default=-1) + 1
    grouped: list[list[str]] = [[] for _ in range(count)]
    for name, new_id in wanted.items():
        lookup[store.class_id(name)] = new_id  # KeyError names the store's classes
        grouped[new_id].append(name)
    return lookup, ["+".join(group) for group in grouped]


def _as_image(tensor: torch.Tensor) -> torch.Tensor:
    return tv_tensors.Image(tensor) if tv_tensors is not None else tensor


def _as_mask(tensor: torch.Tensor) -> torch.Tensor:
    return tv_tensors.Mask(tensor) if tv_tensors is not None else tensor
