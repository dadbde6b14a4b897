"""celebamask download against a loopback Hub on 127.0.0.1 (never the network)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from celebamask.build.orchestrator import build_store
from celebamask.cli import main
from celebamask.errors import CelebaMaskError
from celebamask.synth.generate import generate_zip
from celebamask.sources.download import check_download
from tests.loopback_hub import LoopbackHub
from tests.loopback_kaggle import LoopbackKaggle

pytest.importorskip("huggingface_hub")


@pytest.fixture(scope="module")
def official_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_zip(tmp_path_factory.mktemp("hub") / "CelebAMask-HQ.zip", 4, seed=5, jobs=1)


def test_huggingface_download_cut_off_half_way_resumes_checks_and_builds(
        official_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # small chunks, so the part received before the cut is written (and resumed from)
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    data = official_zip.read_bytes()
    with LoopbackHub("liusq/CelebAMask-HQ", "CelebAMask-HQ.zip", data, cut_first_get=True) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        dest, store = tmp_path / "dest", tmp_path / "store.zarr"
        result = CliRunner().invoke(main, ["download", "huggingface", str(dest), "--build", str(store)])
    assert result.exit_code == 0, result.output
    assert "4 images" in result.output and "masks" in result.output
    resumed = [r for r in hub.requests if r[0] == "GET" and r[2]]
    assert resumed, hub.requests
    offset = int(resumed[0][2].split("=")[1].split("-")[0])
    assert 0 < offset < len(data)  # continued from what had arrived, not from the start
    assert (dest / "CelebAMask-HQ.zip").read_bytes() == data
    expected = tmp_path / "expected.zarr"
    build_store(official_zip, expected, jobs=1)
    for name in ("image", "label", "attributes"):
        np.testing.assert_array_equal(zarr.open_group(store, mode="r")[name][:],
                                      zarr.open_group(expected, mode="r")[name][:])


@pytest.fixture
def kaggle_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No credentials from this machine, and kagglesdk's production endpoint pointed at a closed
    loopback port, so nothing reaches the network whatever the test does."""
    pytest.importorskip("kagglehub")
    from kagglesdk.kaggle_env import KaggleEnv, _env_to_endpoint

    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_API_ENVIRONMENT",
                 "KAGGLEHUB_CACHE", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no_kaggle"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setitem(_env_to_endpoint, KaggleEnv.PROD, "http://127.0.0.1:9")
    return monkeypatch


def _serve_kaggle(monkeypatch: pytest.MonkeyPatch, kaggle: LoopbackKaggle) -> None:
    from kagglesdk.kaggle_env import KaggleEnv, _env_to_endpoint

    monkeypatch.setitem(_env_to_endpoint, KaggleEnv.PROD, kaggle.url)
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    monkeypatch.setenv("KAGGLE_KEY", "k3y")


def _archive_gets(kaggle: LoopbackKaggle) -> list[str | None]:
    return [rng for method, path, rng in kaggle.requests if method == "GET" and path == kaggle.archive_path]


def _assert_store_equals(store: Path, official_zip: Path, tmp_path: Path) -> None:
    expected = tmp_path / "expected.zarr"
    build_store(official_zip, expected, jobs=1)
    for name in ("image", "label", "attributes"):
        np.testing.assert_array_equal(zarr.open_group(store, mode="r")[name][:],
                                      zarr.open_group(expected, mode="r")[name][:])


