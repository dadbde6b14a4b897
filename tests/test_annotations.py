"""Annotation arrays in the store, checked against the source files parsed here independently."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from celebamask import open_store
from celebamask.build.orchestrator import build_store
from celebamask.cli import main
from celebamask.errors import CelebaMaskError
from celebamask.sources.annotations import (
    load_annotations,
    parse_attributes,
    parse_mapping,
    parse_poses,
    split_of,
)
from celebamask.sources.index import index_source, locate_source
from tests.conftest import SOURCE_COUNT

MAPPING = "CelebA-HQ-to-CelebA-mapping.txt"
ATTRIBUTES = "CelebAMask-HQ-attribute-anno.txt"
POSES = "CelebAMask-HQ-pose-anno.txt"
# From the dataset facts file: train orig_idx < 162771, val < 182638, test the rest.
TRAIN_END, VAL_END = 162771, 182638
# The default convention's ids, from the facts file.
DEFAULT_IDS = {name: k for k, name in enumerate(
    ["skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r", "nose", "mouth",
     "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat", "background"])}


def read_mapping(root: Path) -> dict[int, tuple[int, str]]:
    rows = [line.split() for line in (root / MAPPING).read_text().splitlines()[1:] if line.strip()]
    return {int(idx): (int(orig), name) for idx, orig, name in rows}


def read_table(root: Path, name: str) -> tuple[list[str], dict[int, list[str]]]:
    lines = [line.split() for line in (root / name).read_text().splitlines() if line.strip()]
    return lines[1], {int(row[0].removesuffix(".jpg")): row[1:] for row in lines[2:]}


def split_name(orig: int) -> str:
    return "train" if orig < TRAIN_END else "val" if orig < VAL_END else "test"


def test_annotation_arrays_match_the_source_files(built_store: Path, synthetic_source: Path) -> None:
    group = zarr.open_group(built_store, mode="r")
    ids = group["sample_id"][:].tolist()
    mapping = read_mapping(synthetic_source)
    attribute_names, attribute_rows = read_table(synthetic_source, ATTRIBUTES)
    _, pose_rows = read_table(synthetic_source, POSES)

    assert group["celeba_index"].dtype == np.int32
    assert group["celeba_index"][:].tolist() == [mapping[i][0] for i in ids]
    assert group["celeba_file"][:].tolist() == [mapping[i][1] for i in ids]
    assert group["split"].dtype == np.uint8 and group["split"].attrs["names"] == ["train", "val", "test"]
    names = group["split"].attrs["names"]
    assert [names[k] for k in group["split"][:]] == [split_name(mapping[i][0]) for i in ids]

    attributes = group["attributes"]
    assert attributes.dtype == np.int8 and attributes.shape == (SOURCE_COUNT, 40)
    assert attributes.metadata.dimension_names == ("sample", "attribute")
    assert attributes.attrs["names"] == attribute_names
    expected = np.array([[1 if v == "1" else 0 for v in attribute_rows[i]] for i in ids], dtype=np.int8)
    assert np.array_equal(attributes[:], expected) and 0 < expected.sum() < expected.size

    pose = group["pose"]
    assert pose.dtype == np.float32 and pose.metadata.dimension_names == ("sample", "angle")
    assert pose.attrs["names"] == ["yaw", "pitch", "roll"]
    np.testing.assert_allclose(pose[:], [[float(v) for v in pose_rows[i]] for i in ids], atol=1e-3)

    provenance = group.attrs["provenance"]["annotation_files"]
    assert provenance == {name: {"present": True, "rows": SOURCE_COUNT} for name in (MAPPING, ATTRIBUTES, POSES)}


def test_class_area_is_a_recount_of_each_stored_label(built_store: Path) -> None:
    group = zarr.open_group(built_store, mode="r")
    labels, area, present = group["label"][:], group["class_area"], group["class_present"]
    width = len(DEFAULT_IDS)
    assert area.dtype == np.uint32 and present.dtype == np.bool_ and area.shape == (SOURCE_COUNT, width)
    assert area.metadata.dimension_names == present.metadata.dimension_names == ("sample", "class")
    assert area.attrs["names"] == present.attrs["names"] == sorted(DEFAULT_IDS, key=DEFAULT_IDS.get)
    recount = np.stack([np.bincount(label.ravel(), minlength=width) for label in labels])
    assert np.array_equal(area[:], recount)
    assert np.array_equal(present[:], recount > 0)
    assert (area[:].sum(axis=1) == 512 * 512).all()


def test_a_malformed_line_names_the_file_and_line_before_any_store_exists(source_copy: Path, tmp_path: Path) -> None:
    lines = (source_copy / POSES).read_text().splitlines()
    lines[4] = lines[4].rsplit(" ", 1)[0] + " abc"  # line 5: the third sample's roll
    (source_copy / POSES).write_text("\n".join(lines) + "\n")
    store = tmp_path / "bad.zarr"
    with pytest.raises(CelebaMaskError) as caught:
        build_store(source_copy, store, jobs=1)
    assert caught.value.path == f"{source_copy / POSES}:5" and "not numbers" in caught.value.problem
    assert not store.exists()


GOOD_ATTRIBUTES = b"2\nA B\n0.jpg  1 -1\n1.jpg -1  1\n"


@pytest.mark.parametrize(
    ("parse", "text", "line", "problem"),
    [
        (parse_attributes, b"2\nA B\n0.jpg 1 -1\n1.jpg 0 1\n", 4, "A is '0'"),
        (parse_attributes, b"2\nA B\n0.jpg 1 -1\n1.jpg 1\n", 4, "expected 2 values"),
        (parse_attributes, b"2\n0.jpg 1 -1\n1.jpg 1 1\n", 2, "expected a line of column names"),
        (parse_attributes, b"2\nA B\n0.jpg 1 -1\n0.jpg 1 1\n", 4, "second row for 0.jpg (first on line 3)"),
        (parse_attributes, b"2\nA B\r\n0.jpg 1 -1\r\nzero.png 1 1\r\n", 4, "expected an image name"),
        (parse_poses, b"1\nYaw Pitch Raw\n\n0.jpg 1.5 2 inf\n", 4, "not finite"),
        (parse_mapping, b"idx orig_idx orig_file\n0 5 000006.jpg\n1 7 000007.jpg\n", 3, "1-based file"),
        (parse_mapping, b"idx orig_idx orig_file\n0 202599 202600.jpg\n", 2, "not a CelebA index"),
        (parse_mapping, b"idx orig_idx orig_file\n0 5\n", 2, "expected 3 columns"),
    ],
)
def test_malformed_lines_are_reported_with_their_number(parse, text: bytes, line: int, problem: str) -> None:
    with pytest.raises(CelebaMaskError) as caught:
        parse(text, "ann.txt")
    assert caught.value.path == f"ann.txt:{line}"
    assert problem in caught.value.problem
    # skipping bad lines (--on-error skip): the same error is kept, with the sample the line names;
    # a file whose header does not parse still raises (load_annotations then leaves it out)
    bad: list = []
    if "column names" in problem:
        with pytest.raises(CelebaMaskError, match="column names"):
            parse(text, "ann.txt", bad)
        return
    parse(text, "ann.txt", bad)
    [(sample, error)] = bad
    assert error.path == f"ann.txt:{line}" and problem in error.problem
    fields = text.decode().splitlines()[line - 1].split()
    assert sample == (None if line == 1 or not fields[0].split(".")[0].isdigit() else int(fields[0].split(".")[0]))


def test_skipping_bad_lines_fills_their_rows_and_names_their_samples(source_copy: Path) -> None:
    lines = (source_copy / ATTRIBUTES).read_text().splitlines()
    assert lines[2 + 3].startswith("3.jpg ") and lines[2 + 5].startswith("5.jpg ")
    lines[2 + 3] = " ".join([lines[2 + 3].split()[0], "yes", *lines[2 + 3].split()[2:]])
    lines[2 + 5] = "five.jpg" + lines[2 + 5][len("5.jpg"):]
    (source_copy / ATTRIBUTES).write_text("\n".join(lines) + "\n")
    mapping = (source_copy / MAPPING).read_text().splitlines()
    assert mapping[1 + 7].split()[0] == "7"
    mapping[1 + 7] = "7 seven " + mapping[1 + 7].split()[2]
    (source_copy / MAPPING).write_text("\n".join(mapping) + "\n")
    ref = locate_source(source_copy)
    index = index_source(ref)
    loaded = load_annotations(ref, index.annotations, [s.index for s in index.samples], skip_bad=True)
    where, mapping_file = str(source_copy / ATTRIBUTES), str(source_copy / MAPPING)
    found = {(sample, error.path) for sample, error in loaded.problems}
    # 5: its line named no sample, so it has no row; the line itself is kept without a sample
    assert found == {(3, f"{where}:6"), (None, f"{where}:8"), (5, where), (7, f"{mapping_file}:9")}
    assert loaded.attributes is not None
    assert (loaded.attributes[[3, 5]] == -1).all() and set(np.unique(np.delete(loaded.attributes, [3, 5], 0))) == {0, 1}
    assert loaded.celeba_index is not None and loaded.split is not None and loaded.celeba_file is not None
    assert loaded.celeba_index[7] == -1 and loaded.split[7] == 255 and loaded.celeba_file[7] == ""
    others = np.arange(SOURCE_COUNT) != 7
    assert (loaded.split[others] == split_of(loaded.celeba_index[others])).all() and (loaded.celeba_index[others] >= 0).all()


def test_rows_are_matched_by_image_index_not_position() -> None:
    names, rows = parse_attributes(b"\xef\xbb\xbf2\nA B\n1.jpg -1  1\n0.jpg\t1 -1\n", "ann.txt")
    assert names == ("A", "B")
    assert rows[0].tolist() == [1, 0] and rows[1].tolist() == [0, 1]


def test_a_subset_copy_with_the_full_files_row_count_or_none_still_parses(caplog: pytest.LogCaptureFixture) -> None:
    """A hold-out or sample cut from the real files keeps their count line (30000), or drops it:
    rows name their images, so only a missing row is an error."""
    body = b"A B  \r\n7.jpg  1 -1 \r\n29999.jpg -1  1\r\n"
    with caplog.at_level("WARNING", logger="celebamask.sources.annotations"):
        names, rows = parse_attributes(b"30000\r\n" + body, "attr.txt")
    assert "attr.txt:1: says 30000 rows but the file has 2" in caplog.text
    assert names == ("A", "B") and rows[7].tolist() == [1, 0] and rows[29999].tolist() == [0, 1]
    assert parse_attributes(body, "attr.txt")[1].keys() == rows.keys()
    poses = parse_poses(b"30000\nYaw Pitch Raw\n12.jpg 6.08 -1.23 0.41\n", "pose.txt")
    assert poses == {12: (6.08, -1.23, 0.41)}


def test_a_sample_missing_from_a_present_file_is_an_error(source_copy: Path) -> None:
    lines = (source_copy / ATTRIBUTES).read_text().splitlines()
    kept = [str(SOURCE_COUNT - 1), lines[1]] + [line for line in lines[2:] if not line.startswith("3.jpg ")]
    (source_copy / ATTRIBUTES).write_text("\n".join(kept) + "\n")
    ref = locate_source(source_copy)
    index = index_source(ref)
    with pytest.raises(CelebaMaskError) as caught:
        load_annotations(ref, index.annotations, [s.index for s in index.samples])
    assert caught.value.path == str(source_copy / ATTRIBUTES)
    assert "no row for 1 of the 24 samples" in caught.value.problem and "sample 3" in caught.value.problem


def test_a_zip_source_gives_the_same_annotations(synthetic_source: Path, tmp_path: Path) -> None:
    archive = tmp_path / "CelebAMask-HQ.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for path in sorted(synthetic_source.rglob("*")):
            out.write(path, Path("CelebAMask-HQ") / path.relative_to(synthetic_source))
    loaded = []
    for source in (synthetic_source, archive):
        ref = locate_source(source)
        index = index_source(ref)
        loaded.append(load_annotations(ref, index.annotations, [s.index for s in index.samples]))
    from_dir, from_zip = loaded
    for name in ("celeba_index", "celeba_file", "split", "attributes", "pose"):
        assert np.array_equal(getattr(from_dir, name), getattr(from_zip, name)), name
    assert from_zip.attributes is not None and from_zip.file_rows == from_dir.file_rows


def test_absent_files_leave_their_arrays_out(source_copy: Path, tmp_path: Path) -> None:
    (source_copy / ATTRIBUTES).unlink()
    (source_copy / POSES).unlink()
    store = tmp_path / "partial.zarr"
    build_store(source_copy, store, jobs=1, limit=3, shard_size=2)
    group = zarr.open_group(store, mode="r")
    assert "attributes" not in group and "pose" not in group
    assert group["celeba_index"].shape == (3,) and group["class_area"].shape == (3, len(DEFAULT_IDS))
    files = group.attrs["provenance"]["annotation_files"]
    assert files[ATTRIBUTES] == {"present": False, "rows": None}
    assert files[MAPPING] == {"present": True, "rows": SOURCE_COUNT}

    info = CliRunner().invoke(main, ["info", str(store)])
    assert info.exit_code == 0, info.output
    assert any(ATTRIBUTES in line and "ABSENT" in line for line in info.output.splitlines())
    assert any(MAPPING in line and f"{SOURCE_COUNT} rows" in line for line in info.output.splitlines())

    opened = open_store(store)
    with pytest.raises(CelebaMaskError, match=f"no 'attributes' array: the source had no {ATTRIBUTES}"):
        opened.attribute("Eyeglasses")
    assert len(opened.split("train")) + len(opened.split("val")) + len(opened.split("test")) == 3


def test_celeba_file_reads_as_text_with_xarray(built_store: Path, synthetic_source: Path) -> None:
    xr = pytest.importorskip("xarray")
    dataset = xr.open_zarr(built_store, consolidated=False)
    mapping = read_mapping(synthetic_source)
    assert [str(v) for v in dataset["celeba_file"].values] == [mapping[i][1] for i in range(SOURCE_COUNT)]
    assert dataset["attributes"].dims == ("sample", "attribute")
    assert dataset["class_area"].dims == ("sample", "class")


def test_class_columns_follow_label_values_after_resize_and_id_gaps(synthetic_source: Path, tmp_path: Path) -> None:
    """Background moved to id 20 and maps resized to 64²: columns 18 and 19 are unused, and the
    counts are of the stored (resized) label."""
    text = (Path(__file__).parents[1] / "configs" / "celebamask_hq.toml").read_text()
    config = tmp_path / "gappy.toml"
    config.write_text(text.replace("background = 18", "background = 20").replace("size = 512", "size = 64")
                      .replace('id = 18\nname = "background"', 'id = 20\nname = "background"'))
    store = build_store(synthetic_source, tmp_path / "gappy.zarr", config=config, jobs=1, limit=3).store
    group = zarr.open_group(store, mode="r")
    names = group["class_area"].attrs["names"]
    assert len(names) == 21 and names[18:] == ["unused_18", "unused_19", "background"]
    recount = np.stack([np.bincount(label.ravel(), minlength=21) for label in group["label"][:]])
    assert np.array_equal(group["class_area"][:], recount) and recount.sum(axis=1).tolist() == [64 * 64] * 3
    assert recount[:, 20].all() and not recount[:, 18:20].any()


def test_verify_checks_class_counts_against_the_labels(built_store: Path, tmp_path: Path) -> None:
    import shutil

    from celebamask.build.verify import verify_store

    copy = tmp_path / "copy.zarr"
    shutil.copytree(built_store, copy)
    assert verify_store(copy) == []
    area = zarr.open_group(copy, mode="r+")["class_area"]
    area[2, DEFAULT_IDS["hair"]] += 1
    assert verify_store(copy) == [f"{copy}/class_area: row 2 is not a count of its label map"]
