"""``kspacing predict`` / ``python -m harness predict`` on real structures written as
POSCAR / CIF files, with a real rf_composition fitted on a real slice and calibrated on
real val materials (tests/predict_helpers.py; never the user's trained artifacts)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from jarvis.core.atoms import Atoms
from jarvis.core.kpoints import Kpoints3D
from pymatgen.io.cif import CifWriter

import predict_helpers as helpers
from harness import conformal, paths
from harness.cli import main


from predict_helpers import model, user_cache  # noqa: E402,F401  (shared fixtures)


@pytest.fixture
def structures(task, tmp_path):
    """Two real test materials: one as POSCAR (jarvis writer), one as CIF (pymatgen writer)."""
    ids = task.ids("test")[:2]
    a, b = (task.materials.at[i, "atoms"] for i in ids)
    poscar, cif = tmp_path / f"POSCAR-{ids[0]}", tmp_path / f"{ids[1]}.cif"
    a.write_poscar(str(poscar))
    CifWriter(b.pymatgen_converter()).write_file(str(cif))
    return {"ids": ids, "atoms": (a, b), "files": (poscar, cif)}


def _run(capsys, *argv):
    rc = main(["predict", "--quiet", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def _mesh(atoms, L):
    return [int(n) for n in Kpoints3D().automatic_length_mesh(lattice_mat=atoms.lattice_mat, length=L).kpts[0]]


def test_predict_real_poscar_and_cif_in_every_format(model, structures, task, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --out-dir keeps each input's path relative to the current folder
    out_dir = tmp_path / "kp"
    rc, out, err = _run(capsys, *structures["files"], "--json", "--out-dir", out_dir, "--format", "vasp,qe",
                        "--format", "ase", "--format", "json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["model"] == "rf_composition"
    assert doc["calibration"]["offset"] == pytest.approx(model["offset"])
    assert doc["calibration"]["n_calibration"] == helpers.N_VAL and doc["calibration"]["alpha"] == 0.1
    # the estimator's input is exactly training's: formula + atoms, indexed by an id
    want = model["estimator"].predict(task.materials.loc[structures["ids"], ["formula", "atoms"]])
    for r, atoms, y, f in zip(doc["structures"], structures["atoms"], want, structures["files"]):
        assert r["error"] is None and r["id"] == f.name and r["source"] == str(f)
        assert r["formula"] == atoms.composition.reduced_formula
        assert r["predicted_length"] == pytest.approx(y, abs=1e-3)
        assert r["safe_length"] == float(conformal.upper_bound(y, model["offset"]))
        assert r["mesh"] == _mesh(atoms, y) and r["safe_mesh"] == _mesh(atoms, r["safe_length"])
        assert r["safe_kpoints"] == int(np.prod(r["safe_mesh"]))
        folder = out_dir / f.name
        assert sorted(r["files"]) == sorted(str(folder / n) for n in ("KPOINTS", "K_POINTS.pw", "kpts.json", "kspacing.json"))
        lines = (folder / "KPOINTS").read_text().splitlines()
        assert lines[1:] == ["0", "Gamma", " ".join(map(str, r["safe_mesh"])), "0 0 0"]
        assert (folder / "K_POINTS.pw").read_text().split() == ["K_POINTS", "automatic", *map(str, r["safe_mesh"]),
                                                                 "0", "0", "0"]
        assert json.loads((folder / "kpts.json").read_text()) == {"size": r["safe_mesh"], "gamma": True}
        record = json.loads((folder / "kspacing.json").read_text())
        assert record["safe_mesh"] == r["safe_mesh"] and record["id"] == r["id"]
        assert sorted(record["files"]) == sorted(r["files"])  # the file lists the files written with it
    # Again with --overwrite and only vasp, another level: the other formats' files of the first
    # run would contradict the new KPOINTS, so they go (the folders are predict's own).
    rc, out, err = _run(capsys, *structures["files"], "--json", "--out-dir", out_dir, "--overwrite", "--alpha", "0.3")
    assert rc == 0, err
    for r, f in zip(json.loads(out)["structures"], structures["files"]):
        assert sorted(p.name for p in (out_dir / f.name).iterdir()) == ["KPOINTS"]


def test_text_output(model, structures, capsys):
    rc, out, err = _run(capsys, *structures["files"])
    assert rc == 0, err
    assert out.splitlines()[0].startswith(f"model rf_composition: L90 = floor_5(L + {model['offset']:.2f} Å)")
    for f, atoms in zip(structures["files"], structures["atoms"]):
        line = next(ln for ln in out.splitlines() if ln.startswith(f.name))
        assert atoms.composition.reduced_formula in line


def _slab(atoms: Atoms, vacuum: float) -> Atoms:
    lat = np.array(atoms.lattice_mat, dtype=float)
    lat[2] = lat[2] + vacuum * lat[2] / np.linalg.norm(lat[2])
    return Atoms(lattice_mat=lat, coords=np.array(atoms.cart_coords), elements=list(atoms.elements), cartesian=True)


def test_each_bad_input_is_one_line_naming_the_file_and_the_rest_still_run(model, structures, capsys, tmp_path):
    good = structures["files"][0]
    a = structures["atoms"][0]
    poscar = good.read_text().splitlines()
    files = {
        "missing": None,
        "garbage": "this is not a structure\n",
        "empty": "",
        "no_atoms": "x\n1.0\n4 0 0\n0 4 0\n0 0 4\nO\n0\ndirect\n",
        "unknown": "x\n1.0\n3 0 0\n0 3 0\n0 0 3\nXx O\n1 1\ndirect\n0 0 0\n0.5 0.5 0.5\n",
        # a real element jarvis-tools has no data for (Z > 103: NaN atomic number)
        "superheavy": "RfO\n1.0\n0 3 3\n3 0 3\n3 3 0\nRf O\n1 1\ndirect\n0 0 0\n0.5 0.5 0.5\n",
        "short": "MgO\n1.0\n0 2.1 2.1\n2.1 0 2.1\n2.1 2.1 0\nMg O\n2 2\nDirect\n0 0 0\n0.5 0.5 0.5\n",
        "bad_cif": "data_x\n_cell_length_a 3\nloop_\n_atom_site_type_symbol\n_atom_site_fract_x\nO 0.1 0.2\n",
        "no_atoms_cif": "data_x\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n_cell_angle_alpha 90\n"
                        "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\n",
        "overlap": "\n".join(poscar[:6] + [" ".join(str(int(n) + (k == 0)) for k, n in enumerate(poscar[6].split()))]
                              + poscar[7:9] + poscar[8:]) + "\n",
        "flat": "Si\n1.0\n4 0 0\n0 4 0\n0 0 0.001\nSi\n1\ndirect\n0 0 0\n",
        "vasp4": "my cell\n1.0\n4.2 0 0\n0 4.2 0\n0 0 4.2\n1 1\ndirect\n0 0 0\n0.5 0.5 0.5\n",
    }
    names = {"missing": "POSCAR-missing", "garbage": "garbage.vasp", "empty": "POSCAR-empty",
             "no_atoms": "POSCAR-no-atoms", "unknown": "POSCAR-unknown", "superheavy": "POSCAR-Rf", "short": "POSCAR-short", "bad_cif": "broken.cif",
             "no_atoms_cif": "no-atoms.cif", "overlap": "POSCAR-overlap", "flat": "POSCAR-flat", "vasp4": "POSCAR-vasp4"}
    bad = {}
    for case, content in files.items():
        bad[case] = tmp_path / names[case]
        if content is not None:
            bad[case].write_text(content)
    bad["slab"] = tmp_path / "POSCAR-slab"
    _slab(a, 15.0).write_poscar(str(bad["slab"]))
    bad["directory"] = tmp_path / "a-directory"
    bad["directory"].mkdir()
    bad["huge"] = tmp_path / "huge.vasp"
    with open(bad["huge"], "wb") as fh:
        fh.truncate(65 * 2**20)
    rc, out, err = _run(capsys, good, *bad.values())
    assert rc == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == len(bad)
    for (case, path), line in zip(bad.items(), errors):
        assert line.startswith(f"error: {path}: "), (case, line)
    text = dict(zip(bad, errors))
    assert "no such file" in text["missing"]
    assert "cannot read as POSCAR" in text["garbage"] and "empty file" in text["empty"]
    assert "no atoms" in text["no_atoms"] and "no atoms" in text["no_atoms_cif"]
    assert "unknown element(s) Xx" in text["unknown"]
    assert "element(s) Rf not supported" in text["superheavy"]
    assert "the atom counts (2 2) give 4 atoms, but only 2 position line(s) follow" in text["short"]
    assert "cannot read as CIF" in text["bad_cif"]
    assert "overlapping atoms" in text["overlap"] and "0 Å apart" in text["overlap"]
    assert "degenerate cell" in text["flat"]
    assert "VASP 4 POSCAR" in text["vasp4"]
    assert "2D/slab" in text["slab"] and "lattice vector c" in text["slab"]
    assert "is a directory" in text["directory"]
    assert "over the 64 MiB cap" in text["huge"]
    assert good.name in out  # the good file was still predicted
    assert f"{len(bad)} of {len(bad) + 1} structure(s) failed" in err
    # --json: the same errors, per file, machine-readable
    rc, out, _ = _run(capsys, good, bad["slab"], "--json")
    doc = json.loads(out)
    assert rc == 1 and doc["structures"][0]["error"] is None and "2D/slab" in doc["structures"][1]["error"]


def test_output_paths_never_collide_and_nothing_is_overwritten(model, task, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ids = task.ids("test")[2:5]
    atoms = [task.materials.at[i, "atoms"] for i in ids]
    runs = tmp_path / "runs"
    f1, f2, f3 = runs / "Si" / "conv" / "POSCAR", runs / "Si_conv" / "POSCAR", runs / "Cu" / "POSCAR"
    for f, a in zip((f1, f2, f3), atoms):
        f.parent.mkdir(parents=True)
        a.write_poscar(str(f))
    out_dir = tmp_path / "out"
    rc, out, err = _run(capsys, f1, f2, f3, "--out-dir", out_dir, "--json")
    assert rc == 0, err
    recs = json.loads(out)["structures"]
    targets = [out_dir / "runs" / "Si" / "conv" / "POSCAR" / "KPOINTS", out_dir / "runs" / "Si_conv" / "POSCAR" / "KPOINTS",
               out_dir / "runs" / "Cu" / "POSCAR" / "KPOINTS"]
    for r, t in zip(recs, targets):
        assert r["files"] == [str(t)]
        assert t.read_text().splitlines()[3] == " ".join(map(str, r["safe_mesh"]))  # each file its own mesh
    # the same command again: every file exists, nothing is overwritten
    stamp = {t: t.read_bytes() for t in targets}
    targets[0].write_text("the user's own KPOINTS\n")
    rc, out, err = _run(capsys, f1, f2, f3, "--out-dir", out_dir)
    assert rc == 1 and err.count("exists: refused, never overwritten") == 3
    assert all(str(f) in out for f in (f1, f2, f3))  # the predictions are still shown
    assert targets[0].read_text() == "the user's own KPOINTS\n" and targets[1].read_bytes() == stamp[targets[1]]
    rc, out, err = _run(capsys, f1, "--out-dir", out_dir, "--overwrite")
    assert rc == 0 and targets[0].read_text().splitlines()[1:] == stamp[targets[0]].decode().splitlines()[1:]
    # next to the input, --overwrite replaces what was asked for and only names the other formats' old files
    (f1.parent / "kpts.json").write_text('{"size": [1, 1, 1], "gamma": true}\n')
    rc, out, err = _run(capsys, f1, "--next-to-input", "--overwrite")
    assert rc == 0 and (f1.parent / "kpts.json").is_file() and (f1.parent / "KPOINTS").is_file()
    assert f"warning: {f1}: {f1.parent / 'kpts.json'} from an earlier run kept (not in --format)" in err
    (f1.parent / "kpts.json").unlink()
    (f1.parent / "KPOINTS").unlink()
    # next to the input: two structures in one folder would share one KPOINTS: both refused
    contcar = f3.parent / "CONTCAR"
    shutil.copy(f1, contcar)
    rc, out, err = _run(capsys, f3, contcar, f2, "--next-to-input")
    assert rc == 1
    assert not (f3.parent / "KPOINTS").exists()
    assert err.count(f"output {f3.parent / 'KPOINTS'} would also be written for") == 2
    assert (f2.parent / "KPOINTS").is_file() and f2.parent.name == "Si_conv"  # the other input still written


def test_no_files_from_an_uncalibrated_model_unless_asked(model, structures, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = helpers.StubFitted("rf_composition", model["estimator"], problem="results/rf_composition: no run record")
    helpers.use_model(monkeypatch, raw)
    out_dir = tmp_path / "kp"
    rc, out, err = _run(capsys, *structures["files"], "--out-dir", out_dir)
    assert rc == 1 and not out_dir.exists()
    assert "no calibrated safe length, so no files were written" in err and "--allow-uncalibrated" in err
    assert structures["files"][0].name in out  # the predictions are still shown
    rc, out, err = _run(capsys, *structures["files"], "--out-dir", out_dir, "--allow-uncalibrated", "--json")
    assert rc == 0, err
    for r in json.loads(out)["structures"]:
        assert r["safe_mesh"] is None
        kp = (out_dir / Path(r["source"]).name / "KPOINTS").read_text().splitlines()
        assert "UNCALIBRATED" in kp[0] and kp[3] == " ".join(map(str, r["mesh"]))


def test_unwritable_output_dir_is_one_line_and_the_predictions_still_print(model, structures, capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc, out, err = _run(capsys, *structures["files"], "--out-dir", blocker / "kp")
    assert rc == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot write to {blocker / 'kp'} (")
    assert all(f.name in out for f in structures["files"])


def test_console_command_runs_from_any_directory(tmp_path):
    """The installed `kspacing` command (pip install -e ., done by `make venv`), run from a
    folder outside the repository: help, a molecule (Γ-only, no model needed), and a bulk
    structure without a trained model (the one-line hint, exit 2)."""
    exe = Path(sys.executable).parent / "kspacing"
    assert exe.is_file(), "no kspacing command: run `make venv` (pip install -e .)"
    env = {**os.environ, paths.CACHE_DIR_ENV: str(tmp_path / "empty-cache"), "PYTHONPATH": ""}
    run = lambda *a: subprocess.run([str(exe), *a], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    help_ = run("predict", "--help")
    assert help_.returncode == 0 and "--out-dir" in help_.stdout
    mol = tmp_path / "CO-box.vasp"
    mol.write_text("CO\n1.0\n8 0 0\n0 8 0\n0 0 8\nC O\n1 1\ncartesian\n4 4 3.436\n4 4 4.564\n")
    out = run("predict", "--quiet", mol.name, "--next-to-input")
    assert out.returncode == 0, out.stderr
    assert "CO-box.vasp" in out.stdout and "Γ-only" in out.stdout
    assert (tmp_path / "KPOINTS").read_text().splitlines()[3] == "1 1 1"
    bulk = tmp_path / "POSCAR"
    bulk.write_text("MgO\n1.0\n0 2.1 2.1\n2.1 0 2.1\n2.1 2.1 0\nMg O\n1 1\ndirect\n0 0 0\n0.5 0.5 0.5\n")
    out = run("predict", "--quiet", bulk.name)
    assert out.returncode == 2 and "python -m harness run" in out.stderr and out.stderr.count("\n") == 1