def test_kaggle_download_cut_off_says_so_in_one_line_then_resumes_checks_and_builds(
        official_zip: Path, tmp_path: Path, kaggle_env: pytest.MonkeyPatch) -> None:
    import kagglehub.clients

    kaggle_env.setattr(kagglehub.clients, "CHUNK_SIZE", 16 * 1024)  # so the part before the cut is written
    data = official_zip.read_bytes()
    assert len(data) > 4 * 16 * 1024
    dest, store = tmp_path / "dest", tmp_path / "store.zarr"
    with LoopbackKaggle("ipythonx", "celebamaskhq", data, cut_first_get=True) as kaggle:
        _serve_kaggle(kaggle_env, kaggle)
        cut = CliRunner().invoke(main, ["download", "kaggle", str(dest)])
        assert cut.exit_code == 1, cut.output
        lines = [line for line in cut.output.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "cut off" in lines[0] and "run the command again to resume" in lines[0], cut.output
        partial = [p for p in (dest / ".kagglehub").rglob("*") if p.is_file()]
        assert len(partial) == 1 and 0 < partial[0].stat().st_size < len(data)
        received = partial[0].stat().st_size
        with pytest.raises(CelebaMaskError):  # nothing in DEST passes for the dataset
            check_download("kaggle", dest)

        result = CliRunner().invoke(main, ["download", "kaggle", str(dest), "--build", str(store)])
    assert result.exit_code == 0, result.output
    assert "4 images" in result.output and "downloaded kaggle" in result.output
    gets = _archive_gets(kaggle)
    assert gets[0] is None and gets[-1] is not None, kaggle.requests
    assert int(gets[-1].split("=")[1].split("-")[0]) == received  # continued from what had arrived
    assert not (dest / ".kagglehub").exists()
    with zipfile.ZipFile(official_zip) as archive:  # DEST holds the archive's tree, file for file
        for name in archive.namelist():
            if not name.endswith("/"):
                assert (dest / name).read_bytes() == archive.read(name), name
    _assert_store_equals(store, official_zip, tmp_path)

    again = CliRunner().invoke(main, ["download", "kaggle", str(dest)])  # no server now: nothing fetched
    assert again.exit_code == 0 and "nothing fetched" in again.output and "4 images" in again.output, again.output


def test_kaggle_resume_with_wrong_bytes_is_refused_not_used(official_zip: Path, tmp_path: Path,
                                                            kaggle_env: pytest.MonkeyPatch) -> None:
    import kagglehub.clients

    kaggle_env.setattr(kagglehub.clients, "CHUNK_SIZE", 16 * 1024)
    dest = tmp_path / "dest"
    with LoopbackKaggle("ipythonx", "celebamaskhq", official_zip.read_bytes(), cut_first_get=True,
                        corrupt_resume=True) as kaggle:
        _serve_kaggle(kaggle_env, kaggle)
        assert CliRunner().invoke(main, ["download", "kaggle", str(dest)]).exit_code == 1
        result = CliRunner().invoke(main, ["download", "kaggle", str(dest)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "corrupted" in lines[0] and "again" in lines[0], result.output
    assert not _holds_any_image(dest)
    with pytest.raises(CelebaMaskError):
        check_download("kaggle", dest)


def _holds_any_image(folder: Path) -> bool:
    return any(p.suffix in (".jpg", ".zip") for p in folder.rglob("*"))


def test_kaggle_refused_credentials_are_one_line_naming_where_they_come_from(
        official_zip: Path, tmp_path: Path, kaggle_env: pytest.MonkeyPatch) -> None:
    with LoopbackKaggle("ipythonx", "celebamaskhq", official_zip.read_bytes(), key="other") as kaggle:
        _serve_kaggle(kaggle_env, kaggle)
        result = CliRunner().invoke(main, ["download", "kaggle", str(tmp_path / "dest")])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: kaggle:ipythonx/celebamaskhq: refused"), result.output
    assert "KAGGLE_USERNAME and KAGGLE_KEY" in lines[0] and "kaggle.json" in lines[0]


def test_kaggle_without_credentials_says_where_they_are_looked_for(tmp_path: Path,
                                                                   kaggle_env: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(main, ["download", "kaggle", str(tmp_path / "dest")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: kaggle: no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY")
    assert "KAGGLE_API_TOKEN" in lines[0] and str(tmp_path / "no_kaggle") in lines[0]
    from celebamask.sources.download import download

    with pytest.raises(CelebaMaskError, match="KAGGLE_USERNAME and KAGGLE_KEY.*KAGGLE_API_TOKEN.*kaggle.json"):
        download("kaggle", tmp_path / "dest")


def test_kaggle_malformed_kaggle_json_is_one_line(tmp_path: Path, kaggle_env: pytest.MonkeyPatch) -> None:
    (tmp_path / "no_kaggle").mkdir()
    (tmp_path / "no_kaggle" / "kaggle.json").write_text('{"username": "me"}')
    result = CliRunner().invoke(main, ["download", "kaggle", str(tmp_path / "dest")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "kaggle.json" in lines[0] and "'key'" in lines[0], result.output
