"""The runner's predict-path check (harness.predict_path): a model whose answer depends on
the cell it is handed is caught (its predictions move when the same crystals come as the
canonical cells predict hands it), one that featurizes the canonical cell itself or reads
only the formula is not, and a model that fails on canonical cells is reported, not fatal."""

from __future__ import annotations

import numpy as np

from harness import predict_path


class CellLength:
    """A length from the first lattice vector: cell-dependent by construction, as a
    structure model fitted on the store's cells is."""

    def predict(self, X):
        return np.array([10.0 * np.linalg.norm(np.asarray(a.lattice_mat)[0]) for a in X["atoms"]])


class CanonicalCellLength(CellLength):
    def predict(self, X):
        from modellib.features.physics import canonical_cells

        return super().predict(X.assign(atoms=canonical_cells(list(X["atoms"]))))


class FormulaLength:
    def predict(self, X):
        return np.array([5.0 * len(f) for f in X["formula"]])


class Fails:
    def predict(self, X):
        raise RuntimeError("no such cell\nhere")


def test_cell_dependent_models_are_caught_and_canonical_ones_pass(task):
    X = task.X("val").iloc[:300]
    for est, moves in ((CellLength(), True), (CanonicalCellLength(), False), (FormulaLength(), False)):
        res = predict_path.check(est, X, est.predict(X), n=60)
        assert res["checked"] == 60
        assert (res["moved"] > 0) == moves, (type(est).__name__, res)
        assert (predict_path.warning("m", res) is not None) == moves
    # The store's cells are not all canonical: a real share moves, by a real amount.
    res = predict_path.check(CellLength(), X, CellLength().predict(X), n=300)
    assert 0.05 < res["moved"] / res["checked"] < 0.95 and res["max_shift"] > 1.0
    assert f"{res['moved']} of 300 val predictions move" in predict_path.warning("m", res)


def test_a_model_failing_on_canonical_cells_is_reported(task):
    X = task.X("val").iloc[:20]
    res = predict_path.check(Fails(), X, np.full(len(X), 30.0), n=5)
    assert res == {"checked": 5, "error": "RuntimeError: no such cell here"}
    assert "failed on them (RuntimeError: no such cell here)" in predict_path.warning("m", res)


def test_the_template_a_newcomer_copies_passes_the_check(task):
    from harness import paths, registry
    from harness.context import ModelContext

    folder = registry.ModelFolder(name="_template", path=paths.MODELS_DIR / "_template", meta={})
    est = folder.load_module().make_model(ModelContext(cache_dir=None, seed=0, n_jobs=1))
    ids = task.ids("train")[:300]
    est.fit(task.X("train").loc[ids], task.benchmark.y("train", ids))
    X = task.X("val").iloc[:400]
    assert predict_path.check(est, X, est.predict(X), n=100)["moved"] == 0
