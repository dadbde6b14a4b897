"""The store's layout, and the two ways it is written: the coordinator creates it, workers fill shards.

Every array keeps one sample per chunk so a single sample is one small read, and groups
``shard_size`` samples per shard file so 30,000 samples make a few hundred files, not 60,000.
A worker always writes one whole shard, so no two workers ever touch the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from celebamask.config import LABEL_FILL, ClassConfig
from celebamask.dataset import ARRAYS_BY_FILE
from celebamask.errors import CelebaMaskError
from celebamask.store.chunks import cannot_write_shard, is_writer_temporary
from celebamask.store.codecs import (
    DEFAULT_IMAGE_CODEC,
    image_array_codecs,
    parse_image_codec,
)
from celebamask.store.location import StoreTarget, as_target
from celebamask.store.owner import replaced_store, stored_build_id
from celebamask.store.shards import row_files

# Bump when the arrays or attributes change meaning. 2: CF attributes and coordinates, per-sample
# arrays chunked by shard, the source stamps inside a group of their own.
LAYOUT = "celebamask/2"
OLDER_LAYOUTS = ("celebamask/1",)  # still read; never resumed (a resume would mix two layouts)
LABEL_ZSTD_LEVEL = 1  # label maps: level 1 is as small as 5 (3.5 KB) and 3x faster
METADATA_DIGEST = "metadata_sha256"  # group attribute written with ``complete: true``
# The source files' stamps (build/fingerprint.py), in a group of their own: a file at the top of
# the store makes zarr (and so xarray.open_zarr) warn on every listing of the store's members.
SOURCE_STAMPS_GROUP = "source_stamps"
SOURCE_STAMPS_KEY = f"{SOURCE_STAMPS_GROUP}/stamps.json.gz"
LAYOUT1_SOURCE_STAMPS_KEY = "source_stamps.json.gz"  # where layout 1 kept them
STORE_FILES = (LAYOUT1_SOURCE_STAMPS_KEY,)  # files of a store that belong to no Zarr node
ANNOTATION_ARRAYS = ("celeba_index", "celeba_file", "split", "attributes", "pose")
CORE_ARRAYS = ("image", "label", "sample_id", "valid", "shard_done")  # in every layout's store
# the data type of each per-sample array a reader relies on (damaged metadata may say another)
ARRAY_TYPES = {"image": "uint8", "label": "uint8", "sample_id": "int32", "valid": "bool", "shard_done": "bool",
               "masks": "uint32", "class_present": "bool", "class_area": "uint32"}
SAMPLE_COORDINATES = "sample_id"  # CF ``coordinates`` of every per-sample array


def _chunk_codecs(level: int) -> dict[str, Any]:
    # crc32c last: a flipped byte in a stored chunk is reported, never decoded as garbage.
    return {"compressors": [ZstdCodec(level=level), Crc32cCodec()]}


def cf_flag_meanings(names: Sequence[str]) -> str:
    """CF ``flag_meanings``: blank-separated words of letters, digits and ``_-.+@`` (anything
    else becomes ``_``), so a class name with a space stays one word."""
    words = [re.sub(r"[^A-Za-z0-9_.+@-]", "_", name) or "_" for name in names]
    if len(set(words)) != len(words):
        raise ValueError(f"class names {list(names)} are not distinct as CF flag meanings {words}")
    return " ".join(words)


def layout_problem(layout: object) -> str | None:
    """Why a store of this ``layout`` attribute cannot be resumed (None: it is this version's)."""
    if layout == LAYOUT:
        return None
    if layout in OLDER_LAYOUTS:
        return (f"was built by an older celebamask (layout {layout}; this version writes {LAYOUT}): it reads "
                "as before, but cannot be resumed; build it again with --overwrite")
    return f"has layout {layout!r}, which this celebamask does not know (it writes {LAYOUT})"


def is_store(path: StoreTarget | str | Path) -> bool:
    return as_target(path).has_key("zarr.json")


def check_target(path: StoreTarget | str | Path, overwrite: bool, keep: Sequence[str | Path] = ()) -> bool:
    """Refuse to touch an existing path unless asked; never replace something that is not a store.

    Only a celebamask store (its ``layout`` attribute) holding nothing but its own Zarr nodes is
    ever replaced; never a symbolic link, nor a folder that is or holds one of ``keep`` (the
    SOURCE). Touches nothing: returns True when something is there that must be deleted before
    the store is created (the caller deletes it only once it knows the build can start)."""
    target = as_target(path)
    if not target.exists():
        if target.is_local:
            parent = os.path.dirname(target.url)
            if not os.path.isdir(parent):
                raise CelebaMaskError(target, f"cannot create store: parent folder {parent} does not exist")
            if not os.access(parent, os.W_OK):
                raise CelebaMaskError(target, f"cannot create store: parent folder {parent} is not writable")
        return False
    if not overwrite:
        raise CelebaMaskError(target, "already exists; pass --overwrite to replace it")
    if target.is_local:
        for kept in keep:
            if _is_within(os.fspath(kept), target.url):
                raise CelebaMaskError(target, f"holds the source {kept}; refusing to overwrite it")
        if os.path.islink(target.url):
            raise CelebaMaskError(target, f"is a symbolic link (to {os.path.realpath(target.url)}); refusing to "
                                          "overwrite through it: name the folder it points to, or remove the link")
    if target.is_empty_folder():
        return False
    state = creation_state(target)
    if not is_store(target) and state != "creating":
        raise CelebaMaskError(target, "exists and is not a Zarr store; refusing to overwrite it")
    if state not in ("created", "creating"):
        raise CelebaMaskError(target, "exists and is not a celebamask store (no 'layout' attribute "
                                      f"{LAYOUT!r}); refusing to overwrite it")
    others = foreign_keys(target, creating=state == "creating")
    if others:
        shown = ", ".join(others[:3]) + (f", … ({len(others)} in all)" if len(others) > 3 else "")
        raise CelebaMaskError(target, f"holds files that are not part of the store: {shown}; refusing to overwrite it")
    return True


def _is_within(inner: str, outer: str) -> bool:
    """``inner`` is ``outer`` or lies inside it (symbolic links resolved)."""
    inner, outer = os.path.realpath(inner), os.path.realpath(outer)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def foreign_keys(path: StoreTarget | str | Path, creating: bool = False) -> list[str]:
    """What the store holds that is not its own: a user's files (or, in a local folder, symbolic
    links and empty folders) put inside it, which ``--overwrite`` must never delete. Its own are
    the ``zarr.json`` of the group and of each node zarr finds in it, each array's chunk keys (the
    ``c/<i>/<j>…`` of its chunk grid: as many indices as dimensions, each inside the grid; also
    the chunk keys under the name of an array a build creates whose zarr.json was lost), the
    source stamps, and the temporaries (``<chunk>.<pid>.partial``) of a killed writer."""
    target = as_target(path)
    if target.is_local:
        keys, links, empty = _walk_local(target.url)
    else:
        keys, links, empty = target.list_keys(), [], []
    own = _own_keys(target, keys)
    if own is None:  # no group yet (killed while creating it): only writers' temporaries are ours
        return sorted([k for k in keys if not is_writer_temporary(k)] + links
                      + [f"{d}/" for d in empty if not (creating and "/" not in d)])
    folders = {prefix for key in own for prefix in _ancestors(key)} | {d for d in empty if _orphaned_chunk_folder(d)}
    others = [key for key in keys if key not in own and not is_writer_temporary(key)]
    # a store killed while being created may hold a node's folder before its zarr.json
    return sorted(others + links + [f"{d}/" for d in empty if d not in folders and not (creating and "/" not in d)])


def _ancestors(key: str) -> list[str]:
    parts = key.split("/")[:-1]
    return ["/".join(parts[: k + 1]) for k in range(len(parts))]


def _own_keys(target: StoreTarget, keys: Sequence[str]) -> set[str] | None:
    """The keys the store's own nodes may hold, or None when it has no group metadata yet."""
    from celebamask.store.integrity import chunk_keys

    if not is_store(target):
        return None
    try:
        with warnings.catch_warnings():  # the stamps file is no Zarr node: zarr warns while listing
            warnings.simplefilter("ignore")
            group = target.open_group(mode="r")
            members = group.members(max_depth=None)
    except Exception as exc:  # noqa: BLE001 - metadata zarr cannot read: nothing can be judged
        raise CelebaMaskError(target, f"cannot list its arrays ({type(exc).__name__}: {exc}); refusing to overwrite it") from exc
    own = {"zarr.json", SOURCE_STAMPS_KEY, *STORE_FILES}
    for _, node in members:
        own.add(f"{node.path}/zarr.json")
        if isinstance(node, zarr.Array):
            own.update(chunk_keys(node))
    arrays = {node.path: node for _, node in members if isinstance(node, zarr.Array)}
    orphans = _orphaned_arrays(dict(group.attrs), arrays)
    shards = _shard_count(arrays)
    own.update(key for key in keys if _orphaned_chunk_key(key, orphans, shards))
    return own


# dimensions of each per-sample array a build always creates; rows are chunked by shard
_DIMENSIONS = {"image": 4, "label": 3, "masks": 3, "sample_id": 1, "valid": 1, "shard_done": 1, "flags": 1,
               "class_present": 2, "class_area": 2, "class_present_unpainted": 2, "class_area_unpainted": 2,
               "celeba_index": 1, "celeba_file": 1, "split": 1, "attributes": 2, "pose": 2}


def built_with_masks(attrs: dict[str, Any]) -> bool:
    """Whether the store's build kept the ``masks`` array (its recorded options; not --no-masks)."""
    provenance = attrs.get("provenance")
    options = provenance.get("options") if isinstance(provenance, dict) else None
    return not isinstance(options, dict) or options.get("masks") is not False


def _orphaned_arrays(attrs: dict[str, Any], arrays: dict[str, Any]) -> dict[str, int]:
    """The arrays a build with this store's recorded options creates whose zarr.json is lost
    (their dimensions): their chunk files are still the store's own."""
    provenance = attrs.get("provenance")
    files = provenance.get("annotation_files") if isinstance(provenance, dict) else None
    names = list(layout_arrays(built_with_masks(attrs)))
    if isinstance(files, dict):  # the annotation arrays of the files the build found
        names += [name for file, found in files.items() if isinstance(found, dict) and found.get("present")
                  for name in ARRAYS_BY_FILE.get(file, ())]
    return {name: _DIMENSIONS[name] for name in names if name not in arrays and name in _DIMENSIONS}


def _shard_count(arrays: dict[str, Any]) -> int:
    """How many row blocks (shards) the store's arrays have, from an array that is still there."""
    for name in ("shard_done", "valid", "sample_id", "label"):
        if name in arrays:
            rows = int(arrays[name].metadata.chunk_grid.chunk_shape[0])
            return -(-int(arrays[name].shape[0]) // rows) if name != "shard_done" else int(arrays[name].shape[0])
    return 0


def _orphaned_chunk_key(key: str, orphans: dict[str, int], shards: int) -> bool:
    """A chunk key (``<array>/c/<shard>/0…``, as many indices as its dimensions, inside the grid)
    of an array of this store's whose zarr.json is lost."""
    parts = key.split("/")
    indices = parts[2:]
    return (parts[0] in orphans and parts[1:2] == ["c"] and len(indices) == orphans[parts[0]]
            and all(part.isdigit() for part in indices) and int(indices[0]) < shards
            and all(part == "0" for part in indices[1:]))


def _orphaned_chunk_folder(folder: str) -> bool:
    """A folder (``<array>``, ``<array>/c``, ``<array>/c/<i>…``) of an array a build creates, as
    a delete or a build cut off midway may leave it."""
    parts = folder.split("/")
    if folder == SOURCE_STAMPS_GROUP:
        return True
    return parts[0] in _DIMENSIONS and (len(parts) == 1 or (parts[1] == "c" and all(part.isdigit() for part in parts[2:])))


def _walk_local(root: str) -> tuple[list[str], list[str], list[str]]:
    """(regular files, symbolic links, empty folders) under ``root``, relative, links not followed."""
    files, links, empty = [], [], []
    for folder, dirs, names in os.walk(root, followlinks=False):
        relative = os.path.relpath(folder, root)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        for name in list(dirs) + names:
            if os.path.islink(os.path.join(folder, name)):
                links.append(prefix + name)
            elif name in names:
                files.append(prefix + name)
        if not dirs and not names and prefix:
            empty.append(prefix.rstrip("/"))
    return files, links, empty


def recorded_build_id(path: StoreTarget | str | Path) -> str | None:
    """The build id in the store's group metadata as it is now (read afresh, never cached)."""
    return stored_build_id(as_target(path))


def ensure_same_build(path: StoreTarget | str | Path, build_id: str) -> None:
    """Stop a build whose store was replaced (or deleted) underneath it, before it records anything
    in a store another build made."""
    found = recorded_build_id(path)
    if found != build_id:
        raise replaced_store(path, found, build_id)


def create_store(
    path: StoreTarget | str | Path,
    sample_ids: Sequence[int],
    config: ClassConfig,
    shard_size: int,
    attributes: dict[str, Any],
    image_codec: str = DEFAULT_IMAGE_CODEC,
) -> zarr.Group:
    """Write all metadata (``complete: false``) and ``sample_id``; images and labels come later by shard.

    ``image_codec`` is a preset of pipeline/store/codecs.py (``lossless``, ``lossless-compact``, ``jpeg:Q``).
    """
    count, size = len(sample_ids), config.size
    image_codecs = image_array_codecs(parse_image_codec(image_codec))
    layout_attributes = {
        "layout": LAYOUT,
        "complete": False,
        "classes": [c.to_json() for c in config.classes],
        "paint_order": list(config.paint_order),
        "background": config.background,
        "size": size,
        "shard_size": shard_size,
        "image_codec": parse_image_codec(image_codec).spec,
        **attributes,
    }
    try:
        group = as_target(path).open_group(mode="w-", attributes=layout_attributes)
    except OSError as exc:
        raise CelebaMaskError(path, f"cannot create store: {exc.strerror or exc}") from exc
    create_sharded_array(group, "image", count, shard_size, (size, size, 3), "uint8", 0, ("y", "x", "channel"),
                         {"long_name": "RGB image"}, image_codecs)
    names = {c.id: c.name for c in config.classes}
    ids = sorted(names)
    create_sharded_array(group, "label", count, shard_size, (size, size), "uint8", LABEL_FILL, ("y", "x"), {
        "long_name": "class of each pixel (overlapping masks painted in paint_order)",
        "flag_values": ids,
        "flag_meanings": cf_flag_meanings([names[k] for k in ids]),
        "fill_means": "not written",
    }, _chunk_codecs(LABEL_ZSTD_LEVEL))
    create_whole_array(group, "sample_id", np.asarray(sample_ids, dtype=np.int32), (), -1, shard_size,
                       {"long_name": "dataset index: the N of CelebA-HQ-img/N.jpg"}, coordinates=False)
    group.create_group(SOURCE_STAMPS_GROUP, attributes={
        "description": "stamps.json.gz: each source file's size and mtime or CRC when the build began; "
                       "a resume compares them to name the files that changed"})
    return group


def create_sharded_array(
    group: zarr.Group,
    name: str,
    count: int,
    shard_size: int,
    row_shape: tuple[int, ...],
    dtype: str,
    fill_value: Any,
    dimension_names: tuple[str, ...],
    attributes: dict[str, Any],
    codecs: dict[str, Any],
) -> zarr.Array:
    """A per-sample array of pictures (image, label, masks): one sample per chunk, ``shard_size``
    samples per shard file, written shard by shard by the workers."""
    return group.create_array(
        name,
        shape=(count, *row_shape),
        chunks=(1, *row_shape),
        shards=(shard_size, *row_shape),
        dtype=dtype,
        fill_value=fill_value,
        dimension_names=("sample", *dimension_names),
        attributes={**attributes, "coordinates": SAMPLE_COORDINATES},
        **codecs,
    )


def create_row_array(
    group: zarr.Group,
    name: str,
    count: int,
    shard_size: int,
    row_shape: tuple[int, ...],
    dtype: str,
    fill_value: Any,
    dimension_names: tuple[str, ...],
    attributes: dict[str, Any] | None = None,
) -> zarr.Array:
    """A small per-sample array (one row per sample) chunked like the shards, so the worker that
    writes a shard also writes these rows and never shares a chunk with another worker."""
    return group.create_array(
        name,
        shape=(count, *row_shape),
        chunks=(shard_size, *row_shape),
        dtype=dtype,
        fill_value=fill_value,
        dimension_names=("sample", *dimension_names),
        attributes={**(attributes or {}), "coordinates": SAMPLE_COORDINATES},
        **_chunk_codecs(LABEL_ZSTD_LEVEL),
    )


def create_whole_array(
    group: zarr.Group,
    name: str,
    values: np.ndarray,
    dimension_names: tuple[str, ...],
    fill_value: Any,
    shard_size: int,
    attributes: dict[str, Any] | None = None,
    coordinates: bool = True,
) -> zarr.Array:
    """A small per-sample array the coordinator knows in full before any shard is built, written
    at once. Chunked by shard like every per-sample array, so reading by whole shards (dask,
    ``to_xarray(chunks={"sample": shard_size})``) never splits a chunk. Text becomes Zarr's
    variable-length ``string`` type."""
    dtype: Any = str if values.dtype.kind in "UO" else values.dtype
    array = group.create_array(
        name,
        shape=values.shape,
        chunks=(max(shard_size, 1), *(max(n, 1) for n in values.shape[1:])),
        dtype=dtype,
        fill_value=fill_value,
        dimension_names=("sample", *dimension_names),
        attributes={**(attributes or {}), **({"coordinates": SAMPLE_COORDINATES} if coordinates else {})},
        config={"write_empty_chunks": True},  # stored even if all fill values: verify expects every chunk
        **_chunk_codecs(LABEL_ZSTD_LEVEL),
    )
    array[...] = values
    return array


def write_shard(path: StoreTarget | str | Path, start: int, rows: dict[str, np.ndarray]) -> None:
    """Write rows ``start ... start+n`` of every array in ``rows``: exactly one shard, written whole."""
    group = as_target(path).open_group(mode="r+")
    try:
        # Every chunk is written: skips zarr's check of each chunk against the fill value, a
        # full compare that costs as much as compressing a label map.
        with zarr.config.set({"array.write_empty_chunks": True}):
            for name, values in rows.items():
                files = row_files(group[name])  # type: ignore[arg-type]
                if files is not None:
                    files.write(start, values)
                else:
                    group[name][start : start + len(values)] = values  # type: ignore[index]
    except OSError as exc:
        raise cannot_write_shard(str(path), start, exc) from exc


def create_progress_arrays(group: zarr.Group, count: int, shard_size: int) -> None:
    """``valid`` marks rows built from good inputs; ``shard_done`` records each finished shard.

    ``shard_done`` has one chunk per shard, written by the coordinator only after that shard's
    data is in the store, so a crash mid-write leaves the shard unrecorded and resume rebuilds it.
    """
    create_row_array(group, "valid", count, shard_size, (), "bool", False, (),
                     {"description": "true where the row was built from good inputs; see attrs 'skipped'"})
    shards = max(1, -(-count // shard_size))
    group.create_array("shard_done", shape=(shards,), chunks=(1,), dtype="bool", fill_value=False,
                       dimension_names=("shard",), **_chunk_codecs(LABEL_ZSTD_LEVEL),
                       attributes={"description": f"shard k holds rows k*{shard_size} ... (k+1)*{shard_size}-1"})


def creation_state(path: StoreTarget | str | Path) -> str:
    """``absent``, ``empty`` (a folder with nothing in it), ``creating`` (our store, killed before its
    shard record existed, so nothing was built yet; or a folder holding only the temporaries of
    its first metadata write), ``created``, or ``foreign`` (anything else)."""
    target = as_target(path)
    if not target.exists():
        return "absent"
    if target.is_empty_folder():
        return "empty"
    if not is_store(target):
        # Killed before the first metadata file was whole: nothing but writers' temporaries.
        return "creating" if _only_partial_writes(target) else "foreign"
    try:
        group = target.open_group(mode="r")
    except Exception:  # noqa: BLE001 - an unreadable group is not one we made
        return "foreign"
    if group.attrs.get("layout") not in (LAYOUT, *OLDER_LAYOUTS):
        return "foreign"
    return "created" if target.has_key("shard_done/zarr.json") else "creating"


def _only_partial_writes(target: StoreTarget) -> bool:
    if not target.is_local or not os.path.isdir(target.url):
        return False
    names = [name for _, _, files in os.walk(target.url) for name in files]
    return bool(names) and all(is_writer_temporary(name) for name in names)


def mark_shard_done(group: zarr.Group, shard: int) -> None:
    group["shard_done"][shard] = True  # type: ignore[index]


def done_shards(group: zarr.Group) -> set[int]:
    return {int(k) for k in np.flatnonzero(group["shard_done"][:])}  # type: ignore[index]


def remove_partial_writes(path: StoreTarget | str | Path) -> int:
    """A killed local writer can leave ``<chunk>.<pid>.partial`` temporaries beside chunk files; they hold nothing."""
    target = as_target(path)
    if not target.is_local:
        return 0  # object stores write whole objects or nothing
    removed = 0
    for folder, _, files in os.walk(target.url):
        for name in files:
            if is_writer_temporary(name):
                os.remove(os.path.join(folder, name))
                removed += 1
    return removed


def mark_complete(path: StoreTarget | str | Path, attributes: dict[str, Any]) -> None:
    """The last writes of a build: ``attributes``, then the metadata digest with ``complete: true``.
    Only now may readers trust every row."""
    target = as_target(path)
    group = target.open_group(mode="r+")
    group.update_attributes(attributes)
    group.update_attributes({METADATA_DIGEST: metadata_digest(target), "complete": True})


def metadata_digest(path: StoreTarget | str | Path, keys: Sequence[str] | None = None) -> str:
    """sha256 of the store's metadata: every ``zarr.json`` as parsed JSON (key order and spacing do
    not matter), leaving out the group's ``complete`` flag and this digest. Chunks carry crc32c
    checksums; this is the metadata's, so ``verify`` finds a changed byte in any metadata file."""
    target = as_target(path)
    digest = hashlib.sha256()
    for key in keys if keys is not None else target.list_keys():
        if key != "zarr.json" and not key.endswith("/zarr.json"):
            continue
        try:
            document = json.loads(target.read_key(key))
        except ValueError as exc:  # also a byte that is not UTF-8
            raise CelebaMaskError(f"{target}/{key}", f"metadata is not valid JSON ({exc})") from exc
        if key == "zarr.json" and isinstance(document, dict) and isinstance(document.get("attributes"), dict):
            document["attributes"] = {name: value for name, value in document["attributes"].items()
                                      if name not in ("complete", METADATA_DIGEST)}
        digest.update(f"{key}\n{json.dumps(document, sort_keys=True, separators=(',', ':'))}\n".encode())
    return digest.hexdigest()


def bytes_on_disk(path: StoreTarget | str | Path) -> int:
    return as_target(path).nbytes()


CLASS_ARRAYS = ("class_present", "class_area")


def class_column_names(config: ClassConfig) -> list[str]:
    """Column k ↔ label value k, for k = 0 … max class id; ids the table skips are ``unused_<k>``."""
    names = {info.id: info.name for info in config.classes}
    return [names.get(k, f"unused_{k}") for k in range(config.max_id + 1)]


def create_class_arrays(group: zarr.Group, config: ClassConfig, count: int, shard_size: int) -> None:
    """Created by the coordinator, filled by the shard workers with their own rows."""
    columns = class_column_names(config)
    meaning = "column k counts label value k in the stored label map (background included)"
    create_row_array(group, "class_present", count, shard_size, (len(columns),), "bool", False, ("class",),
                     {"names": columns, "description": f"label value k occurs; {meaning}"})
    create_row_array(group, "class_area", count, shard_size, (len(columns),), "uint32", 0, ("class",),
                     {"names": columns, "description": f"pixels; {meaning}"})


UNPAINTED_ARRAYS = ("class_present_unpainted", "class_area_unpainted")


def layout_arrays(masks: bool) -> tuple[str, ...]:
    """The arrays every build of this layout creates whatever its source (the annotation arrays
    only from the annotation files it finds); ``masks`` False: built with ``--no-masks``."""
    return (*CORE_ARRAYS, "flags", *CLASS_ARRAYS, *UNPAINTED_ARRAYS, *(("masks",) if masks else ()))


def create_mask_arrays(group: zarr.Group, count: int, size: int, shard_size: int, keep_masks: bool) -> None:
    """``masks`` (unless ``keep_masks`` is False: ``--no-masks``), chunked and sharded like ``label``,
    and the per-class unpainted presence and area, one column per mask bit (always written: cheap)."""
    from celebamask.store.maskbits import MASK_BITS, MASKS_ZSTD_LEVEL

    if keep_masks:
        create_sharded_array(group, "masks", count, shard_size, (size, size), "uint32", 0, ("y", "x"), {
            "long_name": "every mask class's own mask, one bit each (before painting)",
            "bits": list(MASK_BITS),
            "flag_masks": [1 << k for k in range(len(MASK_BITS))],
            "flag_meanings": cf_flag_meanings(MASK_BITS),
            "description": "bit k set where mask class bits[k] is on (its own mask, before painting); "
                           "nearest-resized to the label's grid like the label",
        }, _chunk_codecs(MASKS_ZSTD_LEVEL))
    meaning = "column k: mask class bits[k]'s own mask (before painting), on the label's grid"
    create_row_array(group, "class_present_unpainted", count, shard_size, (len(MASK_BITS),), "bool", False,
                     ("mask_class",), {"names": list(MASK_BITS), "description": f"mask is not empty; {meaning}"})
    create_row_array(group, "class_area_unpainted", count, shard_size, (len(MASK_BITS),), "uint32", 0,
                     ("mask_class",), {"names": list(MASK_BITS), "description": f"pixels; {meaning}"})
