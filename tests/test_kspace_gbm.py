"""kspace_gbm end to end on a small real slice: learns, is deterministic, snaps to
mesh-change lengths, pickles and predicts new structures."""

import io

import joblib
import numpy as np

from harness import ModelContext
from modellib.features.physics import mesh_change_lengths, reciprocal_lengths
from harness.paths import MODELS_DIR
from harness.registry import read_folder

SMALL_METALLICITY = {"n_estimators": 60, "max_depth": 6, "learning_rate": 0.2, "lookups": False, "max_formulas": 5000}


def test_kspace_gbm_small_slice(task, cache_root):
    module = read_folder(MODELS_DIR / "kspace_gbm").load_module()
    ctx = ModelContext(cache_dir=cache_root / "models" / "kspace_gbm", seed=0, n_jobs=1, shared_cache_dir=cache_root)
    Xtr, ytr = task.X("train").iloc[:800], task.y("train")[:800]
    Xva, yva = task.X("val").iloc[:200], task.y("val")[:200]

    def fitted():
        return module.make_model(ctx).set_params(n_seeds=2, n_estimators=150, metallicity_params=SMALL_METALLICITY).fit(Xtr, ytr)

    est = fitted()
    pred = est.predict(Xva)
    assert np.array_equal(pred, fitted().predict(Xva))
    assert np.abs(pred - yva).mean() < 0.9 * np.abs(np.median(ytr) - yva).mean()
    for p, atoms in zip(pred, Xva["atoms"]):
        assert p in set(mesh_change_lengths(reciprocal_lengths(atoms.lattice_mat), lo=10, hi=200).tolist())
    buf = io.BytesIO()
    joblib.dump(est, buf)
    buf.seek(0)
    assert np.array_equal(joblib.load(buf).predict(Xva.iloc[:20]), pred[:20])
