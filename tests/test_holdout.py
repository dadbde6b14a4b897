"""A hold-out cut from a real download, as a client checks the build with one: a few samples with
sparse indices in several mask folders, masks re-saved by other tools, and the annotation files
cut down to those rows with everything else kept as in the full files (the 30000 row count,
CRLF line ends, column padding). Expectations come from the files themselves."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

from celebamask.build.orchestrator import build_store
from tests.reference import (
    CONVENTIONS,
    mask_path,
    psnr,
    reference_image,
    reference_label,
)

# synthetic sample -> its index in the hold-out (folders 0, 1 and 14)
HOLDOUT = {0: 29999, 1: 2000, 2: 1999, 3: 7}
MASK_MODES = ("P", "LA", "RGBA", "1", "I;16", "L", "RGB")
FILES = {  # annotation file -> header lines before the rows
    "CelebA-HQ-to-CelebA-mapping.txt": 1,
    "CelebAMask-HQ-attribute-anno.txt": 2,
    "CelebAMask-HQ-pose-anno.txt": 2,
}


def rows_by_index(path: Path, header: int) -> dict[int, list[str]]:
    lines = [line.split() for line in path.read_text().splitlines()[header:] if line.strip()]
    return {int(fields[0].removesuffix(".jpg")): fields[1:] for fields in lines}


@pytest.fixture(scope="module")
def holdout(synthetic_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("holdout") / "CelebAMask-HQ"
    (root / "CelebA-HQ-img").mkdir(parents=True)
    masks = 0
    for old, new in HOLDOUT.items():
        shutil.copy(synthetic_source / "CelebA-HQ-img" / f"{old}.jpg", root / "CelebA-HQ-img" / f"{new}.jpg")
        for path in sorted(mask_path(synthetic_source, old, "x").parent.glob(f"{old:05d}_*.png")):
            name = path.stem.split("_", 1)[1]
            target = mask_path(root, new, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as mask:
                mask.convert(MASK_MODES[masks % len(MASK_MODES)]).save(target)
            masks += 1
    for name, header in FILES.items():
        lines = (synthetic_source / name).read_text().splitlines()
        kept = [line + "  " for line in lines[:header]]
        if header == 2:
            kept[0] = "30000"
        old_rows = {int(line.split()[0].removesuffix(".jpg")): line for line in lines[header:]}
        for old, new in HOLDOUT.items():
            first, rest = old_rows[old].split(maxsplit=1)
            kept.append(f"{new}{'.jpg' if first.endswith('.jpg') else ''}  {rest}  ")
        (root / name).write_bytes(("\r\n".join(kept) + "\r\n").encode())
    return root


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_a_holdout_builds_to_reference_labels_images_and_annotations(
    holdout: Path, tmp_path: Path, convention: str
) -> None:
    store = tmp_path / "holdout.zarr"
    build_store(holdout.parent, store, config=convention, jobs=2, shard_size=3)
    group = zarr.open_group(store, mode="r")
    ids = sorted(HOLDOUT.values())
    assert group["sample_id"][:].tolist() == ids
    for row, index in enumerate(ids):
        np.testing.assert_array_equal(group["label"][row], reference_label(holdout, index, convention))
        assert psnr(group["image"][row], reference_image(holdout, index)) >= 40
        recount = np.bincount(group["label"][row].ravel(), minlength=group["class_area"].shape[1])
        assert group["class_area"][row].tolist() == recount.tolist()

    mapping, attributes, poses = (rows_by_index(holdout / name, header) for name, header in FILES.items())
    assert group["celeba_index"][:].tolist() == [int(mapping[i][0]) for i in ids]
    assert group["celeba_file"][:].tolist() == [mapping[i][1] for i in ids]
    assert group["attributes"][:].tolist() == [[1 if v == "1" else 0 for v in attributes[i]] for i in ids]
    np.testing.assert_allclose(group["pose"][:], [[float(v) for v in poses[i]] for i in ids], atol=1e-3)
