"""Shared by the predict / API tests: a real rf_composition fitted on a small real slice,
saved and loaded back like an artifact, with a real split-conformal calibration on real
val materials; handed to predict through ``harness.fitted.load_fitted``'s interface
(name, estimator, calibrated, n_cal, offset(alpha), problem), so these tests do not
depend on how run records are stored."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from jarvis.core.atoms import Atoms

from harness import ModelContext, conformal, paths, registry

N_TRAIN, N_VAL = 400, 60
_MEMO: dict = {}


def StubFitted(name, estimator, y_val=None, p_val=None, problem=None):
    """A Fitted without a run record (what predict gets from harness.fitted.load_fitted)."""
    from harness.fitted import Fitted

    return Fitted(name, estimator, y_val=y_val, p_val=p_val, problem=problem)


def trained(task, root: Path) -> dict:
    """Fitted once per session: {"artifact", "train_cache", "fitted", "offset", ...}."""
    if "rf" in _MEMO:
        return _MEMO["rf"]
    train_cache = Path(root) / "train-cache"
    train_cache.mkdir(parents=True)
    module = registry.read_folder(paths.MODELS_DIR / "rf_composition").load_module()
    rf = module.make_model(ModelContext(cache_dir=train_cache / "models" / "rf", n_jobs=1, shared_cache_dir=train_cache))
    ids = task.ids("train")[:N_TRAIN]
    rf.set_params(n_estimators=20).fit(task.X("train").loc[ids], task.y("train")[:N_TRAIN])
    artifact = Path(root) / "model.joblib"
    joblib.dump(rf, artifact)
    loaded = joblib.load(artifact)
    val_ids = task.ids("val")[:N_VAL]
    y_val = np.asarray(task.y("val")[:N_VAL], dtype=float)
    p_val = np.asarray(loaded.predict(task.X("val").loc[val_ids]), dtype=float)
    _MEMO["rf"] = {"artifact": artifact, "train_cache": train_cache, "estimator": loaded, "y_val": y_val,
                   "p_val": p_val, "offset": conformal.conformal_offset(y_val, p_val),
                   "fitted": StubFitted("rf_composition", loaded, y_val, p_val)}
    return _MEMO["rf"]


def use_model(monkeypatch, fitted) -> list:
    """Make ``harness.fitted.load_fitted`` (and default_model) hand out ``fitted``;
    returns the list of names requested."""
    from harness import fitted as fitted_mod

    asked = []

    def load_fitted(name, cache_dir=None, models_dir=None, results_dir=None, **kw):
        asked.append(name)
        return fitted

    monkeypatch.setattr(fitted_mod, "load_fitted", load_fitted)
    monkeypatch.setattr(fitted_mod, "default_model", lambda *a, **k: fitted.name)
    return asked


def supercell(atoms, m) -> Atoms:
    """The m[0] x m[1] x m[2] supercell of a jarvis Atoms (atoms in cell-by-cell order)."""
    lat = np.asarray(atoms.lattice_mat, dtype=float)
    f = np.asarray(atoms.frac_coords, dtype=float)
    shifts = np.array([[i, j, k] for i in range(m[0]) for j in range(m[1]) for k in range(m[2])], dtype=float)
    frac = ((f[None, :, :] + shifts[:, None, :]) / np.asarray(m, dtype=float)).reshape(-1, 3)
    return Atoms(lattice_mat=lat * np.asarray(m, dtype=float)[:, None], coords=frac,
                 elements=list(atoms.elements) * len(shifts), cartesian=False)


# Fixtures shared by test_api.py and test_predict.py (imported there by name).
import pytest  # noqa: E402


@pytest.fixture
def model(task, tmp_path_factory, monkeypatch):
    """A real rf_composition fitted on a slice, used as the default model."""
    tr = trained(task, tmp_path_factory.mktemp("predict-model"))
    use_model(monkeypatch, tr["fitted"])
    return tr


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """Features of predicted structures go to a scratch $KSPACING_CACHE_DIR, never ~/.cache."""
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))
