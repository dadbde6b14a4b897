"""The lossless prediction step of the ``lossless-compact`` image preset, as plain numpy.

Kept apart from the zarr codec class (``codecs.py``) so shard workers encode without importing zarr.
"""

from __future__ import annotations

import numpy as np

RGB_GRADIENT_CODEC = "celebamask.rgb_gradient"


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
    planes = np.cumsum(residual, axis=-2, dtype=np.uint8)
    np.cumsum(planes, axis=-1, dtype=np.uint8, out=planes)
    planes[..., 0, :, :] += planes[..., 1, :, :]
    planes[..., 2, :, :] += planes[..., 1, :, :]
    return planes
