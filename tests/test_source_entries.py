"""An entry named like a sample's file that is not a readable regular file (a dangling link, a
folder, a FIFO) is that sample's error naming it, never a class or an image dropped unseen; a
file the layout does not place (one folder too deep) is ignored with one warning line."""

from __future__ import annotations

import io
import logging
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from celebamask.cli import main
from celebamask.errors import CelebaMaskError
from celebamask.sources.index import index_source, locate_source

MASKS = "CelebAMask-HQ-mask-anno/0"
HAIR = f"{MASKS}/00003_hair.png"
IMAGE = "CelebA-HQ-img/3.jpg"


def index_of(path: Path, skip_bad: bool = False):
    return index_source(locate_source(path), skip_bad=skip_bad)


def _build(source: Path, store: Path, *extra: str):
    return CliRunner().invoke(main, ["build", str(source), str(store), "--jobs", "1", "--shard-size", "4",
                                     "--limit", "8", "--quiet", *extra])


def _dangling(path: Path) -> None:
    path.unlink()
    path.symlink_to("/nonexistent/x.png")


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside.png").write_bytes(b"")


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


DAMAGES = [(_dangling, "is a dangling symbolic link (to /nonexistent/x.png)"), (_folder, "is a directory"),
           (_fifo, "is a named pipe (FIFO)")]


@pytest.mark.parametrize(("damage", "said"), DAMAGES)
def test_a_mask_entry_that_is_not_a_file_stops_the_index_naming_it(source_copy: Path, damage, said: str) -> None:
    damage(source_copy / HAIR)
    with pytest.raises(CelebaMaskError) as caught:
        index_of(source_copy)
    assert caught.value.path == str(source_copy / HAIR)
    assert caught.value.problem == f"{said}, not a mask PNG"


@pytest.mark.parametrize(("damage", "said"), DAMAGES[:2])
def test_an_image_entry_that_is_not_a_file_is_named_not_its_masks(source_copy: Path, damage, said: str) -> None:
    damage(source_copy / IMAGE)
    with pytest.raises(CelebaMaskError) as caught:
        index_of(source_copy)
    assert caught.value.path == str(source_copy / IMAGE)
    assert caught.value.problem.startswith(said) and caught.value.problem.endswith("not an image JPEG")


@pytest.mark.parametrize("entry", [HAIR, IMAGE])
def test_skip_mode_records_the_broken_entry_and_builds_the_rest(synthetic_source: Path, source_copy: Path,
                                                                tmp_path: Path, entry: str) -> None:
    _dangling(source_copy / entry)
    failed = _build(source_copy, tmp_path / "failed.zarr")
    assert failed.exit_code == 1
    assert failed.output.strip().splitlines() == [
        f"error: {source_copy / entry}: is a dangling symbolic link (to /nonexistent/x.png), "
        f"not {'a mask PNG' if entry == HAIR else 'an image JPEG'}"]

    assert _build(source_copy, tmp_path / "skip.zarr", "--on-error", "skip").exit_code == 0
    assert _build(synthetic_source, tmp_path / "clean.zarr").exit_code == 0
    skipped = zarr.open_group(tmp_path / "skip.zarr", mode="r")
    clean = zarr.open_group(tmp_path / "clean.zarr", mode="r")
    assert skipped.attrs["complete"] is True
    assert [(e["sample"], e["path"]) for e in skipped.attrs["skipped"]] == [(3, str(source_copy / entry))]
    ids = np.asarray(skipped["sample_id"][:])
    assert list(ids) == list(range(8))
    valid = np.asarray(skipped["valid"][:])
    assert list(valid) == [i != 3 for i in range(8)]
    for name in ("label", "image"):
        np.testing.assert_array_equal(np.asarray(skipped[name][:])[valid], np.asarray(clean[name][:])[valid])


