"""The store as a labelled xarray Dataset: the same lazy arrays, plus names on their axes.

``xarray.open_zarr`` alone already gives the variables, dims and lazy dask data; this adds what
only the store's attributes know: which dataset index each row is, which class each label value
is, and the names written next to an array (``attrs["names"]``), so a notebook can say
``ds.sel(sample_id=12)`` or ``ds.class_area.sel({"class": "hair"})`` instead of counting columns.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from celebamask.errors import CelebaMaskError

if TYPE_CHECKING:
    import xarray

    from celebamask.read.reader import CelebAMaskStore

log = logging.getLogger(__name__)

# Decoding settings that keep every array as stored. With zarr v3, xarray ignores fill values by
# default; asking it to mask them would turn black image pixels (fill 0) and unwritten labels
# (fill 255) into NaN and every uint8 array into float. Consolidated metadata is not part of the
# Zarr v3 specification and the store does not write it.
OPEN_ZARR_DEFAULTS: dict[str, Any] = {
    "consolidated": False,
    "zarr_format": 3,
    "use_zarr_fill_value_as_mask": False,
}
CLASS_DIM = "class"
MASK_DIM = "mask_class"  # the dimension of the per-class unpainted arrays


def to_xarray(store: CelebAMaskStore, unpack_masks: bool = False, **open_zarr_kwargs: Any) -> xarray.Dataset:
    """Open ``store`` with xarray (lazy, dask-backed) and add coordinates from its attributes;
    ``unpack_masks``: also ``class_mask``, each class's own mask as a lazy bool stack."""
    try:
        import xarray as xr
    except ImportError as exc:
        raise ImportError("to_xarray needs xarray and dask: pip install 'celebamask[notebook]'") from exc

    options = {**OPEN_ZARR_DEFAULTS, **open_zarr_kwargs}
    with warnings.catch_warnings():
        # A layout-1 store keeps its source stamps in a file at its top, which zarr warns about.
        warnings.filterwarnings("ignore", message="Object at .* is not recognized as a component of a Zarr hierarchy")
        dataset = xr.open_zarr(store.group.store, group=store.group.path or None, **options)
    # Layout 2 names sample_id in each array's CF ``coordinates``; layout 1 did not.
    dataset = dataset.set_coords("sample_id").set_xindex("sample_id")
    dataset = _with_class_names(dataset, store)
    if dataset.sizes.get("channel") == 3:
        dataset = dataset.assign_coords(channel=["R", "G", "B"])
    for name in list(dataset.data_vars):
        names = dataset[name].attrs.get("names")
        if names is not None:
            dataset = _with_names(dataset, str(name), [str(n) for n in names], store.location)
    if "masks" in dataset:
        dataset = _with_mask_bits(dataset, store.location)
    elif unpack_masks:
        store._masks_array("to_xarray(unpack_masks=True)")  # raises: built with --no-masks
    if unpack_masks:
        dataset = dataset.assign(class_mask=_class_mask(dataset))
    return dataset


def _with_mask_bits(dataset: xarray.Dataset, location: str) -> xarray.Dataset:
    """``mask_class`` (the names in ``masks.attrs["bits"]``) and ``mask_bit`` = 1 << k along it, so
    ``(ds.masks & ds.mask_bit.sel(mask_class="hair")) != 0`` is hair's own mask."""
    bits = [str(name) for name in dataset.masks.attrs.get("bits", [])]
    if not bits:
        raise CelebaMaskError(location, "array 'masks' has no 'bits' attribute naming its bits")
    if MASK_DIM in dataset.coords and list(dataset.coords[MASK_DIM].values) != bits:
        raise CelebaMaskError(location, f"array 'masks' names its bits differently from the {MASK_DIM!r} coordinate")
    return dataset.assign_coords({MASK_DIM: bits, "mask_bit": (MASK_DIM, np.left_shift(np.uint32(1), np.arange(len(bits), dtype=np.uint32)))})


def _class_mask(dataset: xarray.Dataset) -> xarray.DataArray:
    """(sample, mask_class, y, x) bool, lazy: one decode of a ``masks`` chunk gives every class."""
    stack = ((dataset.masks & dataset.mask_bit) != 0).transpose("sample", MASK_DIM, "y", "x")
    return stack.assign_attrs(long_name="each mask class's own mask (before painting)",
                              description="class_mask[s, k] = masks[s] bit k: overlaps kept, unlike label")


def _with_class_names(dataset: xarray.Dataset, store: CelebAMaskStore) -> xarray.Dataset:
    """``class`` coordinate: position k names label value k (k = 0 … max id), like the per-class columns."""
    count = max(c.id for c in store.classes) + 1
    names = [""] * count
    for info in store.classes:
        names[info.id] = info.name
    if CLASS_DIM in dataset.sizes and dataset.sizes[CLASS_DIM] != count:
        raise CelebaMaskError(
            store.location,
            f"arrays with dimension {CLASS_DIM!r} have {dataset.sizes[CLASS_DIM]} columns, "
            f"but the class table has ids 0 … {count - 1}",
        )
    return dataset.assign_coords({CLASS_DIM: names, "class_id": (CLASS_DIM, np.arange(count))})


def _with_names(dataset: xarray.Dataset, name: str, names: list[str], location: str) -> xarray.Dataset:
    """Names of an array's last axis become that axis' coordinate; names of a per-sample code
    array (e.g. ``split``: 0 = train …) become a ``{name}_name`` coordinate along ``sample``."""
    variable = dataset[name]
    if variable.dims == ("sample",) and np.issubdtype(variable.dtype, np.integer):
        codes = np.asarray(variable.values)
        known = (codes >= 0) & (codes < len(names))
        labels = np.where(known, np.asarray(names, dtype=object)[np.where(known, codes, 0)], "")
        return dataset.assign_coords({f"{name}_name": ("sample", labels.astype(str))})
    axis = variable.dims[-1]
    if axis == "sample" or variable.sizes[axis] != len(names):
        raise CelebaMaskError(
            location, f"array {name!r}: {len(names)} names in its attributes do not fit its dims {variable.sizes}"
        )
    if axis in dataset.coords:
        if list(dataset.coords[axis].values) != names:
            raise CelebaMaskError(location, f"array {name!r} names dimension {axis!r} differently from another array")
        return dataset
    log.debug("naming dimension %r of %s from its attributes", axis, name)
    return dataset.assign_coords({axis: names})
