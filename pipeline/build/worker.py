"""What one parallel task does: read, merge and resize one shard's samples, then write that shard.

Worker processes import this module and nothing of zarr: for a local store the coordinator
hands each task plain :class:`~celebamask.store.chunks.RowFiles` descriptions, so a worker starts in
about a third of the time (zarr's import alone costs more than numpy's). Only a store at a URL
(s3://, …) makes the worker write through zarr, importing it then.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
from PIL import Image

from celebamask.build.merge import decode_mask_rows, paint_label
from celebamask.build.resize import decode_image
from celebamask.config import LABEL_FILL, MASK_SIZE, ClassConfig
from celebamask.errors import CelebaMaskError
from celebamask.sources.index import Sample, SourceFiles, SourceRef
from celebamask.store.chunks import RowFiles, RowWriter, cannot_write_shard
from celebamask.store.maskbits import MASK_BITS, bit_areas, bit_masks_or, resize_label
from celebamask.store.owner import local_build_id, replaced_store, stored_build_id

if TYPE_CHECKING:
    from celebamask.store.location import StoreTarget

OnError = Literal["fail", "skip"]
# The arrays a shard task writes its rows of (the coordinator describes their files for it).
ROW_ARRAYS = ("image", "label", "valid", "class_present", "class_area", "masks",
              "class_present_unpainted", "class_area_unpainted")


@dataclass
class ShardResult:
    shard: int
    samples: int
    skipped: list[dict[str, Any]] = field(default_factory=list)
    error: CelebaMaskError | None = None  # set when the shard could not be built; nothing recorded


@dataclass(frozen=True)
class ShardOwner:
    """Who will record a shard once its task returns: the build whose id the store must still
    carry, and (local worker processes) the coordinator that must still be their parent.

    A coordinator killed with -9 leaves its loky workers running their current task; without
    this check they would write that dead build's rows into whatever store is at the path by
    then (a new ``--overwrite`` build that completed meanwhile would say complete with them).
    """

    build_id: str
    coordinator: int | None = None  # the coordinator's pid; None for dask workers (not its children)


def ensure_still_owned(store: StoreTarget | Mapping[str, RowFiles], owner: ShardOwner) -> None:
    """Stop a task, before it writes, whose coordinator is gone or whose store now records another
    build (or none): one small read a shard, none a sample. Not caught: a store replaced in the
    milliseconds between this check and the write (a task stalled exactly there); accepted, as
    closing that would need a lock the workers hold, and a new build still rewrites every shard
    it builds after that moment."""
    where = os.path.dirname(store["image"].folder) if isinstance(store, Mapping) else str(store)
    # in the coordinator itself (threads, one job) or its child: otherwise re-parented, nobody records the shard
    if owner.coordinator is not None and owner.coordinator not in (os.getpid(), os.getppid()):
        raise CelebaMaskError(where, f"the build that handed out this shard (coordinator pid {owner.coordinator}) is "
                                     "no longer running: nobody would record the shard, so it is not written")
    found = local_build_id(where) if isinstance(store, Mapping) else stored_build_id(store)
    if found != owner.build_id:
        raise replaced_store(where, found, owner.build_id)


def _prepare_worker_process() -> None:
    """Once per worker process: Ctrl-C ignored, no blosc threads (the workers already use every core: blosc's
    own threads would only compete with them), and freed memory kept for reuse (see
    :func:`reuse_freed_memory`)."""
    global _worker_prepared
    if _worker_prepared or multiprocessing.current_process().name == "MainProcess":
        return
    _worker_prepared = True
    if threading.current_thread() is threading.main_thread():  # a loky worker (dask runs tasks in threads)
        # Ctrl-C is the coordinator's to handle (it stops the workers): one caught between two
        # tasks would print loky's traceback beside the one "interrupted" line
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    import numcodecs.blosc

    numcodecs.blosc.use_threads = False
    _process_local_blosc_mutex(numcodecs.blosc)
    reuse_freed_memory()


def _process_local_blosc_mutex(blosc: Any) -> None:
    """numcodecs creates its blosc lock lazily as a named semaphore (``multiprocessing.Lock()``,
    spawn context), registered with a resource tracker: a worker stopped on Ctrl-C (joblib kills
    it) leaves it behind, reported at exit as "leaked semaphore objects". The lock only guards
    blosc within this process, so an unnamed one (fork context: unlinked at once, never
    tracked) does the same job and cannot leak."""
    if not getattr(blosc, "_MUTEX_IS_INIT", True) and "fork" in multiprocessing.get_all_start_methods():
        blosc._MUTEX = multiprocessing.get_context("fork").Lock()
        blosc._MUTEX_IS_INIT = True


_worker_prepared = False
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt() parameter numbers


def reuse_freed_memory() -> None:
    """Make glibc's malloc serve the per-sample arrays (decoded masks, label maps, numpy's
    temporaries: 0.25-3 MB each) from memory the process freed a moment ago.

    By default malloc maps each block above 128 KB fresh from the kernel and returns it when
    freed, or, once its threshold has adapted, trims the heap back: either way every sample
    touches new pages, ~130 page faults (~0.3 ms) a sample, and how many depends on what the
    process allocated before. Fixed thresholds make that cost zero and the same in every process.
    Elsewhere than glibc (macOS, Windows, musl's no-op mallopt) this does nothing.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no C library by that call (Windows), or no mallopt
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest: blocks up to 32 MiB come from the heap
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)  # keep up to 256 MiB of freed heap for the next sample


