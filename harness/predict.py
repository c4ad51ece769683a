"""``python -m harness predict FILE...``: the k-point length, its safe bound L90 and the
k-meshes they give, for POSCAR / CIF files, with a model trained by ``harness run``.

The estimator gets exactly what training gave it (harness/data.py): a DataFrame indexed
by an id (here the file name) with columns ``formula`` (reduced formula) and ``atoms``
(jarvis ``Atoms``). L90 = ŷ + q̂ floored to the 5 Å grid (harness/conformal.py), q̂
from the model's ``results/<name>/val_predictions.csv.zip`` against the split's val truth.
Meshes are jarvis' own ``Kpoints3D().automatic_length_mesh`` (Gamma-centred).

Every bad input is a one-line error naming the file; the other files are still
processed and the exit code is 1 if any failed. Heavy imports stay inside functions:
cli.py imports this module to register the subcommand.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import paths
from harness.errors import HarnessError

# The model used when leaderboard.csv names none of ours with a saved artifact
# (e.g. a fresh clone where only this one was trained).
DEFAULT_MODEL = "rf_composition"
# A lattice direction whose largest empty gap between atom layers exceeds this is
# vacuum: a 2D / slab / molecule cell, outside what the bulk (dft_3d) models learned.
# The 17,279 offline dft_3d structures have at most 9.2 Å (median 1.4 Å, 99.9 % < 5.8 Å);
# slabs are built with >= 10-15 Å of vacuum (jarvis' own default: 18-20 Å).
VACUUM_GAP_A = 10.0
CIF_SUFFIXES = (".cif", ".mcif")


@dataclass
class Result:
    file: str
    id: str
    formula: str = ""
    num_atoms: int = 0
    predicted_length: float | None = None
    mesh: list[int] = field(default_factory=list)
    kpoints: int | None = None
    l90: float | None = None
    mesh_l90: list[int] = field(default_factory=list)
    kpoints_l90: int | None = None
    kpoints_file: str | None = None
    error: str | None = None


# ---------------------------------------------------------------- structures


def read_structure(path: Path):
    """jarvis ``Atoms`` from a CIF (pymatgen's parser) or a POSCAR/CONTCAR/.vasp file
    (jarvis' ``Poscar``); HarnessError ``path: fault`` otherwise."""
    path = Path(path)
    if not path.exists():
        raise HarnessError(f"{path}: no such file")
    if path.is_dir():
        raise HarnessError(f"{path}: is a directory, expected a POSCAR or CIF file")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as err:
        raise HarnessError(f"{path}: cannot read as text ({type(err).__name__})") from None
    if not text.strip():
        raise HarnessError(f"{path}: empty file")
    if path.suffix.lower() in CIF_SUFFIXES:
        return _read_cif(path, text)
    return _read_poscar(path, text)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__


def _read_cif(path: Path, text: str):
    import io

    from jarvis.core.atoms import pmg_to_atoms
    from pymatgen.io.cif import CifParser

    if "_atom_site_" not in text:
        raise HarnessError(f"{path}: no atoms (the CIF has no _atom_site_ loop)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structures = CifParser(io.StringIO(text)).parse_structures(primitive=False, on_error="raise")
    except Exception as err:  # pymatgen raises many types on malformed CIF
        raise HarnessError(f"{path}: cannot read as CIF ({type(err).__name__}: {_one_line(err)})") from None
    if not structures:
        raise HarnessError(f"{path}: no structure (no atoms) in the CIF")
    s = structures[0]
    if not s.is_ordered:
        raise HarnessError(f"{path}: partial occupancies are not supported (give an ordered cell)")
    return pmg_to_atoms(s)


def _read_poscar(path: Path, text: str):
    from jarvis.io.vasp.inputs import Poscar

    try:
        atoms = Poscar.from_string(text).atoms
    except Exception as err:  # jarvis' parser raises IndexError/ValueError/... on malformed input
        if _poscar_has_no_atoms(text):
            raise HarnessError(f"{path}: no atoms (the POSCAR's atom counts are empty or zero)") from None
        raise HarnessError(f"{path}: cannot read as POSCAR ({type(err).__name__}: {_one_line(err)}); "
                           f"CIF files need a .cif suffix") from None
    return atoms


def _poscar_has_no_atoms(text: str) -> bool:
    """The species/count lines (6-7) hold no positive count."""
    lines = text.splitlines()
    if len(lines) < 6:
        return False
    return sum(int(t) for ln in lines[5:7] for t in ln.split() if t.isdigit()) == 0


def vacuum_gap(atoms) -> tuple[int, float]:
    """(lattice axis, Å): the largest empty gap between atom layers along any lattice
    direction, measured perpendicular to the other two vectors (fractional gap ×
    interplanar spacing 1/|b_i|), periodic wrap included."""
    import numpy as np

    lat = np.asarray(atoms.lattice_mat, dtype=float)
    d = 1.0 / np.linalg.norm(np.linalg.inv(lat).T, axis=1)
    f = np.asarray(atoms.frac_coords, dtype=float) % 1.0
    best = (0, 0.0)
    for i in range(3):
        x = np.sort(f[:, i])
        gap = float(np.max(np.diff(np.concatenate([x, [x[0] + 1.0]]))) * d[i])
        if gap > best[1]:
            best = (i, gap)
    return best


def check_structure(atoms, where: str) -> None:
    """Refuse what the bulk models cannot answer: no atoms, unknown elements,
    a degenerate cell, a vacuum (2D/slab) axis."""
    import numpy as np
    from pymatgen.core.periodic_table import Element

    if atoms is None or atoms.num_atoms == 0:
        raise HarnessError(f"{where}: no atoms")
    unknown = sorted({str(e) for e in atoms.elements if not Element.is_valid_symbol(str(e))})
    if unknown:
        raise HarnessError(f"{where}: unknown element(s) {', '.join(unknown)}")
    lat = np.asarray(atoms.lattice_mat, dtype=float)
    if lat.shape != (3, 3) or not np.all(np.isfinite(lat)) or abs(np.linalg.det(lat)) < 1e-6:
        raise HarnessError(f"{where}: degenerate lattice (zero cell volume)")
    if not np.all(np.isfinite(np.asarray(atoms.frac_coords, dtype=float))):
        raise HarnessError(f"{where}: non-finite atom coordinates")
    axis, gap = vacuum_gap(atoms)
    if gap > VACUUM_GAP_A:
        raise HarnessError(f"{where}: looks like a 2D/slab cell: {gap:.1f} Å of vacuum between atom layers along "
                           f"lattice vector {'abc'[axis]} (> {VACUUM_GAP_A:g} Å); the models are for bulk 3D crystals")


# ---------------------------------------------------------------- model


def artifact_path(name: str, cache_dir: Path | None = None) -> Path:
    from harness.runner import artifact_path as _artifact_path

    return _artifact_path(cache_dir or paths.cache_dir(), name)


def default_model(leaderboard_csv: Path | None = None, cache_dir: Path | None = None,
                  models_dir: Path | None = None) -> str:
    """The best-ranked row of leaderboard.csv that is ours (a model folder) and has a
    saved artifact; else DEFAULT_MODEL when it has one; else a HarnessError naming the
    command to run."""
    leaderboard_csv = Path(leaderboard_csv or paths.LEADERBOARD_CSV)
    models_dir = Path(models_dir or paths.MODELS_DIR)
    ours = []
    try:
        with open(leaderboard_csv, newline="", encoding="utf-8") as f:
            ours = [r["model"] for r in csv.DictReader(f)
                    if r.get("kind") != "reference" and (models_dir / r.get("model", "")).is_dir()]
    except (OSError, KeyError, csv.Error):
        pass
    for name in ours + [DEFAULT_MODEL]:
        if artifact_path(name, cache_dir).is_file():
            return name
    best = ours[0] if ours else DEFAULT_MODEL
    raise HarnessError(f"no trained model in {artifact_path('NAME', cache_dir).parent.parent}: run "
                       f"`python -m harness run {best}` (or pass --model NAME of a trained one)")


def load_model(name: str, cache_dir: Path | None = None, models_dir: Path | None = None):
    """The estimator ``harness run NAME`` saved (no retraining). The model module is
    imported first so that its classes unpickle."""
    import joblib

    from harness import registry

    folder = Path(models_dir or paths.MODELS_DIR) / name
    if not folder.is_dir():
        raise HarnessError(f"no model folder {folder}")
    path = artifact_path(name, cache_dir)
    if not path.is_file():
        raise HarnessError(f"no trained model {name} in {path}: run `python -m harness run {name}`")
    registry.read_folder(folder).load_module()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. scikit-learn version notes; a real mismatch fails below
            return joblib.load(path)
    except Exception as err:
        raise HarnessError(f"{path}: cannot load the fitted model ({type(err).__name__}: {_one_line(err)}); "
                           f"rerun `python -m harness run {name}`") from None


def calibration_offset(name: str, results_dir: Path | None = None) -> tuple[float, int]:
    """(q̂, n): the conformal offset from results/<name>/val_predictions.csv.zip, scored
    against the published split's val truth (never the file's own target column)."""
    from harness import conformal
    from harness.benchmark import load_spec, load_split
    from harness.submission import read_csv_zip

    path = Path(results_dir or paths.RESULTS_DIR) / name / "val_predictions.csv.zip"
    if not path.is_file():
        raise HarnessError(f"{path}: missing, so no L90; run `python -m harness run {name}`")
    rows = read_csv_zip(path)
    truth = load_split(load_spec()).targets["val"]
    unknown = [i for i in rows.ids if i not in truth]
    if unknown or len(set(rows.ids)) != len(rows.ids):
        raise HarnessError(f"{path}: ids not unique val ids of the split (e.g. {(unknown or rows.ids)[0]})")
    y = [truth[i] for i in rows.ids]
    return conformal.conformal_offset(y, rows.predictions), len(y)


# ---------------------------------------------------------------- predict


def _ids(files: list[Path]) -> list[str]:
    names = [p.name for p in files]
    return [p.name if names.count(p.name) == 1 else str(p) for p in files]


def _mesh(atoms, length: float) -> list[int]:
    from harness.kpoints import kpoints3d

    return [int(n) for n in kpoints3d(atoms.lattice_mat, length).kpts[0]]


def _safe_name(jid: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", jid).strip("._") or "structure"


def predict_files(files: list[Path], model: str, offset: float | None, kpoints_dir: Path | None = None,
                  kpoints_length: str = "l90", cache_dir: Path | None = None,
                  models_dir: Path | None = None) -> list[Result]:
    import numpy as np
    import pandas as pd

    from harness import conformal
    from harness.kpoints import kpoints3d

    files = [Path(f) for f in files]
    results = [Result(file=str(f), id=i) for f, i in zip(files, _ids(files))]
    good = []
    for f, r in zip(files, results):
        try:
            atoms = read_structure(f)
            check_structure(atoms, str(f))
        except HarnessError as err:
            r.error = str(err)
            continue
        r.formula, r.num_atoms = atoms.composition.reduced_formula, int(atoms.num_atoms)
        good.append((r, atoms))
    if not good:
        return results
    estimator = load_model(model, cache_dir, models_dir)
    X = pd.DataFrame({"formula": [r.formula for r, _ in good], "atoms": [a for _, a in good]},
                     index=pd.Index([r.id for r, _ in good], name="jid"))
    try:
        pred = np.asarray(estimator.predict(X), dtype=float).ravel()
        if len(pred) != len(good):
            raise ValueError(f"{len(pred)} predictions for {len(good)} structures")
    except Exception:  # isolate the structure the model cannot handle
        pred = np.full(len(good), np.nan)
        for k, (r, _) in enumerate(good):
            try:
                pred[k] = float(np.asarray(estimator.predict(X.iloc[[k]]), dtype=float).ravel()[0])
            except Exception as err:
                r.error = f"{r.file}: model {model} failed on this structure ({type(err).__name__}: {_one_line(err)})"
    for (r, atoms), y in zip(good, pred):
        if r.error:
            continue
        if not np.isfinite(y):
            r.error = f"{r.file}: model {model} gave a non-finite length"
            continue
        r.predicted_length = float(y)
        r.mesh = _mesh(atoms, float(y))
        r.kpoints = int(np.prod(r.mesh))
        if offset is not None:
            r.l90 = float(conformal.upper_bound(float(y), offset))
            r.mesh_l90 = _mesh(atoms, r.l90)
            r.kpoints_l90 = int(np.prod(r.mesh_l90))
        if kpoints_dir is not None:
            L = r.l90 if (kpoints_length == "l90" and r.l90 is not None) else float(y)
            out = Path(kpoints_dir) / _safe_name(r.id) / "KPOINTS"
            out.parent.mkdir(parents=True, exist_ok=True)
            kpoints3d(atoms.lattice_mat, L).write_file(str(out))
            r.kpoints_file = str(out)
    return results


def _fmt_mesh(mesh: list[int], n: int | None) -> str:
    return f"{'x'.join(map(str, mesh))} ({n:,})" if mesh else "-"


def render_text(model: str, offset: float | None, n_cal: int, results: list[Result]) -> str:
    from harness import conformal

    ok = [r for r in results if r.error is None]
    head = f"model {model}: "
    if offset is not None:
        head += (f"L90 = floor_{conformal.GRID:g}(L + {offset:.2f} Å), the split-conformal {100 * (1 - conformal.ALPHA):g} % "
                 f"bound calibrated on {n_cal:,} val materials")
    else:
        head += "no L90 (see warning)"
    lines = [head]
    if ok:
        w = max(len("structure"), *(len(r.id) for r in ok))
        wf = max(len("formula"), *(len(r.formula) for r in ok))
        lines.append(f"{'structure':<{w}}  {'formula':<{wf}}  {'L (Å)':>7}  {'mesh (k-points)':<20}  {'L90 (Å)':>7}  mesh (k-points)")
        for r in ok:
            l90 = f"{r.l90:>7g}" if r.l90 is not None else f"{'-':>7}"
            line = (f"{r.id:<{w}}  {r.formula:<{wf}}  {r.predicted_length:>7.1f}  {_fmt_mesh(r.mesh, r.kpoints):<20}  "
                    f"{l90}  {_fmt_mesh(r.mesh_l90, r.kpoints_l90)}")
            if r.kpoints_file:
                line += f"  -> {r.kpoints_file}"
            lines.append(line)
    return "\n".join(lines)


def cmd_predict(args) -> int:
    from harness import conformal

    model = args.model or default_model()
    folder = paths.MODELS_DIR / model
    if not folder.is_dir():
        raise HarnessError(f"no model folder {folder}")
    if not artifact_path(model).is_file():
        raise HarnessError(f"no trained model {model} in {artifact_path(model)}: run `python -m harness run {model}`")
    try:
        offset, n_cal = calibration_offset(model, Path(args.results_dir) if args.results_dir else None)
    except HarnessError as err:
        offset, n_cal = None, 0
        print(f"warning: {err}", file=sys.stderr)
    results = predict_files([Path(f) for f in args.files], model, offset,
                            kpoints_dir=Path(args.kpoints_dir) if args.kpoints_dir else None,
                            kpoints_length=args.kpoints_length)
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"error: {r.error}", file=sys.stderr)
    if args.json:
        doc = {"model": model,
               "l90": None if offset is None else {"offset": offset, "alpha": conformal.ALPHA, "grid": conformal.GRID,
                                                   "n_calibration": n_cal},
               "structures": [asdict(r) for r in results]}
        print(json.dumps(doc, indent=2))
    else:
        print(render_text(model, offset, n_cal, results))
    if failed:
        print(f"{len(failed)} of {len(results)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


def add_parser(sub) -> None:
    """Register ``predict`` on cli.py's subparsers."""
    p = sub.add_parser(
        "predict", help="k-point length, safe L90 and k-meshes for POSCAR/CIF files (a model trained by `run`)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Predict the converged k-point length L of each structure with a model trained by\n"
        "`python -m harness run NAME` (its saved artifact; nothing is retrained), its safe length L90\n"
        "(split-conformal 90 % upper bound calibrated on the model's val predictions, floored to the\n"
        "5 Å grid), and the Gamma-centred mesh each gives (jarvis Kpoints3D().automatic_length_mesh).\n\n"
        "Files: *.cif / *.mcif are read as CIF (pymatgen), anything else as POSCAR/CONTCAR (jarvis-tools).\n"
        "Refused with a one-line error each, the other files still processed, exit 1: a missing or\n"
        "unreadable file, no atoms, unknown elements, a 2D/slab cell (an empty gap > "
        f"{VACUUM_GAP_A:g} Å between atom\nlayers along a lattice vector).")
    p.add_argument("files", nargs="+", metavar="FILE", help="POSCAR/CONTCAR/.vasp or .cif files")
    p.add_argument("--model", help="trained model name (default: the best-ranked model of leaderboard.csv that has a saved "
                   f"artifact under $KSPACING_CACHE_DIR/artifacts/, else {DEFAULT_MODEL})")
    p.add_argument("--kpoints-dir", metavar="DIR", help="write DIR/<file name>/KPOINTS (VASP, Gamma-centred) per structure")
    p.add_argument("--kpoints-length", choices=["l90", "predicted"], default="l90",
                   help="which length the KPOINTS files use (default l90, the safe one)")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--results-dir", help="where results/<model>/val_predictions.csv.zip is read (default: results/)")
    p.set_defaults(func=cmd_predict)
