"""Shared fixtures: the real offline data (../shared/data/jarvis or $KSPACING_DATA_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import paths

# sha256 of the offline store described in ../shared/data/README.md: exact counts are
# asserted only against it (online, the full release gives other, larger counts).
OFFLINE_SHA256 = "f60b159e2818c4eb333778714a59225b62d80ae5b560ffe20167047597f72db2"


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    """$KSPACING_CACHE_DIR when set (CI reuses parsed data), else a fresh temp dir."""
    env = os.environ.get(paths.CACHE_DIR_ENV)
    return Path(env) if env else tmp_path_factory.mktemp("kspacing-cache")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = paths.default_data_dir()
    if d is None or not d.is_dir():
        pytest.skip("no local data store (set KSPACING_DATA_DIR)")
    return d


@pytest.fixture(scope="session")
def task(data_dir, cache_root):
    from harness.task import Task

    return Task.load(data_dir, cache_root)


@pytest.fixture(scope="session")
def offline(task) -> bool:
    return task.provenance["sha256"] == OFFLINE_SHA256
