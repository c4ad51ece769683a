"""k-point meshes from a k-point length L, exactly as jarvis-tools builds them
(``Kpoints3D().automatic_length_mesh``: n_i = int(max(1, L·|b_i| + 0.5)), b_i the
crystallographic reciprocal vectors, no 2π), and ``results/lattice.json``: the
reciprocal lattice lengths of the covered val/test ids recorded by ``harness run``,
so that the leaderboard counts k-points without loading any structure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from numpy import linalg as LA

from harness import atomic
from harness.errors import HarnessError
from harness.paths import RESULTS_DIR

LATTICE_FILE = "lattice.json"
LATTICE_SPLITS = ("val", "test")


def reciprocal_lengths(lattice_mat) -> list[float]:
    """|b_1|, |b_2|, |b_3| (1/Å) computed with jarvis' own calls, so that meshes
    built from them are bit-identical to ``automatic_length_mesh``."""
    from jarvis.core.lattice import Lattice

    inv_lat = Lattice(lattice_mat=lattice_mat).reciprocal_lattice_crystallographic().matrix
    return [float(LA.norm(np.array(inv_lat[i]))) for i in range(3)]


def mesh(recip, length) -> np.ndarray:
    """Mesh(es) for reciprocal lengths ``recip`` (shape (3,) or (n, 3)) and length(s)
    ``length`` (scalar or (n,)): jarvis' int(max(1, L·b + 0.5)), vectorised
    (float64 products and truncation toward zero, as Python's float/int)."""
    b = np.asarray(recip, dtype=float)
    L = np.asarray(length, dtype=float)
    if b.ndim == 2:
        L = L.reshape(-1, 1) if L.ndim else L
    return np.maximum(1.0, L * b + 0.5).astype(np.int64)


def kpoint_count(recip, length) -> np.ndarray:
    """Number of k-points n1·n2·n3 of each mesh (before symmetry reduction)."""
    return mesh(recip, length).prod(axis=-1)


def kpoints3d(lattice_mat, length):
    """The jarvis ``Kpoints3D`` object for ``length`` (writes a VASP KPOINTS file)."""
    from jarvis.core.kpoints import Kpoints3D

    return Kpoints3D().automatic_length_mesh(lattice_mat=lattice_mat, length=float(length))


def lattice_json(train_ids: list[str], recip: dict[str, dict[str, list[float]]]) -> str:
    """Deterministic text of lattice.json, one id per line (readable diffs). Floats are
    written with repr, which round-trips exactly."""
    lines = ["{",
             '  "about": "reciprocal lattice lengths |b_i| (1/A, no 2pi) of the covered val/test ids, '
             'for k-point counts; covered train ids, for the fixed train-P90 length. Written by `python -m harness run`.",',
             f'  "train_ids": {json.dumps(list(train_ids))},',
             '  "reciprocal_lengths": {']
    for k, split in enumerate(LATTICE_SPLITS):
        lines.append(f'    "{split}": {{')
        items = list(recip[split].items())
        for j, (jid, b) in enumerate(items):
            lines.append(f"      {json.dumps(jid)}: [{', '.join(repr(float(x)) for x in b)}]" + ("," if j < len(items) - 1 else ""))
        lines.append("    }" + ("," if k < len(LATTICE_SPLITS) - 1 else ""))
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def write_lattice(task, results_dir: Path = RESULTS_DIR) -> Path:
    """Record the covered val/test ids' reciprocal lengths (and the covered train ids);
    the file is rewritten only when its content changes."""
    recip = {s: {jid: reciprocal_lengths(task.materials.at[jid, "atoms"].lattice_mat) for jid in task.ids(s)}
             for s in LATTICE_SPLITS}
    path = Path(results_dir) / LATTICE_FILE
    text = lattice_json(task.ids("train"), recip)
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        atomic.write_text(path, text)
    return path


def read_lattice(results_dir: Path = RESULTS_DIR) -> dict | None:
    """{"train_ids": [...], "val": {id: np.array(3)}, "test": {...}}, or None when the
    file is absent (results from before it existed)."""
    path = Path(results_dir) / LATTICE_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        out = {"train_ids": [str(i) for i in raw["train_ids"]]}
        for s in LATTICE_SPLITS:
            out[s] = {str(k): np.asarray(v, dtype=float).reshape(3) for k, v in raw["reciprocal_lengths"][s].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise HarnessError(f"{path}: malformed ({type(err).__name__}: {err}); rerun `python -m harness run`") from None
    return out
