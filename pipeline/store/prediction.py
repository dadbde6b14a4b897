"""Byte predictors and their fast inverses, as plain numpy: the ``lossless-compact`` preset's
RGB gradient, and the running sums (modulo 256) that undo it and PNG's row filters.

Kept apart from the zarr codec class (``codecs.py``) so shard workers encode without importing zarr.
numpy's uint8 ``cumsum`` adds one byte at a time; the running sums here are 3-10x faster.
"""

from __future__ import annotations

import numpy as np

RGB_GRADIENT_CODEC = "celebamask.rgb_gradient"
_SCRATCH_BYTES = 120 * 1024  # int32 scratch of running_sum_along: under malloc's 128 KiB mmap threshold


def rgb_gradient_encode(planes: np.ndarray) -> np.ndarray:
    """(..., 3, y, x) uint8 → residuals of the same shape (see RgbGradientCodec)."""
    if planes.dtype != np.uint8 or planes.ndim < 3 or planes.shape[-3] != 3:
        raise ValueError(f"celebamask.rgb_gradient codes uint8 (..., 3, y, x) chunks, got {planes.dtype} {planes.shape}")
    colour = planes.copy()
    colour[..., 0, :, :] -= planes[..., 1, :, :]
    colour[..., 2, :, :] -= planes[..., 1, :, :]
    along_x = np.empty_like(colour)
    along_x[..., 0] = colour[..., 0]
    np.subtract(colour[..., 1:], colour[..., :-1], out=along_x[..., 1:])
    residual = np.empty_like(colour)
    residual[..., 0, :] = along_x[..., 0, :]
    np.subtract(along_x[..., 1:, :], along_x[..., :-1, :], out=residual[..., 1:, :])
    return residual


def rgb_gradient_decode(residual: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_gradient_encode`."""
    planes = np.array(residual, dtype=np.uint8)
    running_sum_down(planes)
    running_sum_along(planes.reshape(-1, planes.shape[-1]))
    planes[..., 0, :, :] += planes[..., 1, :, :]
    planes[..., 2, :, :] += planes[..., 1, :, :]
    return planes


def running_sum_along(rows: np.ndarray) -> None:
    """In place, the running sum modulo 256 along each row of a 2-D uint8 array.

    Summed in int32 (vectorised; a row of < 2**23 bytes cannot overflow it) in blocks, then cast
    back: the low byte is the sum modulo 256. The block's scratch stays under glibc's 128 KiB mmap
    threshold, so it comes from the heap: a 2 MB one was mapped fresh, and page-faulted in, on every
    call (~1000 faults, 4x the time of the sum itself on this project's machines).
    """
    block_rows = max(1, min(len(rows), _SCRATCH_BYTES // 4 // max(1, rows.shape[-1])))
    sums = np.empty((block_rows, rows.shape[-1]), dtype=np.int32)
    for start in range(0, len(rows), block_rows):
        block = rows[start : start + block_rows]
        np.cumsum(block, axis=-1, dtype=np.int32, out=sums[: len(block)])
        np.copyto(block, sums[: len(block)], casting="unsafe")


def running_sum_down(values: np.ndarray, axis: int = -2) -> None:
    """In place, the running sum modulo 256 along ``axis`` (whole rows at a time), in log2(n)
    vector additions."""
    if axis not in (0, -values.ndim):  # moveaxis costs more than a short run's additions
        values = np.moveaxis(values, axis, 0)
    step = 1
    while step < len(values):
        values[step:] += values[:-step]  # numpy buffers the overlapping operands
        step *= 2