def test_a_mask_that_links_to_a_real_file_is_read_through_the_link(synthetic_source: Path, source_copy: Path,
                                                                   tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.png"
    shutil.copy(source_copy / HAIR, elsewhere)
    (source_copy / HAIR).unlink()
    (source_copy / HAIR).symlink_to(elsewhere)
    assert index_of(source_copy).samples[3].masks["hair"] == HAIR
    assert _build(source_copy, tmp_path / "linked.zarr").exit_code == 0
    assert _build(synthetic_source, tmp_path / "clean.zarr").exit_code == 0
    linked = zarr.open_group(tmp_path / "linked.zarr", mode="r")
    clean = zarr.open_group(tmp_path / "clean.zarr", mode="r")
    np.testing.assert_array_equal(np.asarray(linked["label"][:]), np.asarray(clean["label"][:]))
    assert (np.asarray(clean["label"][3]) > 0).any()


def test_a_dangling_annotation_file_is_an_error_not_an_absent_file(source_copy: Path) -> None:
    attributes = source_copy / "CelebAMask-HQ-attribute-anno.txt"
    _dangling(attributes)
    with pytest.raises(CelebaMaskError) as caught:
        index_of(source_copy)
    assert caught.value.path == str(attributes) and "dangling symbolic link" in caught.value.problem


def test_a_mask_one_folder_too_deep_is_ignored_with_one_warning(source_copy: Path, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    (source_copy / MASKS / "sub").mkdir()
    shutil.move(source_copy / HAIR, source_copy / MASKS / "sub")
    with caplog.at_level(logging.WARNING, logger="celebamask"):
        index = index_of(source_copy)
    assert "hair" not in index.samples[3].masks
    assert index.ignored_files == [f"{MASKS}/sub/00003_hair.png"]
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage() == (
        f"{source_copy}: ignored 1 file not named or placed as CelebA-HQ-img/<index>.jpg or "
        f"CelebAMask-HQ-mask-anno/<folder>/<index:05d>_<class>.png: {MASKS}/sub/00003_hair.png")

    # the CLI shows it without --verbose, once (a subprocess: pytest's own log capture would take it)
    built = subprocess.run([sys.executable, "-m", "celebamask", "build", str(source_copy), str(tmp_path / "deep.zarr"),
                            "--jobs", "1", "--limit", "4", "--quiet"], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    assert built.stderr.splitlines() == [caplog.records[0].getMessage()]


def test_many_ignored_files_are_one_line_naming_the_first_few(source_copy: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    extra = sorted(f"CelebA-HQ-img/notes/{k}.jpg" for k in range(10))
    (source_copy / "CelebA-HQ-img/notes").mkdir()
    for rel in extra:
        (source_copy / rel).write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="celebamask"):
        index = index_of(source_copy)
    assert index.ignored_files == extra
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert message.endswith(f": {', '.join(extra[:3])} and 7 more") and "ignored 10 files" in message


def test_a_clean_source_warns_of_nothing(synthetic_source: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="celebamask"):
        assert index_of(synthetic_source).ignored_files == []
    assert caplog.records == []


def _archive_members(root: Path) -> list[tuple[str, bytes]]:
    return [("CelebAMask-HQ/" + p.relative_to(root).as_posix(), p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()]


def test_a_symbolic_link_inside_a_zip_is_named(synthetic_source: Path, tmp_path: Path) -> None:
    archive = tmp_path / "CelebAMask-HQ.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, data in _archive_members(synthetic_source):
            if name.endswith(HAIR):
                link = zipfile.ZipInfo(name)
                link.external_attr = (stat.S_IFLNK | 0o777) << 16
                zipped.writestr(link, "../elsewhere.png")
            elif name.endswith(f"{MASKS}/00004_hair.png"):
                zipped.writestr(name.replace("/00004_", "/deeper/00004_"), data)
            else:
                zipped.writestr(name, data)
    with pytest.raises(CelebaMaskError) as caught:
        index_of(archive)
    assert caught.value.path == f"{archive}:CelebAMask-HQ/{HAIR}" and "symbolic link" in caught.value.problem
    index = index_of(archive, skip_bad=True)
    assert index.samples[3].problem is not None and index.samples[4].problem is None
    assert index.ignored_files == [f"{MASKS}/deeper/00004_hair.png"]


def test_links_inside_a_tar(synthetic_source: Path, tmp_path: Path) -> None:
    """A hard link has its target's bytes; a symbolic link is named."""
    archive = tmp_path / "CelebAMask-HQ.tar"
    with tarfile.open(archive, "w") as tarred:
        for name, data in _archive_members(synthetic_source):
            info = tarfile.TarInfo(name)
            if name.endswith(HAIR):
                info.type, info.linkname = tarfile.SYMTYPE, "../elsewhere.png"
                tarred.addfile(info)
            elif name.endswith(f"{MASKS}/00004_hair.png"):
                info.type, info.linkname = tarfile.LNKTYPE, f"CelebAMask-HQ/{MASKS}/00004_skin.png"
                tarred.addfile(info)
            else:
                info.size = len(data)
                tarred.addfile(info, io.BytesIO(data))
    with pytest.raises(CelebaMaskError) as caught:
        index_of(archive)
    assert caught.value.path == f"{archive}:CelebAMask-HQ/{HAIR}"
    assert caught.value.problem.startswith("is a symbolic link (to ../elsewhere.png) inside the tar")
    index = index_of(archive, skip_bad=True)
    assert index.samples[4].problem is None
    with index.ref.open() as files:
        assert files.read(index.samples[4].masks["hair"]) == (synthetic_source / MASKS / "00004_skin.png").read_bytes()
