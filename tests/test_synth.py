"""The synthetic source must look like the real download, or passing tests mean little."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from celebamask.dataset import MASK_CLASS_NAMES
from celebamask.synth.generate import (
    CELEBA_ATTRIBUTE_NAMES,
    PUBLISHED_PRESENCE,
    generate_source,
)

REALISM_COUNT = 200
MASK_NAME = re.compile(r"^(\d{5})_([a-z_]+)\.png$")


@pytest.fixture(scope="module")
def realism_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_source(tmp_path_factory.mktemp("realism"), REALISM_COUNT, seed=3, jobs=2)


def test_layout_matches_the_real_download(realism_source: Path) -> None:
    images = sorted(int(p.stem) for p in (realism_source / "CelebA-HQ-img").iterdir())
    assert images == list(range(REALISM_COUNT))
    assert [p.name for p in (realism_source / "CelebAMask-HQ-mask-anno").iterdir()] == ["0"]
    for path in (realism_source / "CelebAMask-HQ-mask-anno" / "0").iterdir():
        match = MASK_NAME.match(path.name)
        assert match, path.name
        assert int(match.group(1)) < REALISM_COUNT and match.group(2) in MASK_CLASS_NAMES
    for name in ("CelebA-HQ-to-CelebA-mapping.txt", "CelebAMask-HQ-attribute-anno.txt", "CelebAMask-HQ-pose-anno.txt"):
        assert (realism_source / name).is_file()


def test_images_are_photo_like_1024_jpegs(realism_source: Path) -> None:
    sizes = []
    for index in range(0, REALISM_COUNT, 20):
        path = realism_source / "CelebA-HQ-img" / f"{index}.jpg"
        sizes.append(path.stat().st_size)
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (1024, 1024)
            pixels = np.asarray(image)
        assert pixels.std() > 20  # not a flat colour
        assert len(np.unique(pixels[..., 0])) > 100
    assert 60_000 <= min(sizes) and max(sizes) <= 200_000


def test_masks_are_binary_512_pngs_in_mixed_modes(realism_source: Path) -> None:
    modes = Counter()
    for path in sorted((realism_source / "CelebAMask-HQ-mask-anno" / "0").iterdir())[:150]:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (512, 512)
            modes[image.mode] += 1
            assert set(np.unique(np.asarray(image))) <= {0, 255}
    assert set(modes) == {"L", "RGB"}


def test_presence_is_close_to_the_published_frequencies(realism_source: Path) -> None:
    present = Counter(MASK_NAME.match(p.name).group(2) for p in (realism_source / "CelebAMask-HQ-mask-anno" / "0").iterdir())
    for name in MASK_CLASS_NAMES:
        expected = PUBLISHED_PRESENCE[name]
        observed = present[name] / REALISM_COUNT
        # Four binomial standard deviations, at least two samples' worth.
        tolerance = max(4 * np.sqrt(expected * (1 - expected) / REALISM_COUNT), 2 / REALISM_COUNT)
        assert abs(observed - expected) <= tolerance, (name, observed, expected)


def test_annotation_files_have_the_real_formats(realism_source: Path) -> None:
    mapping = (realism_source / "CelebA-HQ-to-CelebA-mapping.txt").read_text().splitlines()
    assert mapping[0].split() == ["idx", "orig_idx", "orig_file"]
    rows = [line.split() for line in mapping[1:]]
    assert [int(r[0]) for r in rows] == list(range(REALISM_COUNT))
    originals = [int(r[1]) for r in rows]
    assert len(set(originals)) == REALISM_COUNT and all(0 <= o < 202599 for o in originals)
    assert all(r[2] == f"{int(r[1]) + 1:06d}.jpg" for r in rows)
    train_share = np.mean([o < 162771 for o in originals])
    assert 0.7 < train_share < 0.9  # published: 24,183 / 30,000

    attributes = (realism_source / "CelebAMask-HQ-attribute-anno.txt").read_text().splitlines()
    assert int(attributes[0]) == REALISM_COUNT and attributes[1].split() == list(CELEBA_ATTRIBUTE_NAMES)
    assert len(CELEBA_ATTRIBUTE_NAMES) == 40
    glasses = CELEBA_ATTRIBUTE_NAMES.index("Eyeglasses")
    for line in attributes[2:]:
        name, *values = line.split()
        assert re.fullmatch(r"\d+\.jpg", name) and len(values) == 40 and set(values) <= {"1", "-1"}
        has_glasses = (realism_source / "CelebAMask-HQ-mask-anno/0" / f"{int(name[:-4]):05d}_eye_g.png").exists()
        assert (values[glasses] == "1") == has_glasses

    pose = (realism_source / "CelebAMask-HQ-pose-anno.txt").read_text().splitlines()
    assert int(pose[0]) == REALISM_COUNT and pose[1].split() == ["Yaw", "Pitch", "Raw"]
    assert all(len(line.split()) == 4 for line in pose[2:])


def test_same_seed_same_bytes_whatever_the_jobs(tmp_path: Path) -> None:
    one = generate_source(tmp_path / "one", 4, seed=11, jobs=1)
    two = generate_source(tmp_path / "two", 4, seed=11, jobs=2)
    other = generate_source(tmp_path / "other", 4, seed=12, jobs=1)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)
    assert (one / "CelebA-HQ-img/0.jpg").read_bytes() != (other / "CelebA-HQ-img/0.jpg").read_bytes()


def _mask(root: Path, index: int, name: str) -> np.ndarray | None:
    path = root / "CelebAMask-HQ-mask-anno" / "0" / f"{index:05d}_{name}.png"
    if not path.exists():
        return None
    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 0


def test_drawn_ears_are_labelled_ear_not_hair(realism_source: Path) -> None:
    """The photo draws ears and earrings over the hair; as in the real data, the label shows them."""
    from tests.reference import DEFAULT_ORDER, reference_label

    checked = 0
    for index in range(REALISM_COUNT):
        hair = _mask(realism_source, index, "hair")
        if hair is None:
            continue
        label = reference_label(realism_source, index, "default")
        for name in ("l_ear", "r_ear", "ear_r"):
            part = _mask(realism_source, index, name)
            if part is None:
                continue
            assert not (part & hair).any(), (index, name)
            # painted after hair only: the hat; everything else the label shows of it is the part itself
            hat = _mask(realism_source, index, "hat")
            visible = part & ~hat if hat is not None else part
            shown = np.isin(label[visible], [DEFAULT_ORDER.index(n) for n in ("l_ear", "r_ear", "ear_r")])
            assert shown.mean() > 0.95, (index, name, shown.mean())
            checked += 1
    assert checked > 50
