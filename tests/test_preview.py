from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from PIL import Image

from celebamask import open_store
from celebamask.build.orchestrator import build_store
from celebamask.cli import main
from celebamask.read.preview import GAP, OTHER_COLOR, TEXT_HEIGHT, render_preview
from tests.reference import DEFAULT_ORDER, mask_path


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


# --- painted=False: each class's own mask ---------------------------------------------------------


def toml_colours() -> dict[str, tuple[int, int, int]]:
    """Name → colour from the shipped default TOML, not from the store."""
    table = tomllib.loads((Path(__file__).resolve().parents[1] / "configs" / "celebamask_hq.toml").read_text())
    return {entry["name"]: tuple(entry["color"]) for entry in table["classes"]}


def own_masks(source: Path, sample_id: int) -> dict[str, np.ndarray]:
    """Each mask class's PNG decoded by Pillow (first channel non-zero), absent = empty."""
    out = {}
    for name in DEFAULT_ORDER:
        path = mask_path(source, sample_id, name)
        out[name] = np.array(Image.open(path).convert("RGB"))[:, :, 0] > 0 if path.exists() else np.zeros((512, 512), bool)
    return out


def a_row_with_glasses_under_other_masks(store, source: Path) -> tuple[int, dict[str, np.ndarray]]:
    for row, sample_id in enumerate(store.sample_ids[:]):
        masks = own_masks(source, int(sample_id))
        others = np.any([on for name, on in masks.items() if name != "eye_g"], axis=0)
        if (masks["eye_g"] & others).any():
            return row, masks
    raise AssertionError("no synthetic sample has glasses overlapping another mask")


def test_unpainted_panel_shows_every_own_mask_overlaps_in_mean_colour(built_store: Path, synthetic_source: Path) -> None:
    store = open_store(built_store)
    row, masks = a_row_with_glasses_under_other_masks(store, synthetic_source)
    image, label = store.images[row], store.labels[row]
    size = label.shape[0]
    colours = toml_colours()
    stacked = np.stack([masks[name] for name in DEFAULT_ORDER])  # (18, y, x)
    palette = np.array([colours[name] for name in DEFAULT_ORDER], dtype=np.float64)
    count = stacked.sum(axis=0)
    expected = np.empty((size, size, 3), dtype=np.uint8)
    for y, x in zip(*np.nonzero(count)):
        expected[y, x] = np.round(palette[stacked[:, y, x]].mean(axis=0))
    expected[count == 0] = colours["background"]

    _, shown, overlay = panels(render_preview(store, [row], panel=size, painted=False), size)
    np.testing.assert_array_equal(shown, expected)
    # where the glasses hide under hair (or anything), the painted panel shows another colour
    _, painted, _ = panels(render_preview(store, [row], panel=size), size)
    hidden = masks["eye_g"] & (count > 1)
    assert hidden.any() and (painted[hidden] != shown[hidden]).any(axis=-1).all()
    np.testing.assert_array_equal(overlay[count == 0], image[count == 0])  # no mask: the image untouched
    on = count > 0
    np.testing.assert_array_equal(overlay[on], (image[on] * 0.5 + expected[on] * 0.5).round())


def test_unpainted_with_classes_shows_the_whole_own_mask(built_store: Path, synthetic_source: Path) -> None:
    store = open_store(built_store)
    row, masks = a_row_with_glasses_under_other_masks(store, synthetic_source)
    image = store.images[row]
    size = image.shape[0]
    _, shown, overlay = panels(render_preview(store, [row], classes=["eye_g"], panel=size, painted=False), size)
    glasses = masks["eye_g"]
    assert (shown[glasses] == toml_colours()["eye_g"]).all()  # the whole pair, painted over or not
    assert (shown[~glasses] == OTHER_COLOR).all()
    np.testing.assert_array_equal(overlay[~glasses], image[~glasses])
    assert (store.labels[row][glasses] != store.class_id("eye_g")).any()  # the label lost part of them


def test_preview_unpainted_command(built_store: Path, synthetic_source: Path, tmp_path: Path) -> None:
    store = open_store(built_store)
    row, _ = a_row_with_glasses_under_other_masks(store, synthetic_source)
    sample_id = str(int(store.sample_ids[row]))
    plain, unpainted = tmp_path / "plain.png", tmp_path / "unpainted.png"
    for out, extra in ((plain, []), (unpainted, ["--unpainted"])):
        result = run("preview", str(built_store), sample_id, "--size", "64", "--out", str(out), *extra)
        assert result.exit_code == 0, result.output
    expected = np.asarray(render_preview(store, [row], panel=64, painted=False))
    np.testing.assert_array_equal(np.asarray(Image.open(unpainted).convert("RGB")), expected)
    assert not np.array_equal(np.asarray(Image.open(plain).convert("RGB")), expected)


def test_preview_unpainted_needs_masks(synthetic_source: Path, tmp_path: Path) -> None:
    store = tmp_path / "plain.zarr"
    build_store(synthetic_source, store, jobs=1, limit=2, shard_size=2, masks=False)
    result = run("preview", str(store), "0", "--unpainted", "--size", "32", "--out", str(tmp_path / "x.png"))
    assert result.exit_code == 1 and "--no-masks" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()
    assert run("preview", str(store), "0", "--size", "32", "--out", str(tmp_path / "y.png")).exit_code == 0


def test_preview_of_an_unfinished_store_says_which_samples_are_not_built(synthetic_source: Path,
                                                                         tmp_path: Path) -> None:
    store = tmp_path / "unfinished.zarr"
    build_store(synthetic_source, store, jobs=1, shard_size=4, limit=8)
    group = zarr.open_group(store, mode="r+")
    group.attrs["complete"] = False
    group["shard_done"][1] = False
    for chunk in (store / "label" / "c" / "1").rglob("*"):  # shard 1 (rows 4-7) as a killed build left it
        if chunk.is_file():
            chunk.unlink()
    ids = [int(i) for i in group["sample_id"][:]]
    result = CliRunner().invoke(main, ["preview", str(store), str(ids[1]), str(ids[5]), "--out", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warning == [f"warning: {store} is unfinished: samples {ids[5]} are not built yet and are drawn blank "
                       "(resume the build with --resume)"], result.output
    built = CliRunner().invoke(main, ["preview", str(store), str(ids[1]), "--out", str(tmp_path / "q.png")])
    assert built.exit_code == 0 and "warning" not in built.output, built.output
