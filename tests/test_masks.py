"""The ``masks`` array: every bit equals its source PNG, every preset renders from one store as a
build with it would paint, and a --no-masks store reads everywhere else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from celebamask import open_store
from celebamask.build.orchestrator import build_store
from celebamask.config import CONFIG_DIR
from celebamask.errors import CelebaMaskError
from tests.reference import CONVENTIONS, mask_path, reference_label

PNG_MODES = ("L", "LA", "RGB", "RGBA", "P", "1", "I;16")


def reference_bits(root: Path, index: int) -> dict[str, np.ndarray]:
    """Each class's mask decoded by Pillow (RGB conversion, first channel), independent of the pipeline."""
    order = CONVENTIONS["default"][0]
    out = {}
    for name in order:
        path = mask_path(root, index, name)
        out[name] = np.array(Image.open(path).convert("RGB"))[:, :, 0] > 0 if path.exists() else np.zeros((512, 512), bool)
    return out


def test_masks_equal_every_source_png_in_every_mode(source_copy: Path, tmp_path: Path) -> None:
    for index in range(2):
        for k, name in enumerate(CONVENTIONS["default"][0]):
            path = mask_path(source_copy, index, name)
            if path.exists():
                on = np.array(Image.open(path).convert("RGB"))[:, :, 0] > 0
                mode = PNG_MODES[(k + index) % len(PNG_MODES)]
                pixels = Image.fromarray(np.where(on, 255, 0).astype(np.uint8))
                converted = (Image.fromarray(np.where(on, 51400, 0).astype(np.uint16)) if mode == "I;16"
                             else pixels.convert(mode))
                converted.save(path)
    store = tmp_path / "modes.zarr"
    build_store(source_copy, store, jobs=1, limit=2, shard_size=2)
    opened = open_store(store)
    assert opened.mask_bits == list(CONVENTIONS["default"][0])
    for row in range(2):
        bits = opened.mask_bits_of(row)
        for k, (name, expected) in enumerate(reference_bits(source_copy, row).items()):
            np.testing.assert_array_equal((bits >> k) & 1 == 1, expected, err_msg=name)
            np.testing.assert_array_equal(opened.mask(row, name, painted=False), expected, err_msg=name)
        area = opened.annotation("class_area_unpainted")[row]
        assert area.tolist() == [int(m.sum()) for m in reference_bits(source_copy, row).values()]


@pytest.mark.parametrize("preset", ["default", "official", "face-parsing"])
def test_each_preset_renders_from_one_default_store_as_its_build(built_store: Path, synthetic_source: Path,
                                                                 tmp_path: Path, preset: str) -> None:
    opened = open_store(built_store)
    rendered = opened.label_maps(slice(None), config=preset)
    for row, sample_id in enumerate(opened.sample_ids[:]):
        np.testing.assert_array_equal(rendered[row], reference_label(synthetic_source, int(sample_id), preset))
    if preset != "default":
        other = tmp_path / f"{preset}.zarr"
        build_store(synthetic_source, other, jobs=1, limit=8, shard_size=8, config=preset, masks=False)
        np.testing.assert_array_equal(rendered[:8], open_store(other).labels[:])
    np.testing.assert_array_equal(opened.label_maps(slice(None)), opened.labels[:])  # its own config


