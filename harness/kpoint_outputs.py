"""k-point meshes in the formats DFT codes read, and the files ``predict`` writes.

Every mesh is Gamma-centred (jarvis' ``automatic_length_mesh``), no shift:

* VASP ``KPOINTS``: the automatic scheme (``0`` / ``Gamma`` / ``n1 n2 n3`` / ``0 0 0``);
* Quantum ESPRESSO: the ``K_POINTS automatic`` card, ``n1 n2 n3 0 0 0`` (0: unshifted,
  so Γ is on the mesh);
* ASE: ``kpts = {"size": [n1, n2, n3], "gamma": True}``, accepted by every ASE calculator
  (``Vasp(kpts=...)``, ``Espresso(kpts=...)``, GPAW, ...);
* JSON: the whole prediction record.

Output paths (``plan``): with ``out_dir``, each input file maps to
``out_dir/<its path relative to the current folder>/`` (a file outside it: its whole
path; plus ``<block>/`` for a block of a multi-block CIF), so ``runs/Si/conv/POSCAR`` and
``runs/Si_conv/POSCAR`` get different folders whatever else is given; with
``next_to_input``, the input's own folder. A path that two
structures would share is refused for both, and an existing file is never overwritten
unless ``overwrite``. Files are written atomically.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

FORMATS = ("vasp", "qe", "ase", "json")
FILE_NAMES = {"vasp": "KPOINTS", "qe": "K_POINTS.pw", "ase": "kpts.json", "json": "kspacing.json"}


def _mesh3(mesh) -> list[int]:
    m = [int(n) for n in mesh]
    if len(m) != 3 or min(m) < 1:
        raise HarnessError(f"not a k-point mesh: {mesh!r}")
    return m


def vasp_kpoints(mesh, comment: str = "Gamma-centred mesh") -> str:
    """A VASP KPOINTS file: automatic, Gamma-centred, no shift."""
    n = _mesh3(mesh)
    comment = " ".join(str(comment).split()) or "Gamma-centred mesh"
    return f"{comment}\n0\nGamma\n{n[0]} {n[1]} {n[2]}\n0 0 0\n"


def qe_card(mesh) -> str:
    """Quantum ESPRESSO (pw.x) ``K_POINTS automatic`` card, unshifted (Γ on the mesh)."""
    n = _mesh3(mesh)
    return f"K_POINTS automatic\n  {n[0]} {n[1]} {n[2]}  0 0 0\n"


def ase_kpts(mesh) -> dict:
    """ASE calculators' ``kpts`` argument: a Gamma-centred Monkhorst-Pack size."""
    return {"size": _mesh3(mesh), "gamma": True}


def render(fmt: str, pred, which: str = "safe") -> str:
    """Text of one output file for a prediction (``harness.api.KpointPrediction``)."""
    if fmt == "json":
        return json.dumps(pred.to_dict(), indent=2) + "\n"
    mesh, length = pred.mesh_for(which)
    if fmt == "vasp":
        what = "Gamma only (0D)" if pred.dimensionality == 0 else (
            f"{'safe ' if which == 'safe' else 'UNCALIBRATED predicted '}k-point length {length:g} A")
        return vasp_kpoints(mesh, f"{pred.id}: {what}, kspacing-bench {pred.model or ''}")
    if fmt == "qe":
        return qe_card(mesh)
    if fmt == "ase":
        return json.dumps(ase_kpts(mesh)) + "\n"
    raise HarnessError(f"unknown output format {fmt!r} (known: {', '.join(FORMATS)})")


# ---------------------------------------------------------------- paths


_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,@-]+")


def safe_component(name: str) -> str:
    return _UNSAFE.sub("_", str(name)).strip("._") or "structure"


def _name(pred) -> str:
    """The structure as error lines name it: its file (``file#block``), else its id."""
    if not pred.source:
        return pred.id
    return pred.source if pred.block is None else f"{pred.source}#{pred.block}"


def _key(path: Path) -> str:
    """Identity of a path on this machine (symlinked folders and ``..`` resolved)."""
    return os.path.normcase(os.path.realpath(path))


def relative_input_path(source: str) -> Path:
    """Where an input's outputs go under an output folder: its path relative to the
    current folder (symlinks and ``..`` resolved), or for a file outside it, its whole
    absolute path; so the mapping never depends on which other files are given."""
    path = Path(os.path.realpath(Path(source).parent)) / Path(source).name
    try:
        return path.relative_to(os.path.realpath(Path.cwd()))
    except ValueError:
        return path.relative_to(path.anchor)


