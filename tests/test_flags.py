"""Known flaws as data: configs/known_issues.toml → the store's flags → select / torch leave them out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from celebamask import open_store
from celebamask.build.orchestrator import build_store
from celebamask.cli import main
from celebamask.sources.known_issues import FLAG_NAMES, flags_for, load_known_issues
from celebamask.synth.generate import generate_source
from tests.optional import optional

# The issue's list, written out here independently of the TOML file.
DUPLICATES = [234, 235, 3329, 3330, 5162, 5163, 6770, 6771, 7384, 7385, 7561, 7562, 12444, 12445,
              12885, 12886, 13825, 13826, 15506, 15507, 19199, 19200, 20134, 20135, 24646, 24647]
OTHERS = {2110: "misaligned", 404: "missing_mask", 573: "wrong_mask", 9852: "wrong_mask"}


def test_the_list_holds_every_reported_sample_with_its_flag() -> None:
    flagged = {s: i.flag for i in load_known_issues() for s in i.samples}
    assert flagged == {**dict.fromkeys(DUPLICATES, "duplicate"), **OTHERS}
    assert all(i.source.startswith("https://github.com/switchablenorms/CelebAMask-HQ/issues") for i in load_known_issues())


def test_flags_bitfield_per_row() -> None:
    flags = flags_for([404, 0, 235, 2110], load_known_issues())
    assert flags.tolist() == [1 << FLAG_NAMES.index("missing_mask"), 0, 1, 1 << FLAG_NAMES.index("misaligned")]


@pytest.fixture(scope="module")
def flagged_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 406 samples would be slow; a source renamed so that samples 234, 235 and 404 exist
    root = generate_source(tmp_path_factory.mktemp("flags") / "CelebAMask-HQ", 3, seed=1, jobs=1)
    for old, new in ((0, 234), (1, 235), (2, 404)):
        (root / "CelebA-HQ-img" / f"{old}.jpg").rename(root / "CelebA-HQ-img" / f"{new}.jpg")
        for mask in (root / "CelebAMask-HQ-mask-anno" / "0").glob(f"{old:05d}_*.png"):
            mask.rename(mask.with_name(mask.name.replace(f"{old:05d}_", f"{new:05d}_")))
    for name in ("CelebA-HQ-to-CelebA-mapping.txt", "CelebAMask-HQ-attribute-anno.txt", "CelebAMask-HQ-pose-anno.txt"):
        (root / name).unlink()
    (root / "CelebA-HQ-img" / "10.jpg").write_bytes((root / "CelebA-HQ-img" / "234.jpg").read_bytes())
    for mask in (root / "CelebAMask-HQ-mask-anno" / "0").glob("00234_*.png"):
        mask.with_name(mask.name.replace("00234_", "00010_")).write_bytes(mask.read_bytes())
    store = root.parent / "flags.zarr"
    build_store(root, store, jobs=1, shard_size=2)
    return store


def test_store_records_flags_and_select_and_torch_exclude_them(flagged_store: Path) -> None:
    opened = open_store(flagged_store)
    assert np.asarray(opened.group["sample_id"][:]).tolist() == [10, 234, 235, 404]
    assert np.asarray(opened.group["flags"][:]).tolist() == [0, 1, 1, 4]
    assert opened.group["flags"].attrs["names"] == list(FLAG_NAMES)
    assert opened.provenance["known_issues"]["flagged_rows"] == 3
    assert opened.select().tolist() == [0, 1, 2, 3]
    assert opened.select(exclude_flagged=True).tolist() == [0]
    assert opened.class_statistics()["flagged"]["duplicate"] == 2


def test_the_torch_dataset_leaves_flagged_rows_out(flagged_store: Path) -> None:
    optional("torch", "celebamask.read.torch")
    from celebamask.read.torch import CelebAMaskDataset

    dataset = CelebAMaskDataset(flagged_store, exclude_flagged=True)
    assert [int(dataset[k]["sample_id"]) for k in range(len(dataset))] == [10]


def test_info_and_stats_report_the_counts(flagged_store: Path) -> None:
    for command in ("info", "stats"):
        result = CliRunner().invoke(main, [command, str(flagged_store)])
        assert result.exit_code == 0, result.output
        assert "flagged: 3 known flawed samples (duplicate 2, misaligned 0, missing_mask 1" in result.output