def test_masks_are_on_the_label_grid_at_another_size(built_store: Path, synthetic_source: Path, tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    config.write_text((CONFIG_DIR / "official.toml").read_text().replace("size = 512", "size = 256"))
    store = tmp_path / "small.zarr"
    build_store(synthetic_source, store, jobs=1, limit=8, shard_size=8, config=config)
    small = open_store(store)
    assert small.masks.shape == (8, 256, 256)
    np.testing.assert_array_equal(small.label_maps(slice(None)), small.labels[:])
    # from the full-resolution store: painted at 512, resized as the build does
    np.testing.assert_array_equal(open_store(built_store).label_maps(range(8), config=config), small.labels[:])
    np.testing.assert_array_equal(small.label_maps(slice(None), config="default"),
                                  small.label_maps(slice(None), config="default"))


def test_a_store_without_masks_reads_everywhere_and_says_what_needs_them(synthetic_source: Path, tmp_path: Path) -> None:
    store = tmp_path / "plain.zarr"
    build_store(synthetic_source, store, jobs=1, limit=4, shard_size=4, masks=False)
    opened = open_store(store)
    assert not opened.has_masks and "masks" not in opened.group
    assert opened[0]["label"].shape == (512, 512) and opened.batch(0, 4)["label"].shape == (4, 512, 512)
    assert opened.region(0, "skin").any() and opened.mask(0, "hair").any()
    assert len(opened.select(present=["skin"], painted=False)) == 4
    assert opened.class_statistics(painted=False)["classes"][0]["images_unpainted"] == 4
    for needs_masks in (lambda: opened.label_maps(0), lambda: opened.mask(0, "hair", painted=False),
                        lambda: opened.region(0, ["eye_g"], painted=False), lambda: opened.masks,
                        lambda: opened.to_xarray(unpack_masks=True)):
        with pytest.raises(CelebaMaskError, match="without --no-masks") as caught:
            needs_masks()
        assert "\n" not in str(caught.value)
    pytest.importorskip("xarray")
    ds = opened.to_xarray()  # the unpainted columns are there, the bits not
    assert "masks" not in ds and "mask_bit" not in ds.coords and "mask_class" in ds.coords
    with pytest.raises(CelebaMaskError, match="masks False vs True"):
        build_store(synthetic_source, store, jobs=1, limit=4, shard_size=4, resume=True)


def test_verify_checks_label_against_masks_and_masks_against_the_source(built_store: Path, synthetic_source: Path,
                                                                         tmp_path: Path) -> None:
    import shutil

    import zarr

    from celebamask.build.verify import verify_store

    assert verify_store(built_store, source=synthetic_source, samples=3) == []
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(built_store, damaged)
    masks = zarr.open_group(damaged, mode="r+")["masks"]
    row = np.asarray(masks[1])
    row[200:210, 200:210] ^= np.uint32(1 << 5)  # eye_g flipped in a 10x10 square: written with a valid checksum
    masks[1] = row
    problems = verify_store(damaged, source=synthetic_source, samples=24)
    assert any("label: row 1 differs" in p and "masks painted" in p for p in problems), problems
    assert any("masks: row 1" in p and "eye_g" in p for p in problems), problems


def test_to_xarray_unpacks_each_class_own_mask_lazily(built_store: Path, synthetic_source: Path) -> None:
    """class_mask equals masks decoded from the synthetic PNGs by Pillow, class by class, row by row."""
    pytest.importorskip("xarray")
    da = pytest.importorskip("dask.array")
    opened = open_store(built_store)
    ds = opened.to_xarray(unpack_masks=True, chunks={"sample": 8})
    stack = ds.class_mask
    assert isinstance(stack.data, da.Array) and stack.dtype == bool
    assert stack.dims == ("sample", "mask_class", "y", "x")
    assert sorted(stack.mask_class.values) == sorted(CONVENTIONS["default"][0])
    assert stack.data.chunks[0] == (8,) * (len(opened) // 8) + ((len(opened) % 8,) if len(opened) % 8 else ())
    rows = [0, 5, len(opened) - 1]
    picked = stack.isel(sample=rows).compute()
    for row, sample_id in zip(rows, opened.sample_ids[rows]):
        assert int(picked.sample_id[rows.index(row)]) == sample_id
        for name, expected in reference_bits(synthetic_source, int(sample_id)).items():
            got = picked.isel(sample=rows.index(row)).sel(mask_class=name).values
            np.testing.assert_array_equal(got, expected, err_msg=f"sample {sample_id} {name}")
            bit = int(ds.mask_bit.sel(mask_class=name))
            np.testing.assert_array_equal((ds.masks.sel(sample_id=sample_id).values & bit) != 0, expected)
    # a whole-store reduction through dask equals the stored unpainted areas
    areas = stack.sum(["y", "x"]).transpose("sample", "mask_class").values
    np.testing.assert_array_equal(areas, opened.annotation("class_area_unpainted")[:])
    assert "class_mask" not in opened.to_xarray()  # only when asked: it is 18 times the masks
