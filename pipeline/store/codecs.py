"""Image codec presets (``--image-codec``) and the two zarr codecs of this package.

``lossless`` (default) uses only codecs of the Zarr v3 core specification, so any v3 reader
(zarr-python, tensorstore, zarrs) opens the store. ``lossless-compact`` adds
``celebamask.rgb_gradient``, a prediction step that makes photo content ~1.5× smaller again
under zstd; ``jpeg:Q`` stores images as JPEG through imagecodecs (the optional ``[jpeg]``
extra). Both codecs register with zarr through this package's entry points, so plain
``zarr.open_group`` reads such stores wherever celebamask (and, for JPEG, imagecodecs) is installed.
Every preset keeps a crc32c checksum on each chunk.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
from zarr.core.common import parse_named_configuration
from zarr.registry import register_codec

from celebamask.errors import CelebaMaskError
from celebamask.store.chunks import JPEG_CODEC
from celebamask.store.prediction import (
    RGB_GRADIENT_CODEC,
    rgb_gradient_decode,
    rgb_gradient_encode,
)

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

DEFAULT_IMAGE_CODEC = "lossless"
IMAGE_CODEC_CHOICES = ("lossless", "lossless-compact", "jpeg:Q")
# lossless: blosc's lz4 on bit planes, level 1. On photographs (and the synthetic images) it
# is nearly as small as zstd level 1 (~1.3x) at a third of zstd's encode time and with a faster
# decode; levels above 1 gain ~1.5% in size for 60% more encode time. lossless-compact: zstd
# level 1, because after the gradient prediction levels 3-9 gain nothing.
IMAGE_BLOSC = {"cname": "lz4", "clevel": 1, "shuffle": "bitshuffle", "typesize": 1}
COMPACT_ZSTD_LEVEL = 1
JPEG_EXTRA_HINT = "install the optional extra: pip install 'celebamask[jpeg]' (imagecodecs)"
_JPEG_SPEC = re.compile(r"^jpeg:(\d{1,3})$")


@dataclass(frozen=True)
class ImageCodec:
    """A parsed ``--image-codec`` preset; ``spec`` is its canonical text, recorded in the store."""

    kind: str  # "lossless", "lossless-compact" or "jpeg"
    quality: int | None = None

    @property
    def spec(self) -> str:
        return f"jpeg:{self.quality}" if self.kind == "jpeg" else self.kind

    @property
    def lossless(self) -> bool:
        return self.kind != "jpeg"


def parse_image_codec(spec: str) -> ImageCodec:
    """``lossless``, ``lossless-compact`` or ``jpeg:Q`` with Q in 1..100."""
    text = spec.strip().lower()
    if text in ("lossless", "lossless-compact"):
        return ImageCodec(text)
    match = _JPEG_SPEC.match(text)
    if match and 1 <= int(match.group(1)) <= 100:
        return ImageCodec("jpeg", int(match.group(1)))
    raise CelebaMaskError("--image-codec", f"unknown preset {spec!r}; choose {', '.join(IMAGE_CODEC_CHOICES)} (Q in 1..100)")


def image_array_codecs(codec: ImageCodec) -> dict[str, Any]:
    """The inner chunk codecs (create_array's filters / serializer / compressors) of the image array."""
    if codec.kind == "lossless":
        return {"compressors": [BloscCodec(**IMAGE_BLOSC), Crc32cCodec()]}
    if codec.kind == "lossless-compact":
        from zarr.codecs import TransposeCodec

        return {
            # channel planes first, so the gradient runs along contiguous rows
            "filters": [TransposeCodec(order=(0, 3, 1, 2)), RgbGradientCodec()],
            "compressors": [ZstdCodec(level=COMPACT_ZSTD_LEVEL), Crc32cCodec()],
        }
    _require_imagecodecs()
    return {"serializer": JpegCodec(quality=codec.quality or 95), "compressors": [Crc32cCodec()]}


def _require_imagecodecs() -> Any:
    try:
        import imagecodecs
    except ImportError as exc:
        raise CelebaMaskError("--image-codec", f"JPEG images need imagecodecs: {JPEG_EXTRA_HINT}") from exc
    return imagecodecs


@dataclass(frozen=True)
class RgbGradientCodec(ArrayArrayCodec):
    """``celebamask.rgb_gradient``: lossless prediction for channel-planar RGB chunks (..., 3, y, x).

    Red and blue become their difference from green (colour channels move together), then each
    plane becomes its 2-D gradient residual p[y,x] - p[y,x-1] - p[y-1,x] + p[y-1,x-1], all
    modulo 256. Smooth photo content turns into small numbers that zstd packs tightly; decoding
    is two running sums and two additions, all vectorised.
    """

    is_fixed_size = True
    name = RGB_GRADIENT_CODEC

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        parse_named_configuration(data, cls.name, require_configuration=False)
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        return input_byte_length

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> NDBuffer | None:
        residual = await asyncio.to_thread(rgb_gradient_encode, chunk_array.as_numpy_array())
        return chunk_spec.prototype.nd_buffer.from_numpy_array(residual)

    async def _decode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> NDBuffer:
        pixels = await asyncio.to_thread(rgb_gradient_decode, chunk_array.as_numpy_array())
        return chunk_spec.prototype.nd_buffer.from_numpy_array(pixels)


@dataclass(frozen=True)
class JpegCodec(ArrayBytesCodec):
    """``celebamask.jpeg``: each (1, y, x, 3) uint8 chunk as one baseline JPEG (imagecodecs, libjpeg-turbo)."""

    is_fixed_size = False
    name = JPEG_CODEC
    quality: int = 95

    def __init__(self, *, quality: int = 95) -> None:
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"JPEG quality must be 1..100, got {quality}")
        object.__setattr__(self, "quality", int(quality))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        _, configuration = parse_named_configuration(data, cls.name)
        return cls(**configuration)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "configuration": {"quality": self.quality}}

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        raise NotImplementedError

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        imagecodecs = _imagecodecs_for_reading()
        pixels = chunk_array.as_numpy_array()
        if pixels.dtype != np.uint8 or pixels.shape[-1] != 3 or int(np.prod(pixels.shape[:-3])) != 1:
            raise ValueError(f"celebamask.jpeg codes one uint8 RGB image per chunk, got {pixels.dtype} {pixels.shape}")
        image = pixels.reshape(pixels.shape[-3:])
        encoded = await asyncio.to_thread(imagecodecs.jpeg8_encode, image, level=self.quality)
        return chunk_spec.prototype.buffer.from_bytes(bytes(encoded))

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        imagecodecs = _imagecodecs_for_reading()
        image = await asyncio.to_thread(imagecodecs.jpeg8_decode, chunk_bytes.to_bytes())
        return chunk_spec.prototype.nd_buffer.from_numpy_array(image.reshape(chunk_spec.shape))


def _imagecodecs_for_reading() -> Any:
    try:
        import imagecodecs
    except ImportError as exc:
        raise ImportError(f"this store's images are JPEG-coded (celebamask.jpeg); {JPEG_EXTRA_HINT}") from exc
    return imagecodecs


# Entry points (pyproject.toml) register these for any zarr process; registering on import as
# well keeps an environment with stale entry-point metadata working.
register_codec(RgbGradientCodec.name, RgbGradientCodec)
register_codec(JpegCodec.name, JpegCodec)