def worker_ready() -> int:
    """A task that does nothing but prepare a new worker process (importing this module first)."""
    _prepare_worker_process()
    return os.getpid()


class BuiltSample(NamedTuple):
    image: np.ndarray  # (size, size, 3) uint8
    label: np.ndarray  # (size, size) uint8
    class_rows: dict[int, tuple[int, int]]  # each id the label can hold -> rows [top, stop) it can be in
    bits: np.ndarray  # (size, size) uint32: bit k where mask class MASK_BITS[k] is on (nearest-resized like the label)
    bit_area: np.ndarray  # (18,) uint32: pixels of each class's own mask, in bit order, on the store's grid


def build_sample(files: SourceFiles, sample: Sample, config: ClassConfig) -> BuiltSample:
    """Decode one sample: its image and label map at config.size, and where each class can be."""
    if sample.problem is not None:
        raise sample.problem
    image = decode_image(files.read(sample.image), files.display(sample.image), config.size)
    masks = {name: decode_mask_rows(files.read(rel), files.display(rel)) for name, rel in sample.masks.items()}
    label = resize_label(paint_label(masks, config), config.size)
    class_rows = {config.background: (0, config.size)}
    # the classes painted, as paint_label paints them: an unpainted mask (a tolerated
    # _background.png) adds nothing, and the background keeps every row
    for name, class_id in zip(config.paint_order, config.paint_ids):
        rows = masks.get(name)
        if rows is not None and class_id != config.background:
            # a band of the 512² masks; anywhere in a label resized to another size
            class_rows[class_id] = (rows.top, rows.top + len(rows.on)) if config.size == MASK_SIZE else (0, config.size)
    # the same decoded bands the label was painted from, ORed as bits: no second decode
    bits = bit_masks_or({name: (rows.top, rows.on) for name, rows in masks.items()}, (MASK_SIZE, MASK_SIZE))
    if config.size == MASK_SIZE:
        area = np.zeros(len(MASK_BITS), dtype=np.uint32)
        for name, rows in masks.items():
            if name in _BIT_INDEX:
                area[_BIT_INDEX[name]] = np.count_nonzero(rows.on)
    else:
        bits = resize_bits(bits, config.size)
        area = bit_areas(bits)
    return BuiltSample(image, label, class_rows, bits, area)


_BIT_INDEX = {name: k for k, name in enumerate(MASK_BITS)}


def resize_bits(bits: np.ndarray, size: int) -> np.ndarray:
    """Mask bits on the label's grid: the same nearest-neighbour pick as :func:`resize_label`, so
    painting the resized bits gives the resized label exactly (Pillow's 32-bit mode; < 2**18)."""
    resized = Image.fromarray(bits.view(np.int32), mode="I").resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(resized, dtype=np.int32).view(np.uint32)


def build_shard(
    ref: SourceRef,
    samples: Sequence[Sample],
    config: ClassConfig,
    store: StoreTarget | Mapping[str, RowFiles],
    shard: int,
    start: int,
    owner: ShardOwner,
    on_error: OnError = "fail",
    keep_masks: bool = True,
) -> ShardResult:
    """One task: build every sample of the shard beginning at row ``start`` and write it whole.

    ``store`` is either the arrays' file descriptions (a local store: written directly) or the
    store itself (written through zarr). A bad sample stops the task (``fail``) or becomes an
    invalid row (``skip``): image zeros, label the fill value, ``valid`` false, and an entry in
    the returned ``skipped``. Nothing is written once ``owner`` is gone (:func:`ensure_still_owned`).
    A task that stops returns its error rather than raising it: an
    exception would make joblib kill the other workers mid-shard (and their processes' leftovers
    be reported at exit), while the coordinator only needs to stop handing out shards.
    """
    _prepare_worker_process()
    size = config.size
    rows = (_DirectShard(store, start, len(samples), keep_masks) if isinstance(store, Mapping)
            else _StagedShard(store, start, len(samples), size, keep_masks))
    blank_image, blank_label = np.zeros((size, size, 3), dtype=np.uint8), np.full((size, size), LABEL_FILL, dtype=np.uint8)
    valid = np.zeros(len(samples), dtype=bool)
    width = config.max_id + 1  # class columns: one per id up to the largest
    areas = np.zeros((len(samples), width), dtype=np.uint32)
    unpainted = np.zeros((len(samples), len(MASK_BITS)), dtype=np.uint32)
    blank_bits = np.zeros((size, size), dtype=np.uint32)
    result = ShardResult(shard, len(samples))
    with ref.open() as files:
        for row, sample in enumerate(samples):
            try:
                image, label, class_rows, bits, bit_area = build_sample(files, sample, config)
            except Exception as exc:  # noqa: BLE001 - no input may stop the pool: each failure names a file
                error = exc if isinstance(exc, CelebaMaskError) else unexpected_error(files, sample, exc)
                if on_error == "fail":
                    return ShardResult(shard, len(samples), error=error)
                result.skipped.append({"sample": sample.index, "path": error.path, "error": error.problem})
                image, label, bits = blank_image, blank_label, blank_bits
            else:
                valid[row] = True
                areas[row] = class_areas(label, width, class_rows)
                unpainted[row] = bit_area
            rows.add(row, image, label, bits)
    try:
        ensure_still_owned(store, owner)
    except CelebaMaskError as error:
        return ShardResult(shard, len(samples), error=error)
    try:
        rows.write({"valid": valid, "class_present": areas > 0, "class_area": areas,
                    "class_present_unpainted": unpainted > 0, "class_area_unpainted": unpainted})
    except CelebaMaskError as error:  # a full disk: no skipping that
        return ShardResult(shard, len(samples), error=error)
    return result


