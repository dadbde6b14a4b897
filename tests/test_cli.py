from __future__ import annotations

from pathlib import Path

import zarr
from click.testing import CliRunner

from celebamask.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_build_then_info(synthetic_source: Path, tmp_path: Path) -> None:
    store = tmp_path / "cli.zarr"
    result = run("build", str(synthetic_source), str(store), "--jobs", "2", "--limit", "10",
                 "--shard-size", "4", "--config", "official", "--quiet")
    assert result.exit_code == 0, result.output
    assert "10 samples" in result.output and "samples/s" in result.output and "on disk" in result.output
    assert zarr.open_group(store, mode="r").attrs["complete"] is True

    info = run("info", str(store))
    assert info.exit_code == 0, info.output
    for expected in ("complete", "samples:   10", "sharding_indexed", "zstd", "crc32c", "official", "cloth"):
        assert expected in info.output

    again = run("build", str(synthetic_source), str(store), "--limit", "2")
    assert again.exit_code == 1
    assert again.output.strip().splitlines() == [f"error: {store}: already exists; pass --overwrite to replace it"]

    array = run("info", str(store / "label"))  # an array of the store, not the store
    lines = array.output.strip().splitlines()
    assert array.exit_code == 1 and len(lines) == 1
    assert lines[0].startswith(f"error: {store / 'label'}: not a celebamask store")


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run("build", str(missing), str(tmp_path / "s.zarr"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: {missing}: source does not exist"]
    debug = run("--debug", "build", str(missing), str(tmp_path / "s.zarr"))
    assert debug.exit_code == 1 and debug.exception is not None


def test_classes_prints_table_and_paint_order() -> None:
    result = run("classes", "--config", "face-parsing")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert any(line.split()[:2] == ["0", "background"] for line in lines)
    assert any(line.split()[:2] == ["18", "hat"] for line in lines)
    assert "skin < l_brow" in result.output


def test_synth_writes_a_source(tmp_path: Path) -> None:
    result = run("synth", str(tmp_path / "src"), "--count", "3", "--seed", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "src" / "CelebA-HQ-img").iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]


def test_help_explains_every_command() -> None:
    for command in ("build", "info", "classes", "synth"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_info_aligns_every_array_row_the_string_array_too(built_store: Path) -> None:
    result = run("info", str(built_store))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("arrays:") + 1
    pairs = []
    while start + 1 < len(lines) and lines[start].startswith("  ") and " shape (" in lines[start]:
        pairs.append((lines[start], lines[start + 1]))
        start += 2
    group = zarr.open_group(built_store, mode="r")
    assert [first.split()[0] for first, _ in pairs] == sorted(name for name, _ in group.arrays())
    # every row's columns start where every other row's do: name, type, then shape / dims
    assert len({first.index(" shape (") for first, _ in pairs}) == 1
    assert len({second.index("dims (") for _, second in pairs}) == 1
    assert {first.index(first.split()[1]) for first, _ in pairs} == {pairs[0][0].index(pairs[0][0].split()[1])}
    types = {first.split()[0]: first.split()[1] for first, _ in pairs}
    assert types["celeba_file"] == "string" and types["label"] == "uint8" and types["masks"] == "uint32"
    assert "fill ''" in dict(pairs)[next(f for f, _ in pairs if f.split()[0] == "celeba_file")]
