"""kspace_gbm end to end on a small real slice: learns, is deterministic, snaps to
mesh-change lengths, pickles and predicts new structures."""

import importlib.util
import io

import joblib
import numpy as np

from harness import ModelContext
from modellib.features.physics import mesh_change_lengths, reciprocal_lengths
from harness.paths import MODELS_DIR
from harness.registry import read_folder

SMALL_METALLICITY = {"n_estimators": 60, "max_depth": 6, "learning_rate": 0.2, "lookups": False, "max_formulas": 5000}


def _module():
    return read_folder(MODELS_DIR / "kspace_gbm").load_module()


def test_kspace_gbm_small_slice(task, cache_root):
    module = _module()
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


def test_cost_weights_follow_the_kpoint_count(task):
    """(K/median K)^γ of real training cells (K: k-points of the cell as JARVIS ran it, at
    its converged length): median weight 1, heavier for more k-points, None at γ = 0."""
    from harness.kpoints import kpoint_count

    module = _module()
    X, y = task.X("train").iloc[:400], task.y("train")[:400]
    assert module.cost_weights(X["atoms"], y, 0.0) is None
    w = module.cost_weights(X["atoms"], y, 0.25)
    K = kpoint_count(np.array([reciprocal_lengths(a.lattice_mat) for a in X["atoms"]]), y)
    assert np.isclose(np.median(w), 1.0, atol=0.05) and np.all(w > 0)
    order = np.argsort(K, kind="stable")
    assert np.all(np.diff(w[order]) >= 0) and w[order[-1]] > 2 * w[order[0]]
    assert np.allclose(module.cost_weights(X["atoms"], y, 0.5), w ** 2)


def test_cost_weight_rule_and_committed_study(task, tmp_path):
    """The study's rule picks the fewest val k-points among admissible powers; the committed
    study's choice is the model's default, and its chosen row's val MAE is the committed
    run's (recomputed from the val continuous predictions)."""
    import json

    from harness import paths
    from harness.submission import read_csv_zip

    spec = importlib.util.spec_from_file_location("cost_weight", MODELS_DIR / "kspace_gbm" / "cost_weight.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    rows = [{"power": 0.0, "admissible": True, "val": {"kpoints": 1100}},
            {"power": 0.25, "admissible": True, "val": {"kpoints": 1050}},
            {"power": 0.5, "admissible": False, "val": {"kpoints": 900}}]
    assert study.pick(rows) == 1
    assert study.pick([{**r, "admissible": False} for r in rows]) == 0
    res = json.loads((paths.REPO_ROOT / "results" / "kspace_gbm" / "cost_weight.json").read_text())
    assert res["chosen"] == _module().COST_WEIGHT == _module().KSpaceGBM().cost_weight
    assert res["powers"] == list(study.POWERS) and res["benchmark"] == task.benchmark.name
    [row] = [r for r in res["rows"] if r["power"] == res["chosen"]]
    assert row["admissible"]
    rows_csv = read_csv_zip(paths.REPO_ROOT / "results" / "kspace_gbm" / task.benchmark.name / "val_continuous.csv.zip")
    pred = dict(zip(rows_csv.ids, rows_csv.predictions))
    yhat = np.array([pred[i] for i in task.ids("val")])
    assert abs(np.mean(np.abs(yhat - task.y("val"))) - row["mae"]) < 1e-6
    # The committed markdown is the one its json gives.
    (tmp_path / "cost_weight.json").write_text(json.dumps(res))
    assert study.main(["--markdown-only", "--out", str(tmp_path)]) == 0
    committed = paths.REPO_ROOT / "results" / "kspace_gbm" / "cost_weight.md"
    assert (tmp_path / "cost_weight.md").read_text() == committed.read_text(), "rerun --markdown-only"


def _learning_curve():
    spec = importlib.util.spec_from_file_location("learning_curve", MODELS_DIR / "kspace_gbm" / "learning_curve.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    return study


def test_learning_curve_subsets_are_nested_and_fixed():
    """Each draw's subsets grow by adding materials only; the same seed gives the same ids;
    the whole set appears once."""
    study = _learning_curve()
    fits = study.subsets(1000, (0.25, 0.5, 1.0), draws=2)
    assert [(f, d) for f, d, _ in fits] == [(0.25, 0), (0.5, 0), (1.0, 0), (0.25, 1), (0.5, 1)]
    assert [len(i) for _, _, i in fits] == [250, 500, 1000, 250, 500]
    assert set(fits[0][2]) < set(fits[1][2]) < set(fits[2][2]) and set(fits[3][2]) < set(fits[4][2])
    assert not np.array_equal(fits[0][2], fits[3][2])
    again = study.subsets(1000, (0.25, 0.5, 1.0), draws=2)
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(fits, again))
    # The trend: an exact line in log2(n) is recovered, and extended to the full train set.
    rows = [{"n_train": n, "k": 2000 - 100 * np.log2(n)} for n in (1000, 2000, 4000)]
    t = study.trend(rows, "k")
    assert abs(t["per_doubling"] + 100) < 1e-9
    assert abs(t["at_full_train"] - (2000 - 100 * np.log2(study.FULL_TRAIN))) < 1e-6


def test_committed_learning_curve_is_current(task, tmp_path):
    """The committed study: its whole-set fit is the committed kspace_gbm run (the sha256 of
    its val continuous predictions file, as in run.json), its MAE recomputes from them, its
    trend recomputes from its rows, and its markdown and plot are those its json gives."""
    import json

    from PIL import Image

    from harness import paths
    from harness.submission import read_csv_zip

    study = _learning_curve()
    out = paths.REPO_ROOT / "results" / "kspace_gbm"
    res = json.loads((out / "learning_curve.json").read_text())
    assert res["benchmark"] == task.benchmark.name and res["n"]["train"] == len(task.ids("train"))
    rows_csv = read_csv_zip(out / task.benchmark.name / "val_continuous.csv.zip")
    pred = dict(zip(rows_csv.ids, rows_csv.predictions))
    yhat = np.array([pred[i] for i in task.ids("val")])
    [whole] = [r for r in res["rows"] if r["fraction"] == 1.0]
    assert whole["n_train"] == len(task.ids("train"))
    run = json.loads((out / task.benchmark.name / "run.json").read_text())
    assert whole["val_continuous_sha256"] == run["sha256"]["val_continuous"] == study.val_file_sha256(task, yhat)
    assert abs(np.mean(np.abs(yhat - task.y("val"))) - whole["mae"]) < 1e-6  # the file rounds to 1e-8
    assert [r["n_train"] for r in res["rows"]] == [len(i) for _, _, i in study.subsets(len(task.ids("train")), res["fractions"], res["draws"])]
    for key, t in res["trend"].items():
        again = study.trend(res["rows"], key)
        assert all(abs(again[k] - t[k]) < 1e-9 for k in t)
    (tmp_path / "learning_curve.json").write_text(json.dumps(res))
    assert study.main(["--markdown-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "learning_curve.md").read_text() == (out / "learning_curve.md").read_text(), "rerun --markdown-only"
    assert Image.open(out / "learning_curve.png").text["Source"] == Image.open(tmp_path / "learning_curve.png").text["Source"]
