"""RF on composition learns something real on a small real slice, deterministically."""

import numpy as np

from harness import ModelContext, registry
from modellib.features import composition
from harness.paths import MODELS_DIR


def _slice(task, split, n):
    return task.X(split).iloc[:n], task.y(split)[:n]


def test_rf_beats_the_train_median_and_is_deterministic(task, cache_root):
    module = registry.read_folder(MODELS_DIR / "rf_composition").load_module()
    ctx = ModelContext(cache_dir=cache_root / "models" / "rf", seed=0, n_jobs=1, shared_cache_dir=cache_root)
    Xtr, ytr = _slice(task, "train", 3000)
    Xva, yva = _slice(task, "val", 400)
    a = module.make_model(ctx).set_params(n_estimators=60).fit(Xtr, ytr).predict(Xva)
    b = module.make_model(ctx).set_params(n_estimators=60).fit(Xtr, ytr).predict(Xva)
    assert np.array_equal(a, b)
    mae = np.abs(a - yva).mean()
    median_mae = np.abs(np.median(ytr) - yva).mean()
    assert mae < 0.95 * median_mae


def test_composition_features_are_cached_per_formula(cache_root, monkeypatch):
    formulas = ["TiO2", "GaN", "MgO", "TiO2"]
    first = composition.composition_features(formulas, cache_root)
    assert first.shape[0] == 4 and first.shape[1] > 140
    assert first.iloc[0].equals(first.iloc[3])
    monkeypatch.setattr(composition, "_featurizer", lambda presets: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = composition.composition_features(["MgO", "GaN"], cache_root)
    assert again.loc["MgO"].equals(first.loc["MgO"])
