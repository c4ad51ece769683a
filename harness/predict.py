"""``kspacing predict FILE...`` (= ``python -m harness predict``): the k-point length, its
calibrated safe bound and the k-meshes they give, for POSCAR / CIF files, with a model
trained by ``harness run``; optionally written as VASP KPOINTS, Quantum ESPRESSO
``K_POINTS`` cards, ASE ``kpts`` and JSON files.

The work is done by ``harness.api`` (reading and checks: ``harness.structure_io``;
file formats and output paths: ``harness.kpoint_outputs``); this module parses
arguments and prints. Every bad input is a one-line error naming the file; the other
files are still processed and the exit code is 1 if any failed. Heavy imports stay
inside functions: cli.py imports this module to register the subcommand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness import structure_io as sio
from harness.api import DEFAULT_ALPHA
from harness.errors import HarnessError
from harness.kpoint_outputs import FILE_NAMES, FORMATS

VACUUM_GAP_A = sio.VACUUM_GAP_A
vacuum_gap = sio.vacuum_gap


# ---------------------------------------------------------------- output


def _level(alpha: float) -> str:
    return f"{100 * (1 - alpha):g}"


def _fmt_mesh(mesh, n) -> str:
    return f"{'x'.join(map(str, mesh))} ({n:,})" if mesh else "-"


def render_text(header: str, preds) -> str:
    ok = [p for p in preds if p.ok]
    lines = [header] if header else []
    if not ok:
        return "\n".join(lines)
    level = _level(ok[0].alpha)
    w = max(len("structure"), *(len(p.id) for p in ok))
    wf = max(len("formula"), *(len(p.formula or "") for p in ok))
    lines.append(f"{'structure':<{w}}  {'formula':<{wf}}  {'L (Å)':>7}  {'mesh (k-points)':<20}  {f'L{level} (Å)':>8}  "
                 f"mesh (k-points)")
    notes = []
    for p in ok:
        if p.dimensionality == 0:
            line = f"{p.id:<{w}}  {p.formula:<{wf}}  {'0D':>7}  {'1x1x1 (1) Γ-only':<20}  {'-':>8}  1x1x1 (1)"
        else:
            safe = f"{p.safe_length:>8g}" if p.safe_length is not None else f"{'-':>8}"
            line = (f"{p.id:<{w}}  {p.formula:<{wf}}  {p.predicted_length:>7.1f}  {_fmt_mesh(p.mesh, p.kpoints):<20}  "
                    f"{safe}  {_fmt_mesh(p.safe_mesh, p.safe_kpoints)}")
        shown = [c for c in p.flags if c != "uncalibrated"]
        if shown:
            line += f"  [{', '.join(shown)}]"
        if p.files:
            line += f"  -> {', '.join(p.files)}"
        lines.append(line)
        notes += [f"  {p.id}: {p.flags[c]}" for c in shown]
    if notes:
        lines += ["flags (where the input lies outside the training data, or how it was read):", *notes]
    return "\n".join(lines)


def _formats(values: list[str] | None) -> list[str]:
    out = []
    for v in values or ["vasp"]:
        for f in v.split(","):
            f = f.strip().lower()
            if f not in FORMATS:
                raise HarnessError(f"--format {f}: one of {', '.join(FORMATS)}")
            out.append(f)
    return list(dict.fromkeys(out))


def cmd_predict(args) -> int:
    from harness import api
    from harness import kpoint_outputs as ko

    progress = not args.quiet
    writing = args.out_dir is not None or args.next_to_input
    formats = _formats(args.format)
    which = "safe" if args.kpoints_length in ("safe", "l90") else "predicted"
    if not 0 < args.alpha < 1:
        raise HarnessError(f"--alpha {args.alpha}: must be between 0 and 1 (0.1: a 90 % bound)")
    items = api.collect([Path(f) for f in args.files], max_atoms=args.max_atoms, progress=progress)
    fitted = None
    if any(it.error is None and it.dimensionality == 3 for it in items):
        fitted = api.load_model(args.model, results_dir=Path(args.results_dir) if args.results_dir else None,
                                progress=progress)
    preds = api.predict_items(items, fitted, args.alpha, progress, per_group=not args.marginal)

    level = _level(args.alpha)
    offset, problem = None, None
    header = ""
    if fitted is not None:
        from harness import conformal

        try:
            offset = fitted.offset(args.alpha) if fitted.calibrated else None
            problem = None if fitted.calibrated else (fitted.problem or f"{fitted.name}: no calibration data")
        except HarnessError as err:
            problem = str(err)
        if offset is None:
            header = f"model {fitted.name}: no L{level} ({problem})"
            print(f"warning: {problem}", file=sys.stderr)
        else:
            grouped = any(p.bound == "per-group" for p in preds)
            header = (f"model {fitted.name}: L{level} = the conformal {level} % bound per group (metal / cell size / "
                      f"crystal system, cost-aware; harness/group_bound.py) calibrated on {fitted.n_cal:,} val materials"
                      if grouped else
                      f"model {fitted.name}: L{level} = floor_{conformal.GRID:g}(L + {offset:.2f} Å), "
                      f"the split-conformal {level} % bound calibrated on {fitted.n_cal:,} val materials")
    uncalibrated = fitted is not None and offset is None

    write_error = None
    if writing and any(p.ok for p in preds):
        if uncalibrated and not args.allow_uncalibrated:
            write_error = (f"model {fitted.name} has no calibrated safe length, so no files were written "
                           f"(a raw prediction is below the converged length for many materials); pass "
                           f"--allow-uncalibrated to write meshes of the predicted length anyway")
        else:
            if uncalibrated:
                which = "predicted"
            try:
                if args.out_dir is not None:
                    ko.check_writable(Path(args.out_dir))
                plan = ko.plan(preds, formats, Path(args.out_dir) if args.out_dir else None, args.next_to_input,
                               args.overwrite)
                ko.write(preds, plan, which)
                for line in ko.stale_warnings(preds, plan):
                    print(f"warning: {line}", file=sys.stderr)
            except HarnessError as err:
                write_error = str(err)

    failed = [p for p in preds if p.error or p.write_error]
    for p in failed:
        print(f"error: {p.error or p.write_error}", file=sys.stderr)
    if write_error:
        print(f"error: {write_error}", file=sys.stderr)
    if args.json:
        cal = None
        if offset is not None:
            from harness import conformal

            cal = {"offset": offset, "alpha": args.alpha, "grid": conformal.GRID, "n_calibration": fitted.n_cal,
                   "bound": "per-group" if any(p.bound == "per-group" for p in preds) else "marginal"}
        doc = {"model": None if fitted is None else fitted.name, "calibration": cal,
               "structures": [p.to_dict() for p in preds]}
        print(json.dumps(doc, indent=2))
    else:
        print(render_text(header, preds))
    if failed:
        print(f"{len(failed)} of {len(preds)} structure(s) failed", file=sys.stderr)
    return 1 if failed or write_error else 0


def add_parser(sub) -> None:
    """Register ``predict`` on cli.py's subparsers."""
    p = sub.add_parser(
        "predict", help="k-point length, safe bound and k-meshes for POSCAR/CIF files; KPOINTS / QE / ASE / JSON files",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Predict the converged k-point length L of each structure with a model trained by\n"
        "`python -m harness run NAME` (its saved artifact; nothing is retrained), its safe length L90\n"
        "(split-conformal upper bound at level 1 - alpha calibrated on the model's val predictions,\n"
        "floored to the 5 Å grid), and the Gamma-centred mesh each gives (n_i = max(1, int(L·|b_i| + 0.5))).\n\n"
        "Files: POSCAR/CONTCAR (VASP 5/6; VASP 4 when the comment line names the species; a negative\n"
        "scale is the cell volume) or CIF (by suffix or content; each data block with atoms is one\n"
        "structure, id FILE#BLOCK).\n"
        "Refused with a one-line error each, the other structures still processed, exit 1: a missing,\n"
        f"unreadable or > {sio.MAX_FILE_BYTES // 2**20} MiB file, no atoms, unknown elements (or beyond Lr), more than "
        "--max-atoms atoms,\npartial occupancies, a degenerate cell (< "
        f"{sio.MIN_VOLUME_PER_ATOM_A3:g} Å³ per atom, lattice planes < {sio.MIN_PLANE_SPACING_A:g} Å apart), "
        f"atoms closer\nthan {sio.MIN_DISTANCE_A:g} Å, a 2D/1D cell (> {sio.VACUUM_GAP_A:g} Å of vacuum along one or "
        "two lattice vectors), a mesh\nbeyond "
        f"{sio.MAX_MESH_AXIS} per axis or {sio.MAX_KPOINTS:,} k-points. A molecule in a box (≥ {sio.MOLECULE_GAP_A:g} Å "
        "of vacuum along all three\nvectors) gets the Γ-only mesh 1x1x1 without a model.\n"
        f"Flagged, still predicted: inputs outside the training data (out_of_domain, ...), and a skewed\n"
        f"(unreduced) cell whose mesh has ≥ {sio.UNREDUCED_KPOINT_RATIO:g}x the k-points of its Niggli-reduced "
        "cell's at the same length\n(unreduced_cell: the note names the reduced mesh; the mesh stays on your cell), and "
        f"a crystal within {sio.NEAR_SYMPREC:g} Å of more\nsymmetry than {sio.CANONICAL_SYMPREC:g} Å finds (near_symmetry: "
        "relaxation noise; the larger safe length of the two readings).\n\n"
        "Output files (--out-dir DIR or --next-to-input, formats by --format): "
        + ", ".join(f"{f} -> {n}" for f, n in FILE_NAMES.items()) + ".\n"
        "With --out-dir, each input keeps its path relative to the current folder (a file outside it:\n"
        "its whole path): runs/Si/POSCAR -> DIR/runs/Si/POSCAR/KPOINTS (+ /<block>/ for a multi-block CIF).\n"
        "Two structures mapping to one file are both refused; existing files are never overwritten\n"
        "without --overwrite. A model without calibration writes nothing unless --allow-uncalibrated.")
    p.add_argument("files", nargs="+", metavar="FILE", help="POSCAR/CONTCAR/.vasp or CIF files")
    p.add_argument("--model", help="trained model name (default: the best-ranked model of leaderboard.csv that has a saved "
                   "artifact under $KSPACING_CACHE_DIR, else rf_composition)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help="the safe length covers the converged one for a fraction 1 - ALPHA of materials (default 0.1)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out-dir", "--kpoints-dir", dest="out_dir", metavar="DIR",
                       help="write the output files under DIR/<input path>/ (see above)")
    where.add_argument("--next-to-input", action="store_true",
                       help="write the output files in each input file's own folder (e.g. KPOINTS next to POSCAR)")
    p.add_argument("--format", action="append", metavar="FMT",
                   help=f"output file format(s), repeatable or comma-separated: {', '.join(FORMATS)} (default vasp)")
    p.add_argument("--marginal", action="store_true",
                   help="the plain L90 (covers 1 - ALPHA of materials on average, about 80 %% of metals) instead of the "
                   "default per-group bound (1 - ALPHA - 0.01 in each of metals / non-metals, small / large cells and "
                   "every crystal system; about 20 %% more k-points)")
    p.add_argument("--kpoints-length", choices=["safe", "predicted", "l90"], default="safe",
                   help="which length the files use (default safe = the calibrated bound; l90 is an alias)")
    p.add_argument("--allow-uncalibrated", action="store_true",
                   help="write files even when the model has no calibration (then with the raw predicted length)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--max-atoms", type=int, default=sio.MAX_ATOMS,
                   help=f"refuse structures with more atoms (default {sio.MAX_ATOMS:,})")
    p.add_argument("--results-dir", help="results folder with the models' run records and val predictions (default: results/)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_predict)
