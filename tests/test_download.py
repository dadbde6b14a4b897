"""celebamask download against a loopback Hub on 127.0.0.1 (never the network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from celebamask.build.orchestrator import build_store
from celebamask.cli import main
from celebamask.errors import CelebaMaskError
from celebamask.synth.generate import generate_zip
from tests.loopback_hub import LoopbackHub

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


def test_kaggle_without_credentials_says_where_they_are_looked_for(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("kagglehub")
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no_kaggle"))
    monkeypatch.setenv("KAGGLE_API_ENDPOINT", "http://127.0.0.1:9")  # never the network, whatever happens
    monkeypatch.setenv("HOME", str(tmp_path))
    from celebamask.sources.download import download

    with pytest.raises(CelebaMaskError, match="KAGGLE_USERNAME and KAGGLE_KEY.*KAGGLE_API_TOKEN.*kaggle.json"):
        download("kaggle", tmp_path / "dest")
