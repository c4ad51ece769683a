"""Helpers for tests that run the harness end to end on a small slice of the real data
(``harness run --scratch DIR --limit N``, or $KSPACING_OUTPUT_DIR pointing outside the
repository) with models, outputs and caches in scratch folders: the repository's
benchmarks/, submissions/, results/, leaderboard.csv and README.md are never written."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from harness import benchmark as bm
from harness import paths
from harness.freeze import KEY_TEMPLATE

REPO_ROOT = paths.REPO_ROOT
# Submission file names (<benchmark key>.csv.zip): a scratch run's throw-away definition,
# the committed offline subset, the official benchmark.
SUBMISSION = KEY_TEMPLATE.format(dataset=bm.SCRATCH.removesuffix("_kpoint_length_unit")) + ".csv.zip"
SUBSET_SUBMISSION = KEY_TEMPLATE.format(dataset="dft_3d_on_subset") + ".csv.zip"
OFFICIAL_SUBMISSION = KEY_TEMPLATE.format(dataset="dft_3d") + ".csv.zip"

BASE_META = {
    "kind": "model",
    "authors": [{"name": "test"}],
    "description": "a model folder made by a test",
    "features": ["none"],
    "software": ["numpy"],
    "hardware": "any CPU",
}

# Mean train target per atom count: cheap, deterministic, uses the structures.
PER_ATOM_COUNT = textwrap.dedent('''
    import numpy as np

    class PerAtomCount:
        def fit(self, X, y):
            n = X["atoms"].map(lambda a: a.num_atoms).to_numpy()
            self.table_ = {int(k): float(np.mean(y[n == k])) for k in np.unique(n)}
            self.default_ = float(np.mean(y))
            return self

        def predict(self, X):
            return np.array([self.table_.get(a.num_atoms, self.default_) for a in X["atoms"]])

    def make_model(ctx):
        return PerAtomCount()
''')


def write_model(models_dir: Path, name: str, code: str, **meta) -> Path:
    """models_dir/name/{model.yaml, model.py}; ``meta`` overrides BASE_META fields."""
    d = Path(models_dir) / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.yaml").write_text(yaml.safe_dump({"name": name, **BASE_META, **meta}, sort_keys=False))
    (d / "model.py").write_text(textwrap.dedent(code))
    return d


def copy_repo_model(models_dir: Path, name: str) -> Path:
    d = Path(models_dir) / name
    d.mkdir(parents=True, exist_ok=True)
    for f in ("model.yaml", "model.py"):
        (d / f).write_text((REPO_ROOT / "models" / name / f).read_text())
    return d


def scratch_cache(root: Path, cache_root: Path) -> Path:
    """A fresh cache dir whose parsed structures are the session's (no re-parse)."""
    cache = Path(root) / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    parsed = Path(cache_root) / "parsed"
    assert parsed.is_dir(), "the `task` fixture must run first (it fills the parse cache)"
    (cache / "parsed").symlink_to(parsed, target_is_directory=True)
    return cache


def scratch_env(root: Path, data_dir: Path, cache_root: Path, models_dir: Path) -> dict:
    """Environment for a `python -m harness` subprocess writing only under ``root``."""
    env = dict(os.environ)
    env.update({
        paths.OUTPUT_DIR_ENV: str(Path(root) / "out"),
        paths.CACHE_DIR_ENV: str(scratch_cache(root, cache_root)),
        paths.MODELS_DIR_ENV: str(models_dir),
        paths.DATA_DIR_ENV: str(data_dir),
        paths.REFERENCE_DIR_ENV: str(Path(root) / "no-references"),
        "PYTHONHASHSEED": "random",
    })
    return env


def run_cli(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def redirect_outputs(monkeypatch, out: Path) -> None:
    """$KSPACING_OUTPUT_DIR for this test (the harness reads it at call time). Also
    restores the variable afterwards when `run --scratch` sets it in this process."""
    monkeypatch.setenv(paths.OUTPUT_DIR_ENV, str(out))


def copy_benchmark(out: Path, name: str = bm.SUBSET) -> Path:
    """A copy of the committed definition ``name`` under ``out/benchmarks/``."""
    import shutil

    dest = Path(out) / "benchmarks" / name
    shutil.copytree(REPO_ROOT / "benchmarks" / name, dest)
    return dest


def tree_bytes(root: Path, skip=lambda rel: False) -> dict[str, bytes]:
    """{relative path: bytes} of every file under root (hidden files included)."""
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not skip(str(p.relative_to(root)))}

