from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from celebamask.build.resize import decode_image
from celebamask.store.maskbits import resize_label
from celebamask.errors import CelebaMaskError
from tests.reference import psnr, reference_image


@pytest.mark.parametrize("size", [512, 384, 256])
def test_fast_decode_is_within_40_db_of_full_decode_and_lanczos(synthetic_source: Path, size: int) -> None:
    for index in range(6):
        data = (synthetic_source / "CelebA-HQ-img" / f"{index}.jpg").read_bytes()
        image = decode_image(data, f"{index}.jpg", size)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        assert psnr(image, reference_image(synthetic_source, index, size)) >= 40


@pytest.mark.parametrize(
    "variant", ["progressive", "4:4:4", "4:2:2", "4:2:0", "exif-and-icc", "grayscale", "cmyk"]
)
def test_every_kind_of_jpeg_is_within_40_db(synthetic_source: Path, variant: str) -> None:
    """Copies of the dataset are re-saved by many tools: each encoding takes the fast path or
    Pillow's, and either must stay within 40 dB of a full decode + Lanczos of the same file."""
    from PIL import ImageCms

    with Image.open(synthetic_source / "CelebA-HQ-img" / "1.jpg") as source:
        photo = source.convert({"grayscale": "L", "cmyk": "CMYK"}.get(variant, "RGB"))
    options: dict[str, object] = {"quality": 95}
    if variant == "progressive":
        options["progressive"] = True
    elif variant.startswith("4:"):
        options["subsampling"] = variant
    elif variant == "exif-and-icc":
        exif = Image.Exif()
        exif[0x010F] = "camera"  # Make
        options.update(exif=exif, icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", **options)
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as full:
        expected = np.asarray(full.convert("RGB").resize((512, 512), Image.Resampling.LANCZOS))
    image = decode_image(data, f"{variant}.jpg", 512)
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    assert psnr(image, expected) >= 40


def jpeg_bytes(width: int, height: int, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_grayscale_jpeg_becomes_rgb() -> None:
    image = decode_image(jpeg_bytes(1024, 1024, "L"), "gray.jpg", 512)
    assert image.shape == (512, 512, 3)
    assert (image[..., 0] == image[..., 1]).all()


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        (b"", "empty file"),
        (jpeg_bytes(1024, 768), "1024x768, not square"),
        (jpeg_bytes(1024, 1024)[:5000], "cannot decode JPEG"),
        (b"\x89PNG\r\n\x1a\n not a jpeg", "not a JPEG"),
        (jpeg_bytes(256, 256), "smaller than"),
    ],
)
def test_bad_images_name_the_file(payload: bytes, complaint: str) -> None:
    with pytest.raises(CelebaMaskError, match=complaint) as caught:
        decode_image(payload, "/data/7.jpg", 512)
    assert caught.value.path == "/data/7.jpg"


def test_png_posing_as_jpeg_is_refused() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (1024, 1024)).save(buffer, format="PNG")
    with pytest.raises(CelebaMaskError, match="not a JPEG"):
        decode_image(buffer.getvalue(), "7.jpg", 512)


def test_label_resize_is_nearest_and_only_when_needed() -> None:
    label = np.random.default_rng(0).integers(0, 19, (512, 512), dtype=np.uint8)
    assert resize_label(label, 512) is label
    half = resize_label(label, 256)
    assert half.shape == (256, 256)
    assert set(np.unique(half)) <= set(np.unique(label))
    blocks = np.kron(np.arange(16, dtype=np.uint8).reshape(4, 4), np.ones((128, 128), dtype=np.uint8))
    np.testing.assert_array_equal(resize_label(blocks, 4), np.arange(16).reshape(4, 4))