def unexpected_error(files: SourceFiles, sample: Sample, exc: Exception) -> CelebaMaskError:
    """A failure no decoder turned into a CelebaMaskError, as one naming the sample's image (the
    decoders name the exact file for every failure they know of)."""
    return CelebaMaskError(files.display(sample.image), f"cannot build sample {sample.index}: {type(exc).__name__}: {exc}")


class _DirectShard:
    """A shard of a local store: each image and label encoded as it is added, files written directly."""

    def __init__(self, files: Mapping[str, RowFiles], start: int, count: int, keep_masks: bool = True) -> None:
        self.files, self.start = files, start
        self.images, self.labels = RowWriter(files["image"], start, count), RowWriter(files["label"], start, count)
        self.masks = RowWriter(files["masks"], start, count) if keep_masks else None

    def add(self, row: int, image: np.ndarray, label: np.ndarray, bits: np.ndarray) -> None:
        self.images.add(row, image)
        self.labels.add(row, label)
        if self.masks is not None:
            self.masks.add(row, bits)

    def write(self, small_rows: dict[str, np.ndarray]) -> None:
        try:
            self.images.write()
            self.labels.write()
            if self.masks is not None:
                self.masks.write()
            for name, values in small_rows.items():
                self.files[name].write(self.start, values)
        except OSError as exc:
            raise cannot_write_shard(os.path.dirname(self.files["image"].folder), self.start, exc) from exc


class _StagedShard:
    """A shard of a store written through zarr (a URL store): its rows kept as arrays, written in one call."""

    def __init__(self, store: StoreTarget, start: int, count: int, size: int, keep_masks: bool = True) -> None:
        self.store, self.start = store, start
        self.images = np.zeros((count, size, size, 3), dtype=np.uint8)
        self.labels = np.full((count, size, size), LABEL_FILL, dtype=np.uint8)
        self.masks = np.zeros((count, size, size), dtype=np.uint32) if keep_masks else None

    def add(self, row: int, image: np.ndarray, label: np.ndarray, bits: np.ndarray) -> None:
        self.images[row], self.labels[row] = image, label
        if self.masks is not None:
            self.masks[row] = bits

    def write(self, small_rows: dict[str, np.ndarray]) -> None:
        from celebamask.store.layout import write_shard

        masks = {} if self.masks is None else {"masks": self.masks}
        write_shard(self.store, self.start, {"image": self.images, "label": self.labels, **masks, **small_rows})


def class_areas(label: np.ndarray, width: int, class_rows: Mapping[int, tuple[int, int]]) -> np.ndarray:
    """Pixels of each class id (0 .. width-1) in one label map that can hold only the ids in
    ``class_rows``, each only in its rows [top, stop).

    Each class is counted with one compare over its rows: most classes (eyes, brows, lips) lie in
    a few dozen rows, and ~13 such passes beat bincount, which widens every pixel to int64 first.
    Counts that do not add up to the map mean a bug upstream, never stored silently.
    """
    counts = np.zeros(width, dtype=np.int64)
    for class_id, (top, stop) in class_rows.items():
        counts[class_id] = np.count_nonzero(label[top:stop] == class_id)
    if counts.sum() != label.size:
        found = sorted(set(np.unique(label).tolist()) - set(class_rows))
        where = f"value(s) {found} outside its classes" if found else "class pixels outside the rows their masks cover, of classes"
        raise ValueError(f"label map holds {where} {sorted(class_rows)}")
    return counts
