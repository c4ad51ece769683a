"""Results independent of the CPU (numpy SIMD dispatch, OpenBLAS kernel) and of n_jobs.

Another machine is emulated on this one: numpy's run-time dispatch and OpenBLAS' kernel
are chosen by environment variables, which is how a CPU without AVX-512 differs from
one with it. Raw features differ between such settings (the hazard is real); the
rounded features the models see, and the features computed in the harness's pinned
numeric environment, do not; and predictions do not depend on n_jobs."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from harness import numeric_env, paths
from modellib.features.robust import canonical

REPO = paths.REPO_ROOT
# Two "machines": this CPU as it is, and an older one (AVX but no AVX2/FMA, Sandy Bridge's
# BLAS kernel), which differs from any current CPU: emulating "no AVX-512" instead was
# this machine itself on a CPU that has none (an AMD EPYC), and the test failed there.
NATIVE = {}
OTHER = {"NPY_DISABLE_CPU_FEATURES": "X86_V4 X86_V3 AVX512_ICL AVX512_SPR AVX512F AVX512CD AVX512_SKX AVX2 FMA3",
         "OPENBLAS_CORETYPE": "Sandybridge"}

SCRIPT = """
import pickle, sys
sys.path.insert(0, {repo!r})
from harness import benchmark as bm, data, paths
from harness.freeze import DATASET
from modellib.features.composition import composition_features
from modellib.features.physics import physics_features
from modellib.features.structure import featurize_structures
mat, prov = data.load_materials(DATASET, paths.default_data_dir(), paths.cache_dir())
ids = bm.load(bm.SUBSET, paths.benchmarks_dir()).ids["train"][:{n}]
X = mat.loc[ids]
pickle.dump({{"phys": physics_features(X["atoms"], None).to_numpy(float),
             "comp": composition_features(list(X["formula"]), None).to_numpy(float),
             "struct": featurize_structures(X, None, n_jobs=1).to_numpy(float)}}, open(sys.argv[1], "wb"))
"""


def _features(tmp_path, env_extra: dict, tag: str, n: int = 160) -> dict:
    out = tmp_path / f"{tag}.pkl"
    env = {k: v for k, v in os.environ.items() if k not in ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE")}
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(repo=str(REPO), n=n), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return pickle.loads(out.read_bytes())


def _n_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int((~((a == b) | (np.isnan(a) & np.isnan(b)))).sum())


@pytest.fixture(scope="module")
def native_and_other(tmp_path_factory, data_dir, cache_root):
    tmp = tmp_path_factory.mktemp("machines")
    return _features(tmp, NATIVE, "native"), _features(tmp, OTHER, "other")


def test_raw_features_differ_between_the_emulated_machines(native_and_other):
    a, b = native_and_other
    assert _n_diff(a["phys"], b["phys"]) + _n_diff(a["struct"], b["struct"]) > 0


def test_rounded_physics_and_composition_features_agree(native_and_other):
    a, b = native_and_other
    for k in ("phys", "comp"):
        assert _n_diff(canonical(a[k]), canonical(b[k])) == 0, k


def test_pinned_numeric_environment_gives_the_same_features_from_either_machine(tmp_path, data_dir, cache_root):
    pinned = numeric_env.canonical_env()
    a = _features(tmp_path, {**NATIVE, **pinned}, "pinned-native")
    b = _features(tmp_path, {**OTHER, **pinned}, "pinned-other")
    for k in ("phys", "comp", "struct"):
        assert _n_diff(a[k], b[k]) == 0, k  # NaN pattern (Voronoi outcome) included


def test_canonical_rounding_is_exact_and_idempotent():
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000) * 10.0 ** rng.integers(-8, 8, size=1000)
    c = canonical(x)
    assert np.array_equal(canonical(c), c)
    assert np.all(np.abs(c - x) <= np.abs(x) * 2.0 ** -30)
    noisy = x * (1 + rng.choice([-1, 1], size=1000) * 2.0 ** -52)
    assert np.mean(canonical(noisy) == c) > 0.99  # a last-bit change almost never moves the rounded value
    assert canonical(np.array([1.6e-16, -3e-13, np.nan]))[:2].tolist() == [0.0, 0.0]


MODEL = """
import numpy as np
from modellib.features.physics import physics_features
from modellib.features.composition import composition_features
from modellib.features.robust import canonical
from modellib.features.structure_model import MatminerXGBoost
import pandas as pd

class Both:
    # A LightGBM on physics + composition (kspace_gbm's inputs) and a small matminer XGBoost.
    def __init__(self, n_jobs):
        self.n_jobs = n_jobs
    def _F(self, X):
        return canonical(pd.concat([physics_features(X["atoms"], None),
                                    composition_features(list(X["formula"]), None).reset_index(drop=True)], axis=1)
                         .to_numpy(dtype=float))
    def fit(self, X, y):
        import lightgbm as lgb
        self.lgb = lgb.LGBMRegressor(n_estimators=60, num_leaves=15, subsample=0.8, subsample_freq=1,
                                     colsample_bytree=0.3, random_state=0, n_jobs=self.n_jobs, deterministic=True,
                                     force_row_wise=True, verbose=-1).fit(self._F(X), np.log(y))
        self.xgb = MatminerXGBoost(n_estimators=40, num_parallel_tree=2, n_jobs=self.n_jobs).fit(X, y)
        return self
    def predict(self, X):
        return 0.5 * (np.exp(self.lgb.predict(self._F(X))) + self.xgb.predict(X))

def make_model(ctx):
    return Both(ctx.n_jobs)
"""


def test_predictions_do_not_depend_on_n_jobs(tmp_path, data_dir, cache_root):
    import shutil

    models = tmp_path / "models"
    d = models / "boosters"
    shutil.copytree(REPO / "models" / "train_median", d)
    (d / "model.yaml").write_text((d / "model.yaml").read_text().replace("name: train_median", "name: boosters"))
    (d / "model.py").write_text(MODEL)
    files = {}
    for n_jobs in (1, 2):
        out = tmp_path / f"out{n_jobs}"
        env = {**os.environ, paths.MODELS_DIR_ENV: str(models), paths.CACHE_DIR_ENV: str(tmp_path / f"cache{n_jobs}"),
               "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-m", "harness", "run", "boosters", "--scratch", str(out), "--limit", "300",
                               "--n-jobs", str(n_jobs)], env=env, capture_output=True, text=True, cwd=REPO, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        files[n_jobs] = sorted((out / "submissions" / "boosters").glob("*.csv.zip"))[0].read_bytes()
    assert files[1] == files[2]
