"""predict at any cell size: packing features from a neighbour list (memory linear in
atoms) with the exact values the models were trained on, no heavy import before it is
needed (cold start), a progress line for slow steps. Timings: tests/perf/test_bench_predict.py."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
from predict_helpers import supercell

from harness import api
from modellib.features import physics

HEAVY = ("numpy", "pandas", "scipy", "pymatgen", "jarvis", "sklearn", "torch", "matminer", "spglib", "lightgbm")


def test_neighbour_list_equals_the_27_image_matrix_on_real_structures(task):
    """The features kspace_gbm was trained on (N x N x 27 distances) and the linear-memory
    neighbour list agree to 1e-9 on every 40th real structure (432)."""
    n = 0
    for atoms in task.materials["atoms"].iloc[::40]:
        lat, frac = np.asarray(atoms.lattice_mat, dtype=float), np.asarray(atoms.frac_coords, dtype=float)
        r = np.array([physics._cov_radius(int(z)) for z in atoms.atomic_numbers])
        dist = physics._min_image_distances(lat, frac)
        nn, ratio = physics._neighbour_stats(lat, frac, r)
        np.testing.assert_allclose(nn, dist.min(axis=1), rtol=0, atol=1e-9)
        assert ratio == pytest.approx(float((dist / (r[:, None] + r[None, :])).min()), abs=1e-9)
        n += 1
    assert n > 400


def test_packing_features_memory_is_linear_in_atoms(task):
    a = next(x for x in task.materials["atoms"] if x.num_atoms == 10)
    peaks = {}
    for m in ((5, 5, 4), (10, 10, 4)):  # 1,000 and 4,000 atoms
        big = supercell(a, m)
        tracemalloc.start()
        f = physics.structure_physics(big)
        peaks[big.num_atoms] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert f["min_dist"] == pytest.approx(physics.structure_physics(a)["min_dist"], rel=1e-9)
    # quadratic (the old N x N x 27 matrix) would be 16x and > 1 GB at 4,000 atoms
    assert peaks[4000] < 6 * peaks[1000]
    assert peaks[4000] < 300 * 2**20


def test_cold_start_imports_nothing_heavy(tmp_path):
    code = ("import sys; import harness.cli, harness.api, harness.predict, harness.structure_io, harness.kpoint_outputs; "
            "harness.cli.build_parser(); print(' '.join(m for m in %r if m in sys.modules))" % (HEAVY,))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
    help_ = subprocess.run([sys.executable, "-m", "harness", "predict", "--help"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert help_.returncode == 0 and "--allow-uncalibrated" in help_.stdout and "--next-to-input" in help_.stdout


def test_a_slow_step_prints_a_progress_line(capsys, monkeypatch):
    monkeypatch.setattr(api, "NOTICE_AFTER_S", 0.05)
    progress = api.Progress(True)
    with progress.step("fast step"):
        pass
    with progress.step("featurizing 1 structure (10,000 atoms)"):
        time.sleep(0.3)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "kspacing: featurizing 1 structure (10,000 atoms) ..."
    assert err[1].startswith("kspacing: featurizing 1 structure (10,000 atoms): done in 0.")
    assert not any("fast step" in ln for ln in err)
    with api.Progress(False).step("quiet"):
        time.sleep(0.1)
    assert capsys.readouterr().err == ""
