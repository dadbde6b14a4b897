from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from celebamask.dataset import MASK_CLASS_NAMES
from celebamask.errors import CelebaMaskError
from celebamask.sources.index import index_source, locate_source
from tests.conftest import SOURCE_COUNT


def index_of(path: Path):
    return index_source(locate_source(path))


def test_index_pairs_every_mask_with_its_image(synthetic_source: Path) -> None:
    index = index_of(synthetic_source)
    assert [s.index for s in index.samples] == list(range(SOURCE_COUNT))
    on_disk = sorted(p.name for p in (synthetic_source / "CelebAMask-HQ-mask-anno").rglob("*.png"))
    indexed = sorted(Path(rel).name for s in index.samples for rel in s.masks.values())
    assert indexed == on_disk
    for sample in index.samples:
        assert sample.image == f"CelebA-HQ-img/{sample.index}.jpg"
        for name, rel in sample.masks.items():
            assert rel == f"CelebAMask-HQ-mask-anno/{sample.index // 2000}/{sample.index:05d}_{name}.png"
    assert set(index.annotations) == {
        "CelebA-HQ-to-CelebA-mapping.txt", "CelebAMask-HQ-attribute-anno.txt", "CelebAMask-HQ-pose-anno.txt"}


def test_root_parent_and_nested_copy_are_all_accepted(source_copy: Path, tmp_path: Path) -> None:
    expected = [s.masks for s in index_of(source_copy).samples]
    assert [s.masks for s in index_of(source_copy.parent).samples] == expected
    nested = tmp_path / "download" / "CelebAMask-HQ" / "CelebAMask-HQ"
    nested.parent.mkdir(parents=True)
    shutil.move(source_copy, nested)
    assert [s.masks for s in index_of(tmp_path / "download").samples] == expected


def test_zip_reads_in_place_like_the_folder(synthetic_source: Path, tmp_path: Path) -> None:
    archive = tmp_path / "CelebAMask-HQ.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:
        for path in sorted(synthetic_source.rglob("*")):
            zipped.write(path, "CelebAMask-HQ/" + path.relative_to(synthetic_source).as_posix())
    folder, zipped_index = index_of(synthetic_source), index_of(archive)
    assert [(s.index, s.image, s.masks) for s in zipped_index.samples] == [
        (s.index, s.image, s.masks) for s in folder.samples]
    with zipped_index.ref.open() as files:
        rel = folder.samples[3].masks["skin"]
        assert files.read(rel) == (synthetic_source / rel).read_bytes()


def test_background_masks_are_tolerated(source_copy: Path) -> None:
    skin = source_copy / "CelebAMask-HQ-mask-anno/0/00000_skin.png"
    shutil.copy(skin, skin.with_name("00000_background.png"))
    index = index_of(source_copy)
    assert "background" not in index.samples[0].masks
    assert set(index.samples[0].masks) <= set(MASK_CLASS_NAMES)


@pytest.mark.parametrize(
    ("damage", "complaint", "named"),
    [
        (lambda r: shutil.rmtree(r / "CelebAMask-HQ-mask-anno"), "no CelebAMask-HQ-mask-anno", "CelebAMask-HQ"),
        (lambda r: shutil.rmtree(r / "CelebA-HQ-img"), "no CelebA-HQ-img", "CelebAMask-HQ"),
        (lambda r: [p.unlink() for p in (r / "CelebA-HQ-img").iterdir()], "no images", "CelebA-HQ-img"),
        (lambda r: [p.unlink() for p in (r / "CelebAMask-HQ-mask-anno").rglob("*.png")], "no masks",
         "CelebAMask-HQ-mask-anno"),
        (lambda r: shutil.copy(r / "CelebAMask-HQ-mask-anno/0/00001_skin.png",
                               r / "CelebAMask-HQ-mask-anno/0/00001_beard.png"), "unknown class 'beard'", "00001_beard.png"),
        (lambda r: (r / "CelebA-HQ-img/5.jpg").unlink(), "mask with no image", "00005_"),
        (lambda r: [p.unlink() for p in (r / "CelebAMask-HQ-mask-anno/0").glob("00009_*.png")],
         "image with no masks", "9.jpg"),
        (lambda r: (r / "CelebAMask-HQ-mask-anno/0/skin-00003.png").write_bytes(b""), "not <index:05d>_<class>.png",
         "skin-00003.png"),
    ],
)
def test_broken_sources_are_refused_with_the_file_named(source_copy: Path, damage, complaint: str, named: str) -> None:
    damage(source_copy)
    with pytest.raises(CelebaMaskError, match=complaint) as caught:
        index_of(source_copy)
    assert named in str(caught.value)


def test_a_folder_that_is_not_the_dataset_says_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    with pytest.raises(CelebaMaskError, match="looked for CelebA-HQ-img/ and CelebAMask-HQ-mask-anno/"):
        locate_source(tmp_path)
    with pytest.raises(CelebaMaskError, match="does not exist"):
        locate_source(tmp_path / "missing")


def test_a_home_relative_path_is_expanded(synthetic_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python API, like a shell, reads ``~/…`` as the home folder (source and store alike)."""
    from celebamask.store.location import as_target

    monkeypatch.setenv("HOME", str(synthetic_source.parent))
    assert locate_source(f"~/{synthetic_source.name}").location == str(synthetic_source)
    assert as_target("~/store.zarr").url == str(synthetic_source.parent / "store.zarr")
