"""k-point meshes from a k-point length L, exactly as jarvis-tools builds them
(``Kpoints3D().automatic_length_mesh``: n_i = int(max(1, L·|b_i| + 0.5)), b_i the
crystallographic reciprocal vectors, no 2π). The one definition of the mesh: every
other module calls ``mesh`` / ``kpoint_count`` here."""

from __future__ import annotations

import numpy as np
from numpy import linalg as LA

GRID = 5.0  # Å: JARVIS steps the converged length by 5 Å, so every target is a multiple of GRID


def reciprocal_lengths(lattice_mat) -> list[float]:
    """|b_1|, |b_2|, |b_3| (1/Å) computed with jarvis' own calls, so that meshes
    built from them are bit-identical to ``automatic_length_mesh``."""
    from jarvis.core.lattice import Lattice

    inv_lat = Lattice(lattice_mat=lattice_mat).reciprocal_lattice_crystallographic().matrix
    return [float(LA.norm(np.array(inv_lat[i]))) for i in range(3)]


def mesh(recip, length) -> np.ndarray:
    """Mesh(es) for reciprocal lengths ``recip`` (shape (3,) or (n, 3)) and length(s)
    ``length`` (scalar or (n,)): jarvis' int(max(1, L·b + 0.5)), vectorised
    (float64 products and truncation toward zero, as Python's float/int). n lengths give
    n meshes: of n cells, or of one cell (``recip`` of shape (3,)) at each length."""
    b = np.asarray(recip, dtype=float)
    L = np.asarray(length, dtype=float)
    if L.ndim == 1:
        L = L.reshape(-1, 1)
    return np.maximum(1.0, L * b + 0.5).astype(np.int64)


def kpoint_count(recip, length) -> np.ndarray:
    """Number of k-points n1·n2·n3 of each mesh (before symmetry reduction)."""
    return mesh(recip, length).prod(axis=-1)


def kpoints3d(lattice_mat, length):
    """The jarvis ``Kpoints3D`` object for ``length`` (writes a VASP KPOINTS file)."""
    from jarvis.core.kpoints import Kpoints3D

    return Kpoints3D().automatic_length_mesh(lattice_mat=lattice_mat, length=float(length))