def folders(preds, out_dir: Path | None = None, next_to_input: bool = False) -> list[Path | None]:
    """The folder each prediction's files go to (None: nothing to write, or an error
    recorded on the prediction)."""
    if (out_dir is None) == (not next_to_input):
        raise HarnessError("give exactly one of an output folder or next-to-input")
    out = []
    for p in preds:
        if p.error:
            out.append(None)
            continue
        if next_to_input:
            if not p.source:
                p.write_error = f"{p.id}: not read from a file, so there is no input folder to write next to"
                out.append(None)
                continue
            out.append(Path(p.source).parent)
            continue
        if p.source:
            folder = Path(out_dir).joinpath(*relative_input_path(p.source).parts)
        else:
            folder = Path(out_dir) / safe_component(p.id)
        if p.block is not None:
            folder = folder / safe_component(p.block)
        out.append(folder)
    return out


@dataclass
class Plan:
    """Files to write per prediction index, after collision and existence checks."""

    files: dict[int, dict[str, Path]] = field(default_factory=dict)
    # With --overwrite, earlier outputs of formats not asked for this time, which would
    # disagree with the new ones: removed under --out-dir (folders this tool made, one per
    # input), only named next to the input (the user's own run folder).
    stale: dict[int, list[Path]] = field(default_factory=dict)
    remove_stale: bool = False


def plan(preds, formats, out_dir: Path | None = None, next_to_input: bool = False, overwrite: bool = False) -> Plan:
    """Target files of every prediction; a collision (two predictions, one path) or an
    existing file (unless ``overwrite``) sets that prediction's ``write_error`` and drops all
    of its files (a structure gets all its files or none)."""
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise HarnessError(f"unknown output format(s) {', '.join(unknown)} (known: {', '.join(FORMATS)})")
    targets: dict[int, dict[str, Path]] = {}
    for k, folder in enumerate(folders(preds, out_dir, next_to_input)):
        if folder is not None:
            targets[k] = {f: folder / FILE_NAMES[f] for f in formats}
    owners: dict[str, tuple[Path, list[int]]] = {}
    for k, files in targets.items():
        for path in files.values():
            owners.setdefault(_key(path), (path, []))[1].append(k)
    for path, ks in owners.values():
        if len(ks) > 1:
            for k in ks:
                others = ", ".join(_name(preds[j]) for j in ks if j != k)
                preds[k].write_error = preds[k].write_error or (
                    f"{_name(preds[k])}: output {path} would also be written for {others}: refused for both, nothing "
                    f"written (--out-dir keeps each input's folder path apart)")
    result = Plan()
    for k, files in targets.items():
        if preds[k].error or preds[k].write_error:
            continue
        existing = [p for p in files.values() if p.exists()]
        if existing and not overwrite:
            preds[k].write_error = (f"{_name(preds[k])}: {existing[0]} exists: refused, never overwritten (nothing written for "
                              f"this structure; remove it or pass --overwrite)")
            continue
        if any(p.is_dir() for p in existing):
            preds[k].write_error = f"{_name(preds[k])}: {next(p for p in existing if p.is_dir())} is a folder: cannot write there"
            continue
        result.files[k] = files
        if overwrite:
            folder = next(iter(files.values())).parent
            old = [folder / FILE_NAMES[f] for f in FORMATS if f not in files and (folder / FILE_NAMES[f]).is_file()]
            if old:
                result.stale[k] = old
    result.remove_stale = out_dir is not None
    return result


def check_writable(folder: Path) -> None:
    """HarnessError (one line) unless files can be created under ``folder``."""
    import tempfile

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".kspacing-probe-"):
            pass
    except OSError as err:
        raise HarnessError(f"cannot write to {folder} ({type(err).__name__}: {err.strerror or err}); "
                           f"nothing was written") from None


def write(preds, the_plan: Plan, which: str = "safe") -> int:
    """Write the planned files (atomically); a failure sets that prediction's write_error.
    Returns the number of files written; each prediction's ``files`` lists its own."""
    from harness import atomic

    n = 0
    for k, files in the_plan.files.items():
        p = preds[k]
        p.files = [str(path) for path in files.values()]  # what kspacing.json lists
        try:
            texts = {fmt: render(fmt, p, which) for fmt in files}
        except HarnessError as err:
            p.write_error = str(err) if str(err).startswith(f"{p.id}: ") else f"{_name(p)}: {err}"
            p.files = []  # nothing was written
            continue
        done = []
        try:
            for fmt, path in files.items():
                atomic.write_text(path, texts[fmt])
                done.append(str(path))
        except OSError as err:
            p.write_error = (f"{_name(p)}: cannot write {path} ({type(err).__name__}: {err.strerror or err})"
                       + (f"; written before the failure: {', '.join(done)}" if done else ""))
        p.files = done
        n += len(done)
        if the_plan.remove_stale and not p.write_error:
            for path in the_plan.stale.get(k, []):
                path.unlink(missing_ok=True)
    return n


def stale_warnings(preds, the_plan: Plan) -> list[str]:
    """One line per prediction whose folder keeps earlier outputs of other formats
    (next to the input, where they are not removed)."""
    if the_plan.remove_stale:
        return []
    return [f"{_name(preds[k])}: {', '.join(str(x) for x in old)} from an earlier run kept (not in --format); they may "
            f"disagree with the new files" for k, old in the_plan.stale.items() if not preds[k].write_error]
