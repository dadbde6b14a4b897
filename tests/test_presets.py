"""Image codec presets: each builds and reads back; lossless ones are bit-exact, JPEG within a PSNR bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from celebamask import open_store
from celebamask.build.orchestrator import build_store
from celebamask.cli import main
from celebamask.errors import CelebaMaskError
from celebamask.store.codecs import (
    parse_image_codec,
    rgb_gradient_decode,
    rgb_gradient_encode,
)
from tests.reference import psnr

CORE_V3_CODECS = {"bytes", "transpose", "zstd", "blosc", "crc32c", "sharding_indexed"}
LIMIT = 10  # two full shards of 4 and a short one


def build(source: Path, target: Path, preset: str) -> Path:
    build_store(source, target, jobs=2, limit=LIMIT, shard_size=4, image_codec=preset)
    return target


@pytest.fixture(scope="module")
def lossless_store(synthetic_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(synthetic_source, tmp_path_factory.mktemp("presets") / "lossless.zarr", "lossless")


def inner_codec_names(store: Path, array: str) -> list[str]:
    codecs = json.loads((store / array / "zarr.json").read_text())["codecs"]
    assert [c["name"] for c in codecs] == ["sharding_indexed"]
    return [c["name"] for c in codecs[0]["configuration"]["codecs"]]


def test_default_preset_uses_only_core_codecs_with_a_checksum(lossless_store: Path) -> None:
    for array in ("image", "label"):
        names = inner_codec_names(lossless_store, array)
        assert set(names) <= CORE_V3_CODECS and names[-1] == "crc32c", names


def test_compact_preset_is_bit_exact_and_smaller(lossless_store: Path, synthetic_source: Path, tmp_path: Path) -> None:
    compact = build(synthetic_source, tmp_path / "compact.zarr", "lossless-compact")
    assert inner_codec_names(compact, "image")[-1] == "crc32c"
    a, b = open_store(lossless_store), open_store(compact)
    np.testing.assert_array_equal(b.images[:], a.images[:])
    np.testing.assert_array_equal(b.labels[:], a.labels[:])
    assert b.attrs["image_codec"] == "lossless-compact"
    assert b.provenance["options"]["image_codec"] == "lossless-compact"
    size = sum(f.stat().st_size for f in (compact / "image").rglob("*") if f.is_file())
    assert size < LIMIT * 512 * 512 * 3 / 1.5


def test_jpeg_preset_is_within_psnr_bound(lossless_store: Path, synthetic_source: Path, tmp_path: Path) -> None:
    pytest.importorskip("imagecodecs", reason="the [jpeg] extra is not installed")
    jpeg = build(synthetic_source, tmp_path / "jpeg.zarr", "jpeg:90")
    assert inner_codec_names(jpeg, "image") == ["celebamask.jpeg", "crc32c"]
    a, b = open_store(lossless_store), open_store(jpeg)
    assert b.attrs["image_codec"] == "jpeg:90"
    for row in range(LIMIT):
        assert psnr(b[row]["image"], a[row]["image"]) >= 35
    np.testing.assert_array_equal(b.labels[:], a.labels[:])  # labels stay lossless


def test_plain_zarr_reads_the_compact_preset_in_a_fresh_process(synthetic_source: Path, tmp_path: Path) -> None:
    """The codec reaches zarr through the package's entry points, without importing celebamask."""
    compact = build(synthetic_source, tmp_path / "compact.zarr", "lossless-compact")
    script = ("import sys, zarr; a = zarr.open_group(sys.argv[1], mode='r')['image'][3]; "
              "print(a.shape, int(a.astype('int64').sum()))")
    out = subprocess.run([sys.executable, "-c", script, str(compact)], capture_output=True, text=True, check=True)
    expected = open_store(compact).images[3]
    assert out.stdout.split(")")[1].strip() == str(int(expected.astype(np.int64).sum()))


def test_gradient_codec_round_trips_any_bytes() -> None:
    planes = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 48), dtype=np.uint8)
    residual = rgb_gradient_encode(planes)
    assert residual.shape == planes.shape and not np.array_equal(residual, planes)
    np.testing.assert_array_equal(rgb_gradient_decode(residual), planes)


@pytest.mark.parametrize("spec", ["webp", "jpeg:0", "jpeg:101", "jpeg:", "lossy"])
def test_unknown_presets_are_refused(spec: str) -> None:
    with pytest.raises(CelebaMaskError, match="unknown preset"):
        parse_image_codec(spec)


def test_cli_rejects_an_unknown_preset(synthetic_source: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["build", str(synthetic_source), str(tmp_path / "s.zarr"), "--image-codec", "png"])
    assert result.exit_code == 2 and "unknown preset" in result.output
    assert not (tmp_path / "s.zarr").exists()
