"""Electron-count features: the parity of the primitive cell's electron count, the
free-electron Fermi wave vector against textbook values, invariance to the choice of cell,
and agreement with the real training data (odd counts need longer k-point lengths)."""

import numpy as np
from jarvis.core.atoms import Atoms

from modellib.features import electrons


def _atoms(lat, frac, els):
    return Atoms(lattice_mat=lat, coords=frac, elements=els, cartesian=False)


def _bcc_conventional(a, el):
    return _atoms(np.eye(3) * a, [[0, 0, 0], [0.5, 0.5, 0.5]], [el, el])


def _fcc_primitive(a, el):
    return _atoms([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]], [[0, 0, 0]], [el])


def _rocksalt_conventional(a, A, B):
    fcc = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    return _atoms(np.eye(3) * a, fcc + [[x + 0.5 - (x >= 0.5), y, z] for x, y, z in fcc], [A] * 4 + [B] * 4)


def test_free_electron_fermi_wave_vector_of_sodium():
    # Ashcroft & Mermin, table 2.1: Na (bcc, a = 4.23 Å at 5 K) k_F = 0.92 / Å
    f = electrons.structure_electrons(_bcc_conventional(4.23, "Na"))
    assert abs(f["k_fermi"] - 0.92) < 0.005
    assert np.isclose(f["valence_density"], 2 / 4.23**3, rtol=1e-12)


def test_parity_is_that_of_the_primitive_cell():
    cu = electrons.structure_electrons(_fcc_primitive(3.61, "Cu"))  # Z 29: one electron left over
    assert cu["odd_electrons_primitive"] == 1.0
    # the conventional cell has 4 Cu (116 electrons, even), its primitive cell is still odd
    conv = _atoms(np.eye(3) * 3.61, [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]], ["Cu"] * 4)
    assert electrons.structure_electrons(conv)["odd_electrons_primitive"] == 1.0
    mgo = electrons.structure_electrons(_rocksalt_conventional(4.21, "Mg", "O"))  # 12 + 8
    assert mgo["odd_electrons_primitive"] == 0.0
    nao = electrons.structure_electrons(_rocksalt_conventional(4.8, "Na", "O"))  # 11 + 8: NaO in rocksalt
    assert nao["odd_electrons_primitive"] == 1.0
    assert nao["valence_electrons_primitive"] == 1 + 6


def test_features_do_not_depend_on_the_cell_chosen():
    a = 4.21
    conv = _rocksalt_conventional(a, "Mg", "O")
    prim = _atoms([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]], [[0, 0, 0], [0.5, 0.5, 0.5]], ["Mg", "O"])
    f_conv, f_prim = electrons.structure_electrons(conv), electrons.structure_electrons(prim)
    for k in ("odd_electrons_primitive", "valence_electrons_primitive", "valence_density", "k_fermi"):
        assert np.isclose(f_conv[k], f_prim[k], rtol=1e-12), k
    # the Fermi sphere in units of the reciprocal lattice follows the cell: larger cell, shorter b
    assert f_conv["k_fermi_over_b_min"] > f_prim["k_fermi_over_b_min"]


def test_real_training_cells_with_odd_counts_need_longer_lengths(task, cache_root):
    """On 3,000 real training cells the features are finite, cached rows equal fresh ones,
    and odd-count cells converge at longer lengths (the reason the feature exists)."""
    X, y = task.X("train").iloc[:3000], task.y("train")[:3000]
    F = electrons.electron_features(X["atoms"], cache_root)
    assert list(F.columns) == list(electrons.NAMES) and len(F) == len(X)
    assert np.isfinite(F.to_numpy()).all()
    assert set(F["odd_electrons_primitive"].unique()) == {0.0, 1.0}
    again = electrons.electron_features(X["atoms"].iloc[:50], cache_root)
    fresh = electrons.electron_features(X["atoms"].iloc[:50], None)
    assert np.array_equal(again.to_numpy(), fresh.to_numpy())
    odd = F["odd_electrons_primitive"].to_numpy() == 1
    assert 0.05 < odd.mean() < 0.5
    assert np.median(y[odd]) > np.median(y[~odd]) and y[odd].mean() > y[~odd].mean() + 3
