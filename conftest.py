"""Shared fixtures: the real offline data (../shared/data/jarvis or $KSPACING_DATA_DIR)
joined to the frozen offline-subset definition (benchmarks/dft_3d_on_subset_kpoint_length_unit/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import paths

# sha256 of the offline store described in ../shared/data/README.md, the store the subset
# definition is pinned to (its benchmark.yaml store.sha256).
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
def store(data_dir, cache_root):
    """(materials, provenance) of the local structure store."""
    from harness import data
    from harness.freeze import DATASET

    return data.load_materials(DATASET, data_dir, cache_root)


@pytest.fixture(scope="session")
def subset():
    """The frozen offline-subset definition of the repository."""
    from harness import benchmark as bm

    return bm.load(bm.SUBSET, paths.REPO_ROOT / "benchmarks")


@pytest.fixture(scope="session")
def task(store, subset):
    """The offline subset joined to the local store; skipped (never vacuous) when the
    store is not the one the definition is pinned to."""
    from harness.task import Task

    materials, prov = store
    problem = subset.store_problem(materials.index, prov["sha256"])
    if problem:
        pytest.skip(f"the local store cannot serve {subset.name}: {problem}")
    return Task(subset, materials, prov)


@pytest.fixture(scope="session")
def offline(store):
    """For tests asserting exact counts of the offline store: skip when the data differ."""
    if store[1]["sha256"] != OFFLINE_SHA256:
        pytest.skip(f"exact counts hold for the offline store (sha256 {OFFLINE_SHA256[:12]}…) only; "
                    f"this one is {store[1]['sha256'][:12]}…")
    return True
