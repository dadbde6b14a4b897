"""Shared fixtures: one small synthetic source per session, copied when a test needs to damage it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from celebamask.synth.generate import generate_source

SOURCE_COUNT = 24  # spans several shards at shard size 8 and two mask folders would need 2000+


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only synthetic CelebAMask-HQ root; copy it (``source_copy``) before changing it."""
    return generate_source(tmp_path_factory.mktemp("synthetic") / "CelebAMask-HQ", SOURCE_COUNT, seed=7, jobs=2)


@pytest.fixture
def source_copy(synthetic_source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "CelebAMask-HQ"
    shutil.copytree(synthetic_source, target)
    return target


@pytest.fixture(scope="session")
def built_store(synthetic_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic source built with the default config, shard size 8, two jobs."""
    from celebamask.build.orchestrator import build_store

    store = tmp_path_factory.mktemp("stores") / "default.zarr"
    build_store(synthetic_source, store, jobs=2, shard_size=8)
    return store
