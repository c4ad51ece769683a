"""``python -m harness predict`` on real structures written as POSCAR / CIF files, with
models fitted here into a temporary cache (never the user's trained artifacts)."""

from __future__ import annotations

import dataclasses
import json

import joblib
import numpy as np
import pandas as pd
import pytest
from jarvis.core.atoms import Atoms
from jarvis.core.kpoints import Kpoints3D
from pymatgen.io.cif import CifWriter

from harness import ModelContext, conformal, paths, predict, registry, submission
from harness.cli import main
from harness.runner import artifact_path, run_one

N_VAL = 60


def _slice(task, n_train, n_val, n_test):
    n = {"train": n_train, "val": n_val, "test": n_test}
    covered = {s: ids[: n[s]] for s, ids in task.coverage.covered.items()}
    return dataclasses.replace(task, coverage=dataclasses.replace(task.coverage, covered=covered))


@pytest.fixture(scope="module")
def trained(task, cache_root, tmp_path_factory):
    """train_median through the real `run` path, rf_composition (20 trees) fitted on a
    small real slice; both saved under a temp $KSPACING_CACHE_DIR with val predictions
    under a temp results/."""
    root = tmp_path_factory.mktemp("predict")
    cache, results = root / "cache", root / "results"
    small = _slice(task, 400, N_VAL, 10)
    folder = registry.read_folder(paths.MODELS_DIR / "train_median")
    ctx = ModelContext(cache_dir=cache / "models" / "train_median", n_jobs=1, shared_cache_dir=cache_root)
    out = run_one(small, folder, ctx, submissions_dir=root / "submissions", results_dir=results, artifacts_dir=cache)
    assert out.ok, out.message
    module = registry.read_folder(paths.MODELS_DIR / "rf_composition").load_module()
    rf = module.make_model(ModelContext(cache_dir=cache, n_jobs=1, shared_cache_dir=cache_root))
    rf.set_params(n_estimators=20).fit(small.X("train"), small.y("train"))
    path = artifact_path(cache, "rf_composition")
    path.parent.mkdir(parents=True)
    joblib.dump(rf, path)
    val_pred = rf.predict(small.X("val"))
    submission.write_csv_zip(results / "rf_composition" / "val_predictions.csv.zip", small.ids("val"),
                             small.y("val"), val_pred)
    return {"root": root, "cache": cache, "results": results, "rf": rf, "small": small,
            "offset": conformal.conformal_offset(small.y("val"), val_pred)}


@pytest.fixture
def structures(task, tmp_path):
    """Two real test materials: one as POSCAR (jarvis writer), one as CIF (pymatgen writer)."""
    ids = task.ids("test")[:2]
    a, b = (task.materials.at[i, "atoms"] for i in ids)
    poscar, cif = tmp_path / f"POSCAR-{ids[0]}", tmp_path / f"{ids[1]}.cif"
    a.write_poscar(str(poscar))
    CifWriter(b.pymatgen_converter()).write_file(str(cif))
    return {"ids": ids, "atoms": (a, b), "files": (poscar, cif)}


def _run(capsys, monkeypatch, trained, *argv):
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(trained["cache"]))
    rc = main(["predict", *map(str, argv), "--results-dir", str(trained["results"])])
    out, err = capsys.readouterr()
    return rc, out, err


def test_predict_real_poscar_and_cif(trained, structures, task, capsys, monkeypatch, tmp_path):
    kdir = tmp_path / "kp"
    rc, out, err = _run(capsys, monkeypatch, trained, *structures["files"], "--model", "rf_composition", "--json",
                        "--kpoints-dir", kdir)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["model"] == "rf_composition"
    assert doc["l90"]["offset"] == pytest.approx(trained["offset"])
    assert doc["l90"]["n_calibration"] == N_VAL
    # the estimator's input is exactly training's: formula + atoms, indexed by an id
    want = trained["rf"].predict(task.materials.loc[structures["ids"], ["formula", "atoms"]])
    for r, atoms, y, f in zip(doc["structures"], structures["atoms"], want, structures["files"]):
        assert r["error"] is None and r["id"] == f.name
        assert r["formula"] == atoms.composition.reduced_formula
        assert r["predicted_length"] == pytest.approx(y, abs=1e-3)
        assert r["l90"] == float(conformal.upper_bound(y, trained["offset"]))
        assert r["l90"] % 5 == 0 and r["l90"] >= r["predicted_length"] - 5
        for key, L in (("mesh", y), ("mesh_l90", r["l90"])):
            assert r[key] == list(Kpoints3D().automatic_length_mesh(lattice_mat=atoms.lattice_mat, length=L).kpts[0])
        assert r["kpoints_l90"] == int(np.prod(r["mesh_l90"]))
        lines = (kdir / f.name / "KPOINTS").read_text().splitlines()
        assert lines[2] == "Gamma" and lines[3].split() == [str(n) for n in r["mesh_l90"]]


