from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from celebamask.config import load_config
from celebamask.errors import CelebaMaskError
from tests.reference import CONVENTIONS


@pytest.mark.parametrize("preset", sorted(CONVENTIONS))
def test_presets_match_the_facts_file(preset: str) -> None:
    order, first_id, background = CONVENTIONS[preset]
    config = load_config(preset)
    assert list(config.paint_order) == order
    assert config.background == background
    assert config.class_id("background") == background
    for offset, name in enumerate(order):
        assert config.class_id(name) == first_id + offset
    assert config.size == 512
    assert len({c.color for c in config.classes}) == 19  # every class is told apart in previews


def test_config_by_path(tmp_path: Path) -> None:
    source = load_config("official")
    copy = tmp_path / "mine.toml"
    copy.write_text(source.source_text)
    assert load_config(copy).paint_ids == source.paint_ids


def write_variant(tmp_path: Path, old: str, new: str) -> Path:
    text = load_config("default").source_text
    assert old in text
    path = tmp_path / "variant.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("id = 0\n", "id = 1\n", "not unique"),
        ("id = 0\n", "id = 255\n", "outside"),
        ('    "hat",\n', "", "leaves out hat"),
        ('    "hat",\n', '    "hat",\n    "beard",\n', "beard"),
        ("background = 18", "background = 40", "background id 40"),
        ('name = "skin"', 'name = "face"', "'skin', which is not in"),
    ],
)
def test_invalid_configs_are_refused(tmp_path: Path, old: str, new: str, complaint: str) -> None:
    with pytest.raises(CelebaMaskError, match=complaint):
        load_config(write_variant(tmp_path, old, new))


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(CelebaMaskError, match="face-parsing"):
        load_config("no-such-preset")


def test_an_installed_wheel_finds_its_presets_and_attribute_map(tmp_path: Path) -> None:
    """`pip install .` (a container image, a cluster worker) gets a wheel, not the source tree: the
    presets and the attribute map must travel in it and be found there."""
    pytest.importorskip("setuptools", minversion="77", reason="builds the wheel with the environment's setuptools")
    repo = Path(__file__).resolve().parents[1]
    tree = tmp_path / "tree"  # a copy, so building leaves nothing in the checkout
    for name in ("pipeline", "configs"):
        shutil.copytree(repo / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, tree / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(tmp_path / "wheel"), str(tree)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("celebamask-*.whl")
    installed = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(installed)
    check = ("import celebamask.config as c, celebamask.read.regions as r; "
             "print(c.load_config('official').path); print(r.load_attribute_regions().path)")
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(installed)}, check=True)
    official, regions = result.stdout.split()
    assert Path(official) == installed / "celebamask" / "configs" / "official.toml"
    assert Path(regions) == installed / "celebamask" / "configs" / "attribute_regions.toml"
