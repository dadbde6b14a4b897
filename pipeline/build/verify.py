"""Check a built store end to end: metadata, completeness, every shard's checksums, and
optionally a random sample rebuilt from the source.

A dissertation's numbers rest on the store, so "it opened" is not enough: every chunk is
decoded (crc32c catches a flipped byte), labels are checked against the class table, and
counts against the provenance.
"""

from __future__ import annotations

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
from celebamask.store.layout import METADATA_DIGEST, metadata_digest
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
    """Return one line per problem found (empty when the store is sound)."""
    location = os.fspath(path)
    target = as_target(location, storage_options)
    try:
        group = target.open_group(mode="r")
    except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
        return [f"{location}: cannot open as a Zarr group: {exc}"]
    problems: list[str] = []
    attrs = dict(group.attrs)
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in attrs]
    if missing:
        return [f"{location}: missing group attributes: {', '.join(missing)}"]
    if attrs.get("complete") is not True:
        problems.append(f"{location}: store is not complete (the build did not finish; resume it with --resume)")
    keys = target.list_keys()
    problems += _check_metadata(location, target, attrs, keys)
    try:
        with warnings.catch_warnings():  # zarr warns of nodes it cannot read; they are reported here
            warnings.simplefilter("ignore")
            arrays: dict[str, Any] = dict(group.arrays())
    except Exception as exc:  # noqa: BLE001 - damaged array metadata is the finding
        return problems + [f"{location}: cannot read the arrays' metadata ({type(exc).__name__}: {exc})"]
    absent = [name for name in ("image", "label", "sample_id", "valid", "shard_done") if name not in arrays]
    if absent:
        return problems + [f"{location}/{name}: array is missing" for name in absent]
    if attrs.get("complete") is True:  # an unfinished build has not written them all yet
        problems += _check_chunks_stored(location, arrays, set(keys))

    count, size, shard_size = arrays["image"].shape[0], int(attrs["size"]), int(attrs["shard_size"])
    problems += _check_shapes(location, arrays, count, size)
    class_ids = np.array(sorted(int(c["id"]) for c in attrs["classes"]))
    counts = attrs["provenance"].get("counts", {})
    if attrs.get("complete") and counts.get("samples") != count:
        problems.append(f"{location}: provenance counts {counts.get('samples')} samples, arrays hold {count}")

    ids = _read(location, arrays["sample_id"], slice(None), problems)
    if ids is not None and len(ids) > 1 and not np.all(np.diff(ids) > 0):
        problems.append(f"{location}/sample_id: rows are not in strictly ascending sample order")
    done = _read(location, arrays["shard_done"], slice(None), problems)
    if done is not None and not done.all():
        problems.append(f"{location}/shard_done: shards {_ranges(np.flatnonzero(~done))} were never finished")

    skipped_rows = {e["sample"] for e in attrs.get("skipped", []) if e.get("sample") is not None}
    own_config = _recorded_config(attrs) if "masks" in arrays else None
    valid_total, valid_unread = 0, False
    if progress:
        progress(0, count)
    for start in range(0, count, shard_size):
        rows = slice(start, min(start + shard_size, count))
        shard_name = f"shard {start // shard_size} (rows {rows.start}-{rows.stop - 1})"
        blocks = {name: _read(location, array, rows, problems, shard_name) for name, array in arrays.items()
                  if array.ndim >= 1 and array.shape[0] == count and name != "sample_id"}
        valid, labels = blocks.get("valid"), blocks.get("label")
        if valid is None:
            valid_unread = True  # then a total of valid rows would miscount: not compared
        if valid is not None and labels is not None:
            valid_total += int(valid.sum())
            problems += _check_labels(location, labels, valid, class_ids, rows.start, ids)
            problems += _check_class_counts(location, blocks, labels, valid, rows.start)
            if blocks.get("masks") is not None and own_config is not None:
                problems += check_mask_rows(location, blocks["masks"], labels, valid,  # type: ignore[arg-type]
                                            blocks.get("class_area_unpainted"), own_config, rows.start)
            if ids is not None and (done is None or done[start // shard_size]):  # unbuilt rows read invalid
                invalid_ids = {int(i) for i in ids[rows][~valid]}
                if invalid_ids - skipped_rows:
                    problems.append(f"{location}/valid: {shard_name}: rows of samples {sorted(invalid_ids - skipped_rows)} "
                                    "are invalid but not listed in attrs 'skipped'")
        if progress:
            progress(rows.stop, count)
    if attrs.get("complete") and not valid_unread and "valid_samples" in counts and counts["valid_samples"] != valid_total:
        problems.append(f"{location}/valid: {valid_total} valid rows, provenance says {counts['valid_samples']}")

    if source is not None and samples > 0 and ids is not None:
        problems += _compare_with_source(location, attrs, arrays, ids, source, samples, seed)
    return problems


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
    expected = {"image": (count, size, size, 3), "label": (count, size, size), "sample_id": (count,), "valid": (count,)}
    return [f"{location}/{name}: shape {arrays[name].shape}, expected {shape}"
            for name, shape in expected.items() if arrays[name].shape != shape]


def _read(location: str, array: Any, rows: slice, problems: list[str], where: str = "") -> np.ndarray | None:
    try:
        return np.asarray(array[rows])
    except Exception as exc:  # noqa: BLE001 - a checksum or decode failure is the finding
        place = f": {where}" if where else ""
        problems.append(f"{location}/{array.basename}{place}: unreadable ({type(exc).__name__}: {exc})")
        return None


def _check_labels(location: str, labels: np.ndarray, valid: np.ndarray, class_ids: np.ndarray,
                  first_row: int, ids: np.ndarray | None) -> list[str]:
    problems = []
    for offset, label in enumerate(labels):
        row = first_row + offset
        sample = int(ids[row]) if ids is not None else row
        if valid[offset]:
            values = np.unique(label)
            unknown = np.setdiff1d(values, class_ids)
            if unknown.size:
                problems.append(f"{location}/label: row {row} (sample {sample}) holds values {unknown.tolist()} "
                                "that are not class ids")
        elif not (label == LABEL_FILL).all():
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
                         source: str | Path, samples: int, seed: int) -> list[str]:
    """Rebuild a few random valid rows from the source with the store's own config."""
    recorded = attrs["provenance"]["config"]
    config = parse_config(tomllib.loads(recorded["text"]), recorded["text"], recorded.get("path", "recorded config"))
    index = index_source(locate_source(source), skip_bad=True)
    by_id = {sample.index: sample for sample in index.samples}
    valid = np.asarray(arrays["valid"][:])
    candidates = [row for row in range(len(ids)) if valid[row]]
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
            stored_label = np.asarray(arrays["label"][row])
            if not np.array_equal(stored_label, label):
                differing = int((stored_label != label).sum())
                problems.append(f"{location}/label: row {row} (sample {sample_id}) differs from the source in {differing} pixels")
            if "masks" in arrays:
                problems += compare_masks_with_source(location, np.asarray(arrays["masks"][row]), bits, row, sample_id)
            quality = _psnr(np.asarray(arrays["image"][row]), image)
            if quality < MIN_PSNR_DB:
                problems.append(f"{location}/image: row {row} (sample {sample_id}) is {quality:.1f} dB from the source "
                                f"(< {MIN_PSNR_DB:.0f} dB)")
    return problems


def _recorded_config(attrs: dict[str, Any]) -> ClassConfig | None:
    recorded = attrs["provenance"].get("config", {})
    try:
        return parse_config(tomllib.loads(recorded["text"]), recorded["text"], recorded.get("path", "recorded config"))
    except (KeyError, TypeError, tomllib.TOMLDecodeError, CelebaMaskError):
        return None


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _ranges(values: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in values[:10])
    return shown + (f" … ({len(values)} in all)" if len(values) > 10 else "")
