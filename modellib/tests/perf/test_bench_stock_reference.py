"""make bench: the committed stock-matminer reference of the equivalence test
(modellib/tests/data/stock_matminer_reference.npz) equals stock matminer recomputed now
on the same structures. With KSPACING_WRITE_STOCK_REFERENCE=1 it rewrites the file
first (after a matminer/pymatgen/numpy upgrade)."""

from __future__ import annotations

import os

import numpy as np
from joblib import Parallel, delayed

from modellib.features import structure as sf
from modellib.tests.test_structure_features import load_reference, write_reference


def test_bench_stock_reference_is_stock_matminer(benchmark, task):
    if os.environ.get("KSPACING_WRITE_STOCK_REFERENCE") == "1":
        write_reference(task)
    ids, ref = load_reference(task)

    def stock():
        return np.array(Parallel(n_jobs=2)(delayed(sf.stock_featurize)(task.materials.loc[j, "atoms"]) for j in ids))

    live = benchmark.pedantic(stock, rounds=1, iterations=1)
    assert np.array_equal(np.isnan(live), np.isnan(ref))
    m = ~np.isnan(ref)
    assert np.allclose(live[m], ref[m], rtol=1e-12, atol=0.0)
