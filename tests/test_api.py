"""The Python API (harness/api.py) on real structures as a pymatgen, an ASE and a jarvis
user holds them, with a real rf_composition fitted on a real slice and calibrated on
real val materials (tests/predict_helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms as AseAtoms
from ase.build import molecule
from jarvis.core.kpoints import Kpoints3D
from pymatgen.core import Molecule

import predict_helpers as helpers
from harness import api, conformal, paths
from harness.api import predict_kpoints
from harness.errors import HarnessError


from predict_helpers import model, user_cache  # noqa: E402,F401  (shared fixtures)


@pytest.fixture(scope="module")
def real(task):
    """Three real test materials: (ids, jarvis Atoms)."""
    ids = task.ids("test")[:3]
    return ids, [task.materials.at[i, "atoms"] for i in ids]


def _ase(atoms) -> AseAtoms:
    return AseAtoms(symbols=list(atoms.elements), positions=np.asarray(atoms.cart_coords), cell=np.asarray(atoms.lattice_mat),
                    pbc=True)


def _jarvis_mesh(atoms, L):
    return tuple(int(n) for n in Kpoints3D().automatic_length_mesh(lattice_mat=atoms.lattice_mat, length=L).kpts[0])


def test_pymatgen_ase_and_jarvis_inputs_give_the_same_real_prediction(model, real, task):
    ids, atoms = real
    want = model["estimator"].predict(task.materials.loc[ids, ["formula", "atoms"]])
    q = model["offset"]
    by_kind = {
        "jarvis": predict_kpoints(atoms),
        "pymatgen": predict_kpoints([a.pymatgen_converter() for a in atoms]),
        "ase": predict_kpoints([_ase(a) for a in atoms]),
    }
    for kind, preds in by_kind.items():
        assert [p.id for p in preds] == ["structure0", "structure1", "structure2"], kind
        for p, a, y in zip(preds, atoms, want):
            assert p.ok and p.model == "rf_composition" and p.dimensionality == 3
            assert p.formula == a.composition.reduced_formula and p.n_atoms == a.num_atoms
            assert p.predicted_length == pytest.approx(y, abs=1e-9)
            assert p.safe_length == float(conformal.upper_bound(y, q)) and p.safe_length % 5 == 0
            assert p.mesh == _jarvis_mesh(a, y) and p.safe_mesh == _jarvis_mesh(a, p.safe_length)
            assert p.kpoints == int(np.prod(p.mesh)) and p.safe_kpoints == int(np.prod(p.safe_mesh))
            assert type(p.safe_kpoints) is int
    # one structure, not a list; ids; a 0.2 level gives a bound no larger than 0.1's
    [one] = predict_kpoints(atoms[0].pymatgen_converter(), ids=["mine"], alpha=0.2)
    assert one.id == "mine" and one.safe_length <= by_kind["jarvis"][0].safe_length


def test_outputs_for_vasp_qe_and_ase(model, real):
    from ase.calculators.calculator import kpts2sizeandoffsets
    from ase.dft.kpoints import monkhorst_pack

    [p] = predict_kpoints(real[1][0])
    n = p.safe_mesh
    lines = p.vasp_kpoints().splitlines()
    assert lines[1:] == ["0", "Gamma", f"{n[0]} {n[1]} {n[2]}", "0 0 0"]
    assert f"safe k-point length {p.safe_length:g} A" in lines[0]
    assert p.qe_card().splitlines() == ["K_POINTS automatic", f"  {n[0]} {n[1]} {n[2]}  0 0 0"]
    assert p.qe_card("predicted").splitlines()[1].split()[:3] == [str(x) for x in p.mesh]
    kpts = p.ase_kpts()
    assert kpts == {"size": list(n), "gamma": True}
    size, offsets = kpts2sizeandoffsets(atoms=_ase(real[1][0]), **kpts)
    grid = monkhorst_pack(size) + offsets
    assert tuple(size) == n and np.isclose(np.abs(grid).sum(axis=1), 0).any()  # Γ is on ASE's grid
    d = p.to_dict()
    assert d["safe_mesh"] == list(n) and d["flags"] == p.flags and d["error"] is None


def test_molecules_are_gamma_only_without_loading_a_model(monkeypatch):
    from harness import fitted

    def no_model(*a, **k):
        raise AssertionError("a model was loaded for a molecule")

    monkeypatch.setattr(fitted, "load_fitted", no_model)
    monkeypatch.setattr(fitted, "default_model", no_model)
    water = molecule("H2O")  # ASE, no cell, pbc False
    boxed = molecule("CO")
    boxed.set_cell([8.0, 8.0, 8.0])
    boxed.center()
    boxed.pbc = True  # the case: a molecule in an 8 Å box
    mol = Molecule(["C", "O"], [[0, 0, 0], [0, 0, 1.128]])
    preds = predict_kpoints([water, boxed, mol])
    assert [p.formula for p in preds] == ["H2O", "CO", "CO"]
    for p in preds:
        assert p.ok and p.dimensionality == 0 and p.mesh == p.safe_mesh == (1, 1, 1) and p.kpoints == 1
        assert p.model is None and p.predicted_length is None and "molecule_gamma_only" in p.flags
        assert p.vasp_kpoints().splitlines()[3] == "1 1 1"


def test_a_bad_structure_raises_by_default_or_fails_alone(model, real):
    good = real[1][0]
    bad = good.pymatgen_converter().copy()
    bad.append(bad[0].specie, bad[0].frac_coords)  # a second atom on site 1
    with pytest.raises(HarnessError, match=r"^structure1: overlapping atoms: atoms 1 .* only 0 Å apart"):
        predict_kpoints([good, bad])
    first, second = predict_kpoints([good, bad], errors="keep")
    assert first.ok and first.safe_mesh is not None
    assert not second.ok and second.error.startswith("structure1: overlapping atoms")
    with pytest.raises(HarnessError, match=r"^structure0: ASE Atoms periodic along 2 axis"):
        predict_kpoints(AseAtoms("Si2", positions=[[0, 0, 0], [1.3, 1.3, 1.3]], cell=[5, 5, 5], pbc=[True, True, False]))
    with pytest.raises(HarnessError, match=r"is not a structure"):
        predict_kpoints([{"lattice": 1}])


def test_a_model_object_is_reused_and_an_uncalibrated_one_gives_no_safe_length(model, real, monkeypatch):
    calls = helpers.use_model(monkeypatch, model["fitted"])
    f = api.load_model("rf_composition")
    assert calls == ["rf_composition"]
    predict_kpoints(real[1], model=f)
    assert calls == ["rf_composition"]  # not loaded again
    raw = helpers.StubFitted("rf_composition", model["estimator"], problem="results/rf_composition: no run record")
    [p] = predict_kpoints(real[1][0], model=raw)
    assert p.ok and p.safe_length is None and p.safe_mesh is None and p.mesh is not None
    assert p.flags["uncalibrated"] == "results/rf_composition: no run record"
    with pytest.raises(HarnessError, match=r"no calibrated safe length"):
        p.qe_card()
    assert p.qe_card("predicted").startswith("K_POINTS automatic")


def test_the_fitted_model_carries_no_path_and_features_go_to_the_users_cache(model, real, tmp_path, monkeypatch):
    """The artifact holds no training-cache path; predicting caches features in the
    current $KSPACING_CACHE_DIR, never in the training cache, and works on a cache that
    cannot be written."""
    train_cache = model["train_cache"]
    assert str(train_cache).encode() not in model["artifact"].read_bytes()
    assert model["estimator"].cache_dir is None
    before = {p: p.read_bytes() for p in train_cache.rglob("*") if p.is_file()}
    assert any("composition" in p.name for p in before)  # training cached its features there
    a = real[1][2]
    user = tmp_path / "user-cache"
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(user))
    [p] = predict_kpoints(a)
    assert {p: p.read_bytes() for p in train_cache.rglob("*") if p.is_file()} == before
    assert list(user.glob("features/composition-*.pkl"))
    # a read-only cache (here: its features/ is a file): computed, not stored, same result
    ro = tmp_path / "ro-cache"
    ro.mkdir()
    (ro / "features").write_text("not a folder")
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(ro))
    [q] = predict_kpoints(a)
    assert q.predicted_length == p.predicted_length and q.safe_mesh == p.safe_mesh
    assert sorted(x.name for x in ro.iterdir()) == ["features"]


def test_files_by_path_and_progress_lines(model, real, tmp_path, monkeypatch, capsys):
    a = real[1][0]
    f = tmp_path / "POSCAR"
    a.write_poscar(str(f))
    monkeypatch.setattr(api, "NOTICE_AFTER_S", 0.0)
    [p] = predict_kpoints(f)
    [q] = predict_kpoints(a)
    assert p.id == "POSCAR" and p.source == str(f) and p.predicted_length == pytest.approx(q.predicted_length, abs=1e-9)
    err = capsys.readouterr().err
    assert "kspacing: predicting 1 structure(s) (" in err and "with rf_composition" in err


def test_the_estimator_gets_trainings_frame_and_a_failure_stays_with_its_structure(real):
    """What predict hands the estimator is what harness/data.py gives models in training
    (formula + jarvis Atoms, indexed by id); a structure the model cannot handle fails
    alone."""
    import pandas as pd
    from jarvis.core.atoms import Atoms

    ids, atoms = real
    seen = []

    class Spy:
        def predict(self, X):
            seen.append(X)
            if (X["formula"] == atoms[1].composition.reduced_formula).any():
                raise ValueError("no features for this one")
            return np.full(len(X), 30.0)

    y = np.linspace(20.0, 60.0, 30)
    stub = helpers.StubFitted("spy", Spy(), y_val=y, p_val=y - 10.0)  # every residual +10 Å: offset 10
    preds = predict_kpoints(atoms, model=stub, ids=ids, errors="keep")
    X = seen[0]
    assert isinstance(X, pd.DataFrame) and list(X.columns) == ["formula", "atoms"] and X.index.name == "jid"
    assert list(X.index) == ids and all(isinstance(a, Atoms) for a in X["atoms"])
    assert [len(x) for x in seen] == [3, 1, 1, 1]  # the batch, then each alone
    assert [p.safe_length for p in preds] == [40.0, None, 40.0]
    assert preds[1].error == f"{ids[1]}: model spy failed on this structure (ValueError: no features for this one)"
