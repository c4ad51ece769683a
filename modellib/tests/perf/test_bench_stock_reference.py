"""make bench: the committed stock-matminer reference of the equivalence test
(modellib/tests/data/stock_matminer_reference.npz) equals stock matminer recomputed now,
in the same pinned numeric environment, on the structures ``_pick`` selects (~2 min of
CPU on 2 workers; the time goes to the benchmark's stats).

Regenerate the file (after a matminer/pymatgen upgrade, or when ``_pick`` changes):

    KSPACING_WRITE_STOCK_REFERENCE=1 .venv/bin/python -m pytest -q \\
        modellib/tests/perf/test_bench_stock_reference.py --benchmark-enable --benchmark-only

or ``.venv/bin/python -m modellib.tests.perf.test_bench_stock_reference`` (the same). The
live rows are then written first and the checks below run on the new file."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from modellib.features import structure as sf
from modellib.tests import test_structure_features as tsf

TOL = 1e-12  # relative (absolute below 1, as tsf._compare); same environment, so in practice bit for bit


def test_bench_stock_reference_is_stock_matminer(benchmark, task):
    ids = tsf._pick(task)
    atoms = [task.materials.loc[j, "atoms"] for j in ids]
    t0 = time.perf_counter()
    rows, tag = benchmark.pedantic(tsf.in_pinned_env, args=(sf.stock_featurize, atoms), rounds=1, iterations=1)
    wall = time.perf_counter() - t0
    live = np.asarray(rows, dtype=np.float64)
    if os.environ.get(tsf.WRITE_ENV) == "1":
        print(f"\nwrote {tsf.write_reference(task, computed=(live, tag))}")
    ref = tsf.load_reference(task)
    assert ref["jids"] == ids, f"_pick selects other structures than the reference holds; {tsf.REGENERATE}"
    ref_tag = ref["versions"]["numeric_env"]
    worst = 0.0
    for jid, a, b in zip(ids, ref["stock"], live, strict=True):
        diff = tsf._compare(a, b)  # asserts the NaN pattern is the same
        assert diff <= TOL, f"{jid}: reference differs from stock matminer by {diff:.2e} (numeric env {ref_tag} vs {tag})"
        worst = max(worst, diff)
    n_nan = int(np.isnan(live).any(axis=1).sum())
    benchmark.extra_info.update(n_structures=len(ids), wall_s_2_workers=round(wall, 1), max_rel_diff=worst,
                                rows_with_nan=n_nan, numeric_env=tag, reference_versions=ref["versions"])
    print(f"\nstock reference: {len(ids)} structures, max diff {worst:.2e} vs live stock matminer "
          f"({n_nan} rows with NaN, {wall:.0f} s on 2 workers), numeric env {tag}, reference {ref['versions']}")


if __name__ == "__main__":  # python -m modellib.tests.perf.test_bench_stock_reference: rewrite the file
    os.environ[tsf.WRITE_ENV] = "1"
    raise SystemExit(pytest.main(["-q", "-s", __file__, "--benchmark-enable", "--benchmark-only"]))