def test_predict_text_output_and_default_model_from_the_leaderboard(trained, structures, capsys, monkeypatch, tmp_path):
    board = tmp_path / "leaderboard.csv"
    board.write_text("rank,model,kind,mae\n1,matminer_xgboost (published),reference,5.8\n2,no_such_model,model,6.0\n"
                     "3,train_median,baseline,9.1\n4,rf_composition,model,9.5\n")
    assert predict.default_model(board, trained["cache"]) == "train_median"
    with pytest.raises(Exception, match=r"run `python -m harness run train_median`"):
        predict.default_model(board, tmp_path / "empty-cache")
    rc, out, err = _run(capsys, monkeypatch, trained, *structures["files"], "--model", "train_median")
    assert rc == 0, err
    assert "model train_median" in out and "L90 = floor_5(L + " in out
    for f in structures["files"]:
        line = next(ln for ln in out.splitlines() if ln.startswith(f.name))
        assert " 25.0 " in line  # the covered train median


def _slab(atoms: Atoms, vacuum: float) -> Atoms:
    lat = np.array(atoms.lattice_mat, dtype=float)
    c = lat[2] / np.linalg.norm(lat[2])
    lat[2] = lat[2] + vacuum * c
    return Atoms(lattice_mat=lat, coords=np.array(atoms.cart_coords), elements=list(atoms.elements), cartesian=True)


def test_each_bad_input_is_one_line_naming_the_file_and_the_rest_still_run(trained, structures, capsys,
                                                                          monkeypatch, tmp_path):
    good = structures["files"][0]
    files = {
        "missing": None,
        "garbage": "this is not a structure\n",
        "empty": "",
        "no_atoms": "x\n1.0\n4 0 0\n0 4 0\n0 0 4\nO\n0\ndirect\n",
        "unknown": "x\n1.0\n3 0 0\n0 3 0\n0 0 3\nXx O\n1 1\ndirect\n0 0 0\n0.5 0.5 0.5\n",
        "bad_cif": "data_x\n_cell_length_a 3\nloop_\n_atom_site_type_symbol\n_atom_site_fract_x\nO 0.1 0.2\n",
        "no_atoms_cif": "data_x\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n_cell_angle_alpha 90\n"
                        "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\n",
    }
    names = {"missing": "POSCAR-missing", "garbage": "garbage.vasp", "empty": "POSCAR-empty",
             "no_atoms": "POSCAR-no-atoms", "unknown": "POSCAR-unknown", "bad_cif": "broken.cif",
             "no_atoms_cif": "no-atoms.cif"}
    bad = {}
    for case, content in files.items():
        bad[case] = tmp_path / names[case]
        if content is not None:
            bad[case].write_text(content)
    bad["slab"] = tmp_path / "POSCAR-slab"
    _slab(structures["atoms"][0], 15.0).write_poscar(str(bad["slab"]))
    bad["directory"] = tmp_path / "a-directory"
    bad["directory"].mkdir()
    rc, out, err = _run(capsys, monkeypatch, trained, good, *bad.values(), "--model", "rf_composition")
    assert rc == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == len(bad)
    for (case, path), line in zip(bad.items(), errors):
        assert line.startswith(f"error: {path}: "), (case, line)
    text = dict(zip(bad, errors))
    assert "no such file" in text["missing"]
    assert "cannot read as POSCAR" in text["garbage"] and "empty file" in text["empty"]
    assert "no atoms" in text["no_atoms"]
    assert "unknown element(s) Xx" in text["unknown"]
    assert "cannot read as CIF" in text["bad_cif"]
    assert "no atoms" in text["no_atoms_cif"]
    assert "2D/slab" in text["slab"] and "lattice vector c" in text["slab"]
    assert "is a directory" in text["directory"]
    assert good.name in out  # the good file was still predicted
    assert f"{len(bad)} of {len(bad) + 1} file(s) failed" in err
    # --json: the same errors, per file, machine-readable
    rc, out, _ = _run(capsys, monkeypatch, trained, good, bad["slab"], "--model", "rf_composition", "--json")
    doc = json.loads(out)
    assert rc == 1 and doc["structures"][0]["error"] is None and "2D/slab" in doc["structures"][1]["error"]


def test_vacuum_threshold_refuses_no_real_bulk_structure(task):
    gaps = [predict.vacuum_gap(a)[1] for a in task.materials["atoms"]]
    assert max(gaps) < predict.VACUUM_GAP_A
    a = task.materials["atoms"].iloc[0]
    assert predict.vacuum_gap(_slab(a, predict.VACUUM_GAP_A + 2))[1] > predict.VACUUM_GAP_A


def test_missing_artifact_names_the_command_to_run(structures, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "empty-cache"))
    rc = main(["predict", str(structures["files"][0]), "--model", "rf_composition"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no trained model rf_composition in" in err and "run `python -m harness run rf_composition`" in err


def test_model_input_frame_matches_training(structures, monkeypatch):
    """The frame predict builds is what harness/data.py gives models in training."""
    seen = {}

    class Spy:
        def predict(self, X):
            seen["X"] = X
            return np.full(len(X), 30.0)

    monkeypatch.setattr(predict, "load_model", lambda *a, **k: Spy())
    res = predict.predict_files(list(structures["files"]), "spy", offset=10.0)
    X = seen["X"]
    assert isinstance(X, pd.DataFrame) and list(X.columns) == ["formula", "atoms"]
    assert list(X.index) == [f.name for f in structures["files"]]
    assert all(isinstance(a, Atoms) for a in X["atoms"])
    assert [r.l90 for r in res] == [40.0, 40.0]
