"""Check a built store end to end: metadata, completeness, every shard's checksums, and
optionally a random sample rebuilt from the source.

A dissertation's numbers rest on the store, so "it opened" is not enough: every chunk is
decoded (crc32c catches a flipped byte), labels are checked against the class table, and
counts against the provenance.
"""

from __future__ import annotations

import json
import os
import random
import tomllib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from celebamask.build.verify_masks import check_mask_rows, compare_masks_with_source
from celebamask.build.worker import build_sample
from celebamask.config import LABEL_FILL, ClassConfig, parse_config
from celebamask.errors import CelebaMaskError
from celebamask.sources.index import index_source, locate_source
from celebamask.store.integrity import chunk_keys, file_problem
from celebamask.store.layout import (
    ARRAY_TYPES,
    CORE_ARRAYS,
    LAYOUT,
    METADATA_DIGEST,
    OLDER_LAYOUTS,
    built_with_masks,
    creation_state,
    layout_arrays,
    metadata_digest,
)
from celebamask.store.location import StoreTarget, as_target

REQUIRED_ATTRIBUTES = ("layout", "classes", "paint_order", "background", "size", "shard_size", "provenance")
MIN_PSNR_DB = 40.0


def verify_store(
    path: str | Path,
    *,
    source: str | Path | None = None,
    samples: int = 8,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """Return one line per problem found (empty when the store is sound).

    Raises CelebaMaskError, before anything is read, when ``path`` is not there or is not a
    celebamask store at all (then there is nothing to verify, only one line to say so)."""
    location = os.fspath(path)
    target = as_target(location, storage_options)
    group = open_for_verify(location, target)
    attrs = dict(group.attrs)
    problems = _check_attributes(location, attrs)
    complete = attrs.get("complete") is True
    if not complete:
        problems.append(f"{location}: store is not complete (the build did not finish; resume it with --resume)")
    keys = target.list_keys()
    problems += _check_metadata(location, target, attrs, keys)
    try:
        with warnings.catch_warnings():  # zarr warns of nodes it cannot read; they are reported here
            warnings.simplefilter("ignore")
            arrays: dict[str, Any] = dict(group.arrays())
    except Exception as exc:  # noqa: BLE001 - damaged array metadata is the finding
        return problems + [f"{location}: cannot read the arrays' metadata ({type(exc).__name__}: {exc})"]
    absent = [name for name in CORE_ARRAYS if name not in arrays]
    if absent:
        return problems + [f"{location}/{name}: array is missing" for name in absent]
    problems += [f"{location}/{name}: array is missing" for name in _layout_arrays(attrs) if name not in arrays]
    if complete:  # an unfinished build has not written them all yet
        problems += _check_chunks_stored(location, arrays, set(keys))
    files = _FileCheck(location, target, complete)

    count = arrays["image"].shape[0]
    shard_size = int(arrays["label"].metadata.chunk_grid.chunk_shape[0])  # what the files hold, whatever attrs say
    size = _positive_int(attrs.get("size")) or arrays["label"].shape[-1]
    layout_problems = _check_shapes(location, arrays, count, size)
    if layout_problems:  # rows of the wrong shape or type cannot be checked against each other
        return problems + layout_problems
    if _positive_int(attrs.get("shard_size")) not in (None, shard_size):
        problems.append(f"{location}: attribute shard_size is {attrs['shard_size']}, the label shards hold {shard_size} rows")
    class_ids = _class_ids(attrs.get("classes"))
    counts = _dict(_dict(attrs.get("provenance")).get("counts"))
    if complete and _provenance_ok(attrs.get("provenance")) and counts.get("samples") != count:
        problems.append(f"{location}: provenance counts {counts.get('samples')} samples, arrays hold {count}")

    ids = _read_whole(location, arrays["sample_id"], files, problems)
    if ids is not None and len(ids) > 1 and not np.all(np.diff(ids) > 0):
        problems.append(f"{location}/sample_id: rows are not in strictly ascending sample order")
    # a shard_done chunk is written when its shard finishes: a missing one is an unfinished shard,
    # reported below (or, in a complete store, by _check_chunks_stored)
    done = _read_whole(location, arrays["shard_done"], files, problems, built=False)
    if done is not None and done.shape != (-(-count // shard_size),):
        problems.append(f"{location}/shard_done: shape {done.shape}, expected ({-(-count // shard_size)},) shards")
        done = None
    if done is not None and not done.all():
        problems.append(f"{location}/shard_done: shards {_ranges(np.flatnonzero(~done))} were never finished")

    skipped_rows = _skipped_rows(attrs.get("skipped")) or set()  # malformed: reported above
    own_config = _recorded_config(attrs)
    if own_config is None and _provenance_ok(attrs.get("provenance")):
        problems.append(f"{location}: the recorded config (attrs provenance.config.text) cannot be parsed")
    valid_total, valid_unread = 0, False
    readable_valid_rows: list[int] = []  # rows a --source comparison may rebuild
    if progress:
        progress(0, count)
    for start in range(0, count, shard_size):
        shard = start // shard_size
        rows = slice(start, min(start + shard_size, count))
        built = done is None or bool(done[shard])
        shard_name = f"shard {shard} (rows {rows.start}-{rows.stop - 1})"
        blocks = {name: _read(location, array, rows, problems, shard_name)
                  for name, array in arrays.items()
                  if array.ndim >= 1 and array.shape[0] == count and name != "sample_id"
                  and files.whole(array, rows, built, problems)}
        valid, labels = blocks.get("valid"), blocks.get("label")
        if valid is None:
            valid_unread = True  # then a total of valid rows would miscount: not compared
        else:
            valid_total += int(valid.sum())
        if valid is not None and labels is not None:
            readable_valid_rows += [rows.start + int(k) for k in np.flatnonzero(valid)]
            problems += _check_row_block(location, blocks, labels, valid, class_ids, own_config, rows.start, ids)
            if ids is not None and built:  # unbuilt rows read invalid
                invalid_ids = {int(i) for i in ids[rows][~valid]}
                if invalid_ids - skipped_rows:
                    problems.append(f"{location}/valid: {shard_name}: rows of samples {sorted(invalid_ids - skipped_rows)} "
                                    "are invalid but not listed in attrs 'skipped'")
        if progress:
            progress(rows.stop, count)
    if complete and not valid_unread and "valid_samples" in counts and counts["valid_samples"] != valid_total:
        problems.append(f"{location}/valid: {valid_total} valid rows, provenance says {counts['valid_samples']}")

    if source is not None and samples > 0 and ids is not None:
        problems += _compare_with_source(location, attrs, arrays, ids, readable_valid_rows, source, samples, seed)
    return problems


def open_for_verify(location: str, target: StoreTarget) -> Any:
    """The store's group, or CelebaMaskError when there is no celebamask store to verify."""
    if not target.exists():
        raise CelebaMaskError(location, "does not exist")
    state = creation_state(target)
    if state == "creating":
        raise CelebaMaskError(location, "store is incomplete (the build stopped while creating it); build it again")
    try:
        group = target.open_group(mode="r")
    except Exception as exc:  # noqa: BLE001 - no readable group: not a store of ours
        raise CelebaMaskError(location, "not a celebamask store") from exc
    attrs = dict(group.attrs)
    provenance = attrs.get("provenance")
    ours = (attrs.get("layout") in (LAYOUT, *OLDER_LAYOUTS)
            or (isinstance(provenance, dict) and provenance.get("tool") == "celebamask"))
    if not ours:  # a damaged store of ours keeps one or the other: its problems are listed instead
        raise CelebaMaskError(location, "not a celebamask store")
    return group


def samples_source(path: str | Path, storage_options: dict[str, Any] | None = None) -> str:
    """The source a store was built from (its provenance), for ``verify --samples`` without
    ``--source``; CelebaMaskError if it is not recorded or no longer there."""
    location = os.fspath(path)
    group = open_for_verify(location, as_target(location, storage_options))
    recorded = _dict(_dict(group.attrs.get("provenance")).get("source")).get("location")
    if not isinstance(recorded, str):
        raise CelebaMaskError(location, "records no source location; pass --source SRC with --samples")
    if not os.path.exists(recorded):
        raise CelebaMaskError(recorded, "the store's recorded source is not there; pass --source SRC with --samples")
    return recorded


class _FileCheck:
    """Each chunk or shard file proven whole (size, index) before it is decoded, each once.

    A 0-byte shard reads as fill values through zarr and a shard index claiming a huge length can
    make it read past the file: such a file is reported as what it is, and not decoded, so that
    no second, misleading problem (wrong labels, wrong counts) follows from it."""

    def __init__(self, location: str, target: StoreTarget, complete: bool) -> None:
        self.location, self.target, self.complete = location, target, complete
        self.store = target.zarr_store(read_only=True)
        self.found: dict[str, str | None] = {}

    def whole(self, array: Any, rows: slice, built: bool, problems: list[str]) -> bool:
        """True if the files holding ``rows`` of ``array`` may be decoded; problems are added once."""
        ok = True
        rows_per_file = int(array.metadata.chunk_grid.chunk_shape[0])
        for block in range(rows.start // rows_per_file, (rows.stop - 1) // rows_per_file + 1):
            for key in chunk_keys(array, block):
                if key not in self.found:
                    self.found[key] = file_problem(self.target, array, key, self.store)
                    problem = self.found[key]
                    # a missing file of a complete store is reported by _check_chunks_stored; of an
                    # unfinished one, only where its shard is recorded as built
                    if problem is not None and (problem != "is missing" or (built and not self.complete)):
                        first, last = block * rows_per_file, min((block + 1) * rows_per_file, array.shape[0]) - 1
                        problems.append(f"{self.location}/{array.basename}: shard {block} (rows {first}-{last}): "
                                        f"file {key} {problem}")
                problem = self.found[key]
                if problem is not None and (problem != "is missing" or self.complete):
                    ok = False
        return ok


def _read_whole(location: str, array: Any, files: _FileCheck, problems: list[str],
                built: bool = True) -> np.ndarray | None:
    if not files.whole(array, slice(0, max(array.shape[0], 1)), built, problems):
        return None
    return _read(location, array, slice(None), problems)


def _check_row_block(location: str, blocks: dict[str, np.ndarray | None], labels: np.ndarray, valid: np.ndarray,
                     class_ids: np.ndarray | None, own_config: ClassConfig | None, first_row: int,
                     ids: np.ndarray | None) -> list[str]:
    """The checks of one shard's rows whose label and valid could be read."""
    problems = _check_labels(location, labels, valid, class_ids, first_row, ids)
    problems += _check_class_counts(location, blocks, labels, valid, first_row)
    if blocks.get("masks") is not None and own_config is not None:
        problems += check_mask_rows(location, blocks["masks"], labels, valid,  # type: ignore[arg-type]
                                    blocks.get("class_area_unpainted"), own_config, first_row)
    return problems


def _check_attributes(location: str, attrs: dict[str, Any]) -> list[str]:
    """Every attribute verify relies on is there and has its type: a malformed one is a problem
    (and the checks that need it are skipped), never a traceback."""
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in attrs]
    problems = [f"{location}: missing group attributes: {', '.join(missing)}"] if missing else []
    expected = {
        "layout": (attrs.get("layout") in (LAYOUT, *OLDER_LAYOUTS), f"{LAYOUT!r}"),
        "size": (_positive_int(attrs.get("size")) is not None, "a positive integer"),
        "shard_size": (_positive_int(attrs.get("shard_size")) is not None, "a positive integer"),
        "classes": (_class_ids(attrs.get("classes")) is not None, "a list of {id, name, color} with distinct ids 0-255"),
        "paint_order": (_strings(attrs.get("paint_order")), "a list of class names"),
        "background": (_int(attrs.get("background")) is not None, "a class id"),
        "provenance": (_provenance_ok(attrs.get("provenance")), "an object with config, options, source and counts"),
        "complete": (isinstance(attrs.get("complete"), bool), "true or false"),
        "skipped": (_skipped_rows(attrs.get("skipped")) is not None, "a list of {sample, path, error}"),
    }
    for name, (ok, wanted) in expected.items():
        if name in attrs and not ok:
            shown = json.dumps(attrs[name])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            problems.append(f"{location}: attribute {name} is malformed: {shown}, expected {wanted}")
    return problems


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _positive_int(value: Any) -> int | None:
    number = _int(value)
    return number if number is not None and number > 0 else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _class_ids(classes: Any) -> np.ndarray | None:
    """The sorted class ids of a well-formed class table, else None."""
    if not isinstance(classes, list) or not classes:
        return None
    ids = [_int(entry.get("id")) if isinstance(entry, dict) and isinstance(entry.get("name"), str) else None
           for entry in classes]
    if any(i is None or not 0 <= i <= 255 for i in ids) or len(set(ids)) != len(ids):
        return None
    return np.array(sorted(ids))  # type: ignore[type-var]


def _provenance_ok(provenance: Any) -> bool:
    if not isinstance(provenance, dict):
        return False
    config = provenance.get("config")
    return (isinstance(config, dict) and isinstance(config.get("text"), str)
            and all(isinstance(provenance.get(key, {}), dict) for key in ("options", "source", "counts")))


def _skipped_rows(skipped: Any) -> set[int] | None:
    """The sample ids that ``skipped`` names (None for a malformed list; absent: none)."""
    if skipped is None:
        return set()
    if not isinstance(skipped, list) or not all(isinstance(entry, dict) for entry in skipped):
        return None
    return {entry["sample"] for entry in skipped if _int(entry.get("sample")) is not None}


def _layout_arrays(attrs: dict[str, Any]) -> tuple[str, ...]:
    """What a store of this layout holds whatever its source (an older layout's may lack some)."""
    if attrs.get("layout") != LAYOUT:
        return ()
    return layout_arrays(built_with_masks(attrs))


def _check_metadata(location: str, target: StoreTarget, attrs: dict[str, Any], keys: list[str]) -> list[str]:
    """Every zarr.json as the build left it: the digest recorded with ``complete: true``."""
    if attrs.get("complete") is not True:
        return []  # recorded when the build completes
    recorded = attrs.get(METADATA_DIGEST)
    if recorded is None:
        return [f"{location}: records no metadata checksum ({METADATA_DIGEST}), so its metadata cannot be "
                "checked (built by an older celebamask, or the attribute was damaged)"]
    try:
        actual = metadata_digest(target, keys)
    except CelebaMaskError as error:
        return [str(error)]
    if actual != recorded:
        return [f"{location}: metadata (its zarr.json files) differ from what the build recorded: "
                "damaged, or edited after the build"]
    return []


def _check_chunks_stored(location: str, arrays: dict[str, Any], keys: set[str]) -> list[str]:
    """Every chunk (shard) file of every array is there: a lost one would read as fill values."""
    problems = []
    for name, array in sorted(arrays.items()):
        grid = array.metadata.chunk_grid.chunk_shape  # the shard shape of a sharded array
        expected = [f"{array.path}/{array.metadata.encode_chunk_key(coords)}"
                    for coords in np.ndindex(*(-(-n // c) for n, c in zip(array.shape, grid)))]
        lost = [key for key in expected if key not in keys]
        if lost:
            shown = ", ".join(lost[:3]) + (", …" if len(lost) > 3 else "")
            problems.append(f"{location}/{name}: {len(lost)} of {len(expected)} chunk files are missing ({shown})")
    return problems


def _check_shapes(location: str, arrays: dict[str, Any], count: int, size: int) -> list[str]:
    """Each array's shape and data type as a build makes them (damaged metadata may say otherwise)."""
    expected = {"image": (count, size, size, 3), "label": (count, size, size), "sample_id": (count,), "valid": (count,),
                "masks": (count, size, size)}
    problems = [f"{location}/{name}: shape {arrays[name].shape}, expected {shape}"
                for name, shape in expected.items() if name in arrays and arrays[name].shape != shape]
    problems += [f"{location}/{name}: data type {arrays[name].dtype}, expected {dtype}"
                 for name, dtype in ARRAY_TYPES.items() if name in arrays and str(arrays[name].dtype) != dtype]
    problems += [f"{location}/{name}: {arrays[name].shape[0]} rows, expected {count}"
                 for name in sorted(arrays) if name not in expected and name != "shard_done"
                 and arrays[name].ndim >= 1 and arrays[name].shape[0] != count]
    return problems


def _read(location: str, array: Any, rows: slice, problems: list[str], where: str = "") -> np.ndarray | None:
    try:
        return np.asarray(array[rows])
    except Exception as exc:  # noqa: BLE001 - a checksum or decode failure is the finding
        place = f": {where}" if where else ""
        problems.append(f"{location}/{array.basename}{place}: unreadable ({type(exc).__name__}: {exc})")
        return None


def _check_labels(location: str, labels: np.ndarray, valid: np.ndarray, class_ids: np.ndarray | None,
                  first_row: int, ids: np.ndarray | None) -> list[str]:
    problems = []
    for offset, label in enumerate(labels):
        row = first_row + offset
        sample = int(ids[row]) if ids is not None else row
        if valid[offset] and class_ids is not None:
            values = np.unique(label)
            unknown = np.setdiff1d(values, class_ids)
            if unknown.size:
                problems.append(f"{location}/label: row {row} (sample {sample}) holds values {unknown.tolist()} "
                                "that are not class ids")
        elif not valid[offset] and not (label == LABEL_FILL).all():
            problems.append(f"{location}/label: row {row} (sample {sample}) is invalid but its label is not all {LABEL_FILL}")
    return problems


def _check_class_counts(location: str, blocks: dict[str, np.ndarray | None], labels: np.ndarray,
                        valid: np.ndarray, first_row: int) -> list[str]:
    """``class_area`` / ``class_present`` must be a recount of each stored label (zero where invalid)."""
    area, present = blocks.get("class_area"), blocks.get("class_present")
    if area is None or present is None:
        return []
    problems = []
    for offset, label in enumerate(labels):
        expected = np.zeros(area.shape[1], dtype=np.int64)
        if valid[offset]:
            counts = np.bincount(label.ravel())
            expected[: min(len(counts), len(expected))] = counts[: len(expected)]
        if not np.array_equal(area[offset], expected) or not np.array_equal(present[offset], expected > 0):
            problems.append(f"{location}/class_area: row {first_row + offset} is not a count of its label map")
    return problems


def _compare_with_source(location: str, attrs: dict[str, Any], arrays: dict[str, Any], ids: np.ndarray,
                         candidates: list[int], source: str | Path, samples: int, seed: int) -> list[str]:
    """Rebuild a few random valid rows (of shards that could be read) from the source with the
    store's own config."""
    config = _recorded_config(attrs)
    if config is None:
        return [f"{location}: the recorded config (provenance config text) cannot be parsed; "
                "no sample can be rebuilt to compare"]
    index = index_source(locate_source(source), skip_bad=True)
    by_id = {sample.index: sample for sample in index.samples}
    rows = sorted(random.Random(seed).sample(candidates, min(samples, len(candidates))))
    problems = []
    with index.ref.open() as files:
        for row in rows:
            sample_id = int(ids[row])
            sample = by_id.get(sample_id)
            if sample is None:
                problems.append(f"{source}: sample {sample_id} (row {row}) is not in the source")
                continue
            try:
                image, label, _, bits, _ = build_sample(files, sample, config)
            except CelebaMaskError as error:
                problems.append(f"{error}")
                continue
            stored = {name: _row(arrays, name, row) for name in ("label", "masks", "image")}
            if stored["label"] is not None and not np.array_equal(stored["label"], label):
                differing = int((stored["label"] != label).sum())
                problems.append(f"{location}/label: row {row} (sample {sample_id}) differs from the source in {differing} pixels")
            if stored["masks"] is not None:
                problems += compare_masks_with_source(location, stored["masks"], bits, row, sample_id)
            quality = _psnr(stored["image"], image) if stored["image"] is not None else float("inf")
            if quality < MIN_PSNR_DB:
                problems.append(f"{location}/image: row {row} (sample {sample_id}) is {quality:.1f} dB from the source "
                                f"(< {MIN_PSNR_DB:.0f} dB)")
    return problems


def _row(arrays: dict[str, Any], name: str, row: int) -> np.ndarray | None:
    """One stored row, or None when the array is absent or its shard unreadable (already reported)."""
    if name not in arrays:
        return None
    try:
        return np.asarray(arrays[name][row])
    except Exception:  # noqa: BLE001 - reported by the shard checks
        return None


def _recorded_config(attrs: dict[str, Any]) -> ClassConfig | None:
    recorded = _dict(_dict(attrs.get("provenance")).get("config"))
    try:
        return parse_config(tomllib.loads(recorded["text"]), recorded["text"], recorded.get("path", "recorded config"))
    except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError, CelebaMaskError):
        return None


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _ranges(values: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in values[:10])
    return shown + (f" … ({len(values)} in all)" if len(values) > 10 else "")
