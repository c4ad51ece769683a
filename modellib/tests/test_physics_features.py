"""Physics features: reciprocal lengths and meshes agree with jarvis-tools, converged
lengths sit on mesh steps, features behave physically under supercells, cache works."""

import numpy as np
import pytest
from jarvis.core.atoms import Atoms
from jarvis.core.kpoints import Kpoints3D

from modellib.features import physics


def _slice(task, split, n):
    return task.X(split).iloc[:n], task.y(split)[:n]


def test_mesh_matches_jarvis_kpoints3d(task):
    X, _ = _slice(task, "train", 60)
    for atoms in X["atoms"]:
        b = physics.reciprocal_lengths(atoms.lattice_mat)
        for L in (10, 25, 37, 60, 115):
            ref = Kpoints3D().automatic_length_mesh(lattice_mat=atoms.lattice_mat, length=L).kpts[0]
            assert list(physics.mesh(L, b)) == list(ref)


def test_converged_lengths_sit_on_mesh_steps(task):
    # JARVIS' convergence loop only evaluates lengths whose mesh differs from the last one
    X, y = _slice(task, "train", 400)
    on_step = [L in set(physics.mesh_change_lengths(physics.reciprocal_lengths(a.lattice_mat)).tolist())
               for a, L in zip(X["atoms"], y)]
    assert np.mean(on_step) > 0.97


def _fcc(a=3.61, el="Cu"):
    lat = [[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]
    return Atoms(lattice_mat=lat, coords=[[0, 0, 0]], elements=[el], cartesian=False)


def test_fcc_copper_values():
    f = physics.structure_physics(_fcc())
    assert f["spacegroup"] == 225 and f["crystal_system"] == 7 and f["n_sym_ops"] == 48
    # fcc primitive cell: |b_i| = sqrt(3)/a for all three
    assert f["b_min"] == pytest.approx(np.sqrt(3) / 3.61) and f["b_max_over_min"] == pytest.approx(1.0)
    assert f["min_dist"] == pytest.approx(3.61 / np.sqrt(2))
    assert f["volume"] == pytest.approx(3.61**3 / 4) and f["density"] == pytest.approx(8.93, rel=0.02)


def test_supercell_invariants(task):
    X, _ = _slice(task, "val", 8)
    for atoms in X["atoms"]:
        a = physics.structure_physics(atoms)
        s = physics.structure_physics(atoms.make_supercell_matrix([2, 1, 1]))
        assert s["n_atoms"] == 2 * a["n_atoms"]
        assert s["cell_over_primitive"] == pytest.approx(2 * a["cell_over_primitive"])
        for k in ("vol_per_atom", "density", "packing_fraction", "min_dist", "spacegroup"):
            assert s[k] == pytest.approx(a[k], rel=1e-4), k  # jarvis supercells round positions
        assert s["b_geo"] == pytest.approx(a["b_geo"] / 2 ** (1 / 3), rel=1e-4)


def test_cache_returns_the_same_rows_without_recomputing(task, tmp_path, monkeypatch):
    X, _ = _slice(task, "test", 12)
    atoms = list(X["atoms"]) + [X["atoms"].iloc[0]]
    direct = physics.physics_features(atoms)
    cached = physics.physics_features(atoms, tmp_path)
    assert np.allclose(direct.to_numpy(), cached.to_numpy(), equal_nan=True)
    monkeypatch.setattr(physics, "structure_physics", lambda a: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = physics.physics_features(atoms[3:6], tmp_path)
    assert np.allclose(again.to_numpy(), direct.iloc[3:6].to_numpy(), equal_nan=True)
