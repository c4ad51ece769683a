"""Structural featurization speed: stock matminer vs our engine on the same real
structures, in one run (one process each, then ours on 2 workers through joblib).

The ratio and rates go to the benchmark's extra_info (``--benchmark-json``) and stdout;
no timing is asserted. Small on purpose (stock takes seconds per structure)."""

from __future__ import annotations

import time

import numpy as np

from modellib.features import structure as sf

N = 16  # structures for the stock-vs-ours comparison; stock takes ~3-6 s each here
N_PARALLEL = 400  # structures for ours on 2 workers (warm workers, empty cache)


def _sample(task, n=N, seed=7, max_atoms=40):
    mat = task.materials
    atoms = mat["atoms"]
    idx = np.random.default_rng(seed).permutation(len(mat))
    picked = [i for i in idx if atoms.iloc[i].num_atoms <= max_atoms][:n]
    return mat.iloc[picked]


def test_bench_structure_features_stock_vs_ours(benchmark, task, tmp_path):
    X = _sample(task)
    atoms = list(X["atoms"])

    t0 = time.perf_counter()
    stock = [sf.stock_featurize(a) for a in atoms]
    stock_s = time.perf_counter() - t0

    def ours():
        return [sf.featurize_structure(a)[0] for a in atoms]

    sf.featurize_structure(atoms[0])  # per-process setup (element tables) outside the timing
    t0 = time.perf_counter()
    mine = benchmark.pedantic(ours, rounds=1, iterations=1)
    ours_s = time.perf_counter() - t0

    # the full pipeline on 2 workers, empty cache, a random sample of any size; the
    # workers are started (and import matminer) before the clock starts
    sf.featurize_structures(X.iloc[:4], tmp_path / "warmup", n_jobs=2, batch_size=2, progress=False)
    Xp = _sample(task, N_PARALLEL, seed=11, max_atoms=10_000)
    t0 = time.perf_counter()
    sf.featurize_structures(Xp, tmp_path / "parallel", n_jobs=2, progress=False)
    par_s = time.perf_counter() - t0

    for a, b in zip(stock, mine, strict=True):  # same numbers, or the speed means nothing
        assert np.array_equal(np.isnan(a), np.isnan(b))
        m = ~np.isnan(a)
        assert np.allclose(a[m], b[m], rtol=1e-6, atol=1e-6)

    info = {
        "n_structures": len(atoms),
        "stock_s_per_structure": round(stock_s / len(atoms), 4),
        "ours_s_per_structure": round(ours_s / len(atoms), 4),
        "ratio_single_process": round(stock_s / ours_s, 1),
        "ours_2_workers_structures_per_s": round(len(Xp) / par_s, 1),
        "n_structures_2_workers": len(Xp),
    }
    benchmark.extra_info.update(info)
    print(f"\nstructure features on {len(atoms)} structures: stock {info['stock_s_per_structure']} s each, "
          f"ours {info['ours_s_per_structure']} s each ({info['ratio_single_process']}x); "
          f"ours on 2 workers: {info['ours_2_workers_structures_per_s']} structures/s ({len(Xp)} random structures)")
