"""``make bench``: predict at scale, today's code against the new one in the same run.

"Today's" is the code before the predict rework (commit OLD_REV, loaded from git into
temporary modules): the packing features' N x N x 27 distance matrix, pymatgen's O(n²)
CIF parser, the old cold start. Cells are supercells of a real 10-atom structure of the
store. Ratios, rates and peak memory go to extra_info (``--benchmark-json``) and stdout;
no timing is asserted."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
import tracemalloc
import types

import numpy as np
import pytest

from tests import predict_helpers as helpers
from tests.predict_helpers import supercell
from harness import paths
from harness import structure_io as sio
from modellib.features import physics
from modellib.features.composition import composition_features

OLD_REV = "6512578"  # the last commit before the predict rework (issue 13)
COMPARE = (6, 6, 6)  # 2,160 atoms: the old packing features need ~6 s and ~0.9 GB here (~2 min, ~8 GB at 10,000)
BIG = (10, 10, 10)  # 10,000 atoms


def _git_show(path: str) -> str:
    out = subprocess.run(["git", "show", f"{OLD_REV}:{path}"], cwd=paths.REPO_ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"git history without {OLD_REV} (shallow clone?): {out.stderr.strip()[:100]}")
    return out.stdout


def _old_module(path: str, name: str):
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses look their module up
    # its helpers (feature cache, structure key) have moved to the model library since
    source = _git_show(path).replace("harness.features.", "modellib.features.")
    exec(compile(source, f"{OLD_REV}:{path}", "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def base(task):
    """A real 10-atom structure of the store (10 x 10 x 10 of it: 10,000 atoms)."""
    jid = next(i for i in task.ids("test") if task.materials.at[i, "atoms"].num_atoms == 10)
    return jid, task.materials.at[jid, "atoms"]


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _report(benchmark, info):
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k} {v}" for k, v in info.items()))


def test_bench_packing_features_old_vs_new(benchmark, base):
    old = _old_module("harness/features/physics.py", "physics_old")
    atoms = supercell(base[1], COMPARE)
    t0 = time.perf_counter()
    f_old = old.structure_physics(atoms)
    old_s = time.perf_counter() - t0
    old_peak = _peak(lambda: old.structure_physics(atoms))
    t0 = time.perf_counter()
    f_new = benchmark.pedantic(physics.structure_physics, args=(atoms,), rounds=3, iterations=1)
    new_s = (time.perf_counter() - t0) / 3
    new_peak = _peak(lambda: physics.structure_physics(atoms))
    for k in f_old:  # the same numbers, or the speed means nothing
        assert f_new[k] == pytest.approx(f_old[k], abs=1e-9, nan_ok=True), k
    big = supercell(base[1], BIG)
    t0 = time.perf_counter()
    physics.structure_physics(big)
    big_s = time.perf_counter() - t0
    _report(benchmark, {"structure": base[0], "atoms": atoms.num_atoms, "old_s": round(old_s, 2), "new_s": round(new_s, 3),
                        "ratio": round(old_s / new_s, 1), "old_peak_MiB": round(old_peak / 2**20),
                        "new_peak_MiB": round(new_peak / 2**20, 1), "new_10000_atoms_s": round(big_s, 2),
                        "new_10000_atoms_peak_MiB": round(_peak(lambda: physics.structure_physics(big)) / 2**20, 1)})


def test_bench_cif_read_old_vs_new(benchmark, base, tmp_path):
    from pymatgen.io.cif import CifWriter

    old = _old_module("harness/predict.py", "predict_old")
    f = tmp_path / "big.cif"
    CifWriter(supercell(base[1], BIG).pymatgen_converter()).write_file(str(f))
    text = f.read_text()
    t0 = time.perf_counter()
    a_old = old._read_cif(f, text)
    old_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    [(_, a_new, _)] = benchmark.pedantic(sio.read_file, args=(f,), rounds=3, iterations=1)
    new_s = (time.perf_counter() - t0) / 3
    assert a_old.num_atoms == a_new.num_atoms == 10_000
    assert np.allclose(np.asarray(a_old.lattice_mat), np.asarray(a_new.lattice_mat))
    _report(benchmark, {"atoms": 10_000, "old_s": round(old_s, 2), "new_s": round(new_s, 3), "ratio": round(old_s / new_s, 1)})


def test_bench_10000_atom_feature_paths(benchmark, base, tmp_path):
    """Read + check + features of a 10,000-atom POSCAR: the rf_composition path
    (composition features) and the kspace_gbm path (+ physics features), no cache."""
    f = tmp_path / "POSCAR"
    supercell(base[1], BIG).write_poscar(str(f))
    times = {}

    def rf_path():
        t = time.perf_counter()
        [(_, atoms, _)] = sio.read_file(f)
        times["read_s"] = time.perf_counter() - t
        t = time.perf_counter()
        sio.check(atoms, str(f))
        times["check_s"] = time.perf_counter() - t
        t = time.perf_counter()
        composition_features([atoms.composition.reduced_formula], None)
        times["composition_s"] = time.perf_counter() - t
        return atoms

    def gbm_path():
        atoms = rf_path()
        t = time.perf_counter()
        physics.physics_features([atoms], None)
        times["physics_s"] = time.perf_counter() - t

    gbm_path()  # warm-up: imports and element tables outside the timing
    benchmark.pedantic(gbm_path, rounds=3, iterations=1)
    info = {k: round(v, 3) for k, v in times.items()}
    info["rf_composition_path_s"] = round(times["read_s"] + times["check_s"] + times["composition_s"], 2)
    info["kspace_gbm_path_s"] = round(info["rf_composition_path_s"] + times["physics_s"], 2)
    _report(benchmark, {"atoms": 10_000, **info})


SMALL_METALLICITY = {"n_estimators": 60, "max_depth": 6, "learning_rate": 0.2, "lookups": False, "max_formulas": 5000}


@pytest.mark.parametrize("name", ["rf_composition", "kspace_gbm"])
def test_bench_predict_10000_atoms_end_to_end(benchmark, name, base, task, tmp_path, monkeypatch):
    """``predict_kpoints(POSCAR)`` of 10,000 atoms with a real fitted model (small, fitted
    here on a real slice), from an empty feature cache each round."""
    from harness import ModelContext, registry
    from harness.api import predict_kpoints

    f = tmp_path / "POSCAR"
    supercell(base[1], BIG).write_poscar(str(f))
    if name == "rf_composition":
        fitted = helpers.trained(task, tmp_path / "rf")["fitted"]
    else:
        module = registry.read_folder(paths.MODELS_DIR / name).load_module()
        ctx = ModelContext(cache_dir=tmp_path / "m", n_jobs=1, shared_cache_dir=tmp_path / "train-cache")
        est = module.make_model(ctx).set_params(n_seeds=2, n_estimators=150, metallicity_params=SMALL_METALLICITY)
        est.fit(task.X("train").iloc[:800], task.y("train")[:800])
        est.cache_dir = None
        fitted = helpers.StubFitted(name, est, problem="not calibrated in this benchmark")
    rounds = iter(range(100))
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache-warm"))
    predict_kpoints(f, model=fitted, progress=False)  # imports outside the timing

    def run():
        monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / f"cache-{next(rounds)}"))
        return predict_kpoints(f, model=fitted, progress=False)

    t0 = time.perf_counter()
    [p] = benchmark.pedantic(run, rounds=3, iterations=1)
    s = (time.perf_counter() - t0) / 3
    assert p.ok and p.n_atoms == 10_000 and p.mesh is not None
    _report(benchmark, {"model": name, "atoms": 10_000, "s": round(s, 2), "mesh": "x".join(map(str, p.mesh)),
                        "flags": ",".join(p.flags)})


def test_bench_cold_start_old_vs_new(benchmark, tmp_path):
    """``python -m harness predict --help``: today's package (extracted from git) and the
    new one, each in a fresh process from a folder outside the repository."""
    old_root = tmp_path / "old"
    old_root.mkdir()
    archive = subprocess.run(["git", "archive", OLD_REV, "harness"], cwd=paths.REPO_ROOT, capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"git history without {OLD_REV}")
    tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(old_root, filter="data")

    def cold(cwd, extra_env):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "harness", "predict", "--help"], cwd=cwd, capture_output=True,
                             text=True, env={**os.environ, **extra_env})
        assert out.returncode == 0, out.stderr
        return time.perf_counter() - t

    old_s = min(cold(old_root, {"PYTHONPATH": str(old_root)}) for _ in range(3))
    t0 = time.perf_counter()
    benchmark.pedantic(cold, args=(tmp_path, {}), rounds=3, iterations=1)
    new_s = (time.perf_counter() - t0) / 3
    imp = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); import harness.api, harness.predict; "
                          "print(time.perf_counter() - t)"], cwd=tmp_path, capture_output=True, text=True)
    _report(benchmark, {"old_help_s": round(old_s, 3), "new_help_s": round(new_s, 3),
                        "new_import_predict_path_s": round(float(imp.stdout), 3)})
