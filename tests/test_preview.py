from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from PIL import Image

from celebamask import open_store
from celebamask.cli import main
from celebamask.read.preview import GAP, OTHER_COLOR, TEXT_HEIGHT, render_preview


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def panels(picture: Image.Image, size: int) -> list[np.ndarray]:
    """The image, label and overlay panels of the first sample line."""
    pixels = np.asarray(picture)
    top = 2 * TEXT_HEIGHT  # column titles, then the sample's caption
    return [pixels[top : top + size, GAP + k * (size + GAP) : GAP + k * (size + GAP) + size] for k in range(3)]


def class_colours(store_path: Path) -> dict[int, tuple[int, int, int]]:
    return {c["id"]: tuple(c["color"]) for c in zarr.open_group(store_path, mode="r").attrs["classes"]}


def test_panels_show_the_image_the_class_colours_and_an_overlay(built_store: Path) -> None:
    store = open_store(built_store)
    row = 5
    image, label = store.images[row], store.labels[row]
    size = label.shape[0]  # full size: no resampling, so every pixel can be checked
    shown_image, shown_label, shown_overlay = panels(render_preview(store, [row], panel=size), size)

    np.testing.assert_array_equal(shown_image, image)
    colours = class_colours(built_store)
    for class_id in np.unique(label):
        assert (shown_label[label == class_id] == colours[int(class_id)]).all(), class_id
    background = label == store.background
    np.testing.assert_array_equal(shown_overlay[background], image[background])
    hair = label == store.class_id("hair")
    blended = (image[hair] * 0.5 + np.array(colours[store.class_id("hair")]) * 0.5).round()
    np.testing.assert_array_equal(shown_overlay[hair], blended)


def test_classes_limit_what_is_coloured(built_store: Path) -> None:
    store = open_store(built_store)
    row = 2
    image, label = store.images[row], store.labels[row]
    size = label.shape[0]
    _, shown_label, shown_overlay = panels(render_preview(store, [row], classes=["hair"], panel=size), size)
    hair = label == store.class_id("hair")
    assert hair.any() and (~hair).any()
    assert (shown_label[hair] == class_colours(built_store)[store.class_id("hair")]).all()
    assert (shown_label[~hair] == OTHER_COLOR).all()
    np.testing.assert_array_equal(shown_overlay[~hair], image[~hair])


def test_preview_command_writes_a_png(built_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "two.png"
    result = run("preview", str(built_store), "3", "17", "--out", str(out), "--size", "96")
    assert result.exit_code == 0, result.output
    assert "samples 3, 17" in result.output
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width > 3 * 96 and picture.height > 2 * 96


def test_random_choice_follows_the_seed(built_store: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    a = run("preview", str(built_store), "--count", "3", "--seed", "4", "--size", "64", "--out", str(first))
    b = run("preview", str(built_store), "--count", "3", "--seed", "4", "--size", "64", "--out", str(second))
    assert a.exit_code == b.exit_code == 0, a.output
    assert a.output.replace(str(first), "") == b.output.replace(str(second), "")
    assert first.read_bytes() == second.read_bytes()
    assert len(a.output.split("samples ")[1].split(",")) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [(["999"], "no sample 999 in the store"), (["--classes", "hair,beard"], "unknown class 'beard'")],
)
def test_preview_errors_name_the_store(built_store: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = run("preview", str(built_store), *args, "--out", str(tmp_path / "x.png"))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {built_store}: {message}")
    assert not (tmp_path / "x.png").exists()
