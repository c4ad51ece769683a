"""Physics features of a crystal structure for k-point convergence models.

Everything here is computed from the structure alone (lattice, positions, species),
so it works on any new POSCAR/CIF. Groups:

* cell: atoms per cell, volume, volume per atom, density, sorted lattice lengths and
  angles, layer/vacuum detection (widest empty slab along each lattice plane family);
* reciprocal lattice: sorted lengths |b_i| of the crystallographic reciprocal lattice
  (no 2*pi, as in ``jarvis.core.kpoints.Kpoints3D.automatic_length_mesh``), their
  mean, geometric mean and anisotropy;
* mesh grid: the k-point mesh n_i = max(1, int(L*|b_i| + 0.5)) JARVIS would use at
  length L: k-points per cell and per reciprocal atom at a few lengths, and for every
  L on the 5-step grid JARVIS' convergence loop walks, whether the mesh changes from
  L-5 to L (converged lengths sit almost only on such steps);
* symmetry (spglib): space group number, crystal system, number of operations,
  cell / primitive cell size ratio, number of symmetry-distinct sites;
* packing: covalent-radius packing fraction, shortest interatomic distance (absolute
  and over the sum of the two covalent radii), mean nearest-neighbour distance.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import spglib
from pymatgen.core.periodic_table import Element

from harness.kpoints import GRID, mesh
from harness.structure_io import canonical_cell, slab_gaps
from modellib.features.frame_cache import cached_rows
from modellib.features.frame_cache import structure_key  # one content hash for every feature cache

FEATURE_VERSION = 1  # bump when a feature's definition changes

MESH_STEP = int(GRID)  # the mesh-change flags are on JARVIS' 5 Å length grid
CHANGE_GRID = tuple(range(10, 105, MESH_STEP))  # L values whose "mesh changed from L-5" flag is a feature
KPT_LENGTHS = (15, 20, 25, 30, 40, 55)
SYMPREC = 0.01  # pymatgen SpacegroupAnalyzer's default

_CRYSTAL_SYSTEMS = ((2, 1), (15, 2), (74, 3), (142, 4), (167, 5), (194, 6), (230, 7))


def reciprocal_lengths(lattice_mat) -> np.ndarray:
    """|b_i| of the crystallographic reciprocal lattice (rows of inv(A).T), unsorted,
    in 1/Angstrom: the lengths Kpoints3D.automatic_length_mesh multiplies by L."""
    m = np.asarray(lattice_mat, dtype=float)
    return np.linalg.norm(np.linalg.inv(m).T, axis=1)


def mesh_change_lengths(recip: np.ndarray, lo: int = 10, hi: int = 150, step: int = MESH_STEP) -> np.ndarray:
    """Grid lengths L in [lo, hi] (multiples of ``step``) whose mesh differs from the mesh at L - step."""
    grid = np.arange(lo, hi + 1, step)
    cur, prev = mesh(recip, grid), mesh(recip, grid - step)
    return grid[(cur != prev).any(axis=1)]


def _crystal_system(sg: int) -> int:
    for top, code in _CRYSTAL_SYSTEMS:
        if sg <= top:
            return code
    return 0


_COV_RADIUS: dict[int, float] = {}


def _cov_radius(z: int) -> float:
    if z not in _COV_RADIUS:
        el = Element.from_Z(z)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = el.atomic_radius_calculated or el.atomic_radius or 1.5
        _COV_RADIUS[z] = float(r)
    return _COV_RADIUS[z]


def _min_image_distances(lat: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """(n, n) shortest periodic distances (self: shortest lattice vector), via the 27 nearest images.
    O(n^2) memory: the reference ``_neighbour_stats`` is checked against (tests), not used for features."""
    d = frac[:, None, :] - frac[None, :, :]
    d -= np.round(d)
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)
    best = np.full(d.shape[:2], np.inf)
    for s in shifts:
        v = (d + s) @ lat
        r = np.sqrt((v * v).sum(-1))
        best = np.minimum(best, np.where(r > 1e-8, r, np.inf))
    return best


NEIGHBOUR_R0 = 3.5  # Å: first search radius (covers the nearest neighbour of almost every atom)
_SAME_SITE = 1e-8  # Å: pairs closer than this are the atom itself (as in _min_image_distances)


def _neighbour_stats(lat: np.ndarray, frac: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, float]:
    """(nn, ratio): each atom's nearest-neighbour distance (its own periodic images
    included) and the min over atom pairs of distance / (r_i + r_j), exactly as the
    minima of the (n, n) ``_min_image_distances`` (FEATURE_VERSION 1: the trained models
    saw these values), but from a periodic neighbour list (pymatgen's
    ``find_points_in_spheres``): memory and time linear in the number of atoms.

    Same images: ``_min_image_distances`` looks at atom j's images t with
    ||t - round(f_i - f_j)||_inf <= 1 (27 of them), which in a skewed cell can miss the
    true nearest one; neighbour pairs outside that set are dropped, so the values are
    identical (all 17,279 offline structures: every value within 1e-14).

    Exactness of the cut-off: an atom is finished once its search radius R_i found a
    neighbour and R_i >= ratio * (r_i + r_max): every pair beyond R_i then has a larger
    ratio than the current minimum. Unfinished atoms are searched again with the radius
    they need (doubled while an atom has no neighbour yet)."""
    from pymatgen.optimization.neighbors import find_points_in_spheres

    lat = np.ascontiguousarray(lat, dtype=float)
    frac = np.asarray(frac, dtype=float)
    cart = np.ascontiguousarray(frac @ lat)
    n = len(cart)
    nn = np.full(n, np.inf)
    radius = np.zeros(n)  # radius each atom was last searched with
    ratio = np.inf
    r_max = float(radii.max())
    pbc = np.ones(3, dtype=np.int64)
    todo, R = np.arange(n), NEIGHBOUR_R0
    while len(todo):
        c, p, img, dist = find_points_in_spheres(cart, np.ascontiguousarray(cart[todo]), r=R, pbc=pbc, lattice=lat,
                                                 tol=_SAME_SITE)
        c = todo[c]
        # image t of atom p seen from atom c: the 27 of _min_image_distances only
        same = np.abs(img - np.round(frac[c] - frac[p])).max(axis=1) <= 1.5
        keep = same & (dist > _SAME_SITE)
        c, p, dist = c[keep], p[keep], dist[keep]
        np.minimum.at(nn, c, dist)
        if len(dist):
            ratio = min(ratio, float((dist / (radii[c] + radii[p])).min()))
        radius[todo] = R
        need = np.where(np.isfinite(nn), ratio * (radii + r_max), np.inf)
        todo = np.flatnonzero(radius < need)
        if len(todo):  # the radius the finished-by-ratio atoms need; double it for atoms with no neighbour yet
            finite = np.isfinite(need[todo])
            R = max(float(need[todo][finite].max(initial=0.0)), 0.0 if finite.all() else 2 * R)
    return nn, ratio


def structure_physics(atoms) -> dict[str, float]:
    """Physics features of one jarvis ``Atoms``."""
    lat = np.asarray(atoms.lattice_mat, dtype=float)
    frac = np.asarray(atoms.frac_coords, dtype=float)
    z = np.asarray(atoms.atomic_numbers, dtype=int)
    n = len(z)
    vol = abs(float(np.linalg.det(lat)))
    mass = float(sum(Element.from_Z(int(k)).atomic_mass for k in z))
    f: dict[str, float] = {
        "n_atoms": n,
        "log_n_atoms": np.log(n),
        "volume": vol,
        "vol_per_atom": vol / n,
        "density": mass / vol * 1.66053906660,  # amu/A^3 -> g/cm^3
        "mass_per_atom": mass / n,
        "n_species": len(set(z.tolist())),
    }
    abc = np.linalg.norm(lat, axis=1)
    for k, v in zip(("a_min", "a_mid", "a_max"), np.sort(abc)):
        f[k] = v
    cos = []
    for i, j in ((1, 2), (0, 2), (0, 1)):
        cos.append(float(np.dot(lat[i], lat[j]) / (abc[i] * abc[j])))
    ang = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    for k, v in zip(("angle_min", "angle_mid", "angle_max"), np.sort(ang)):
        f[k] = v
    f["max_abs_cos"] = float(np.max(np.abs(cos)))
    f["a_max_over_min"] = abc.max() / abc.min()

    b = reciprocal_lengths(lat)
    bs = np.sort(b)
    f.update({"b_min": bs[0], "b_mid": bs[1], "b_max": bs[2], "b_mean": bs.mean(),
              "b_geo": (1.0 / vol) ** (1 / 3), "b_max_over_min": bs[2] / bs[0], "b_sum": bs.sum()})
    for L in KPT_LENGTHS:
        nk = int(np.prod(mesh(b, L)))
        f[f"log_nkpt_L{L}"] = np.log(nk)
        f[f"log_kppa_L{L}"] = np.log(nk * n)  # k-points per reciprocal atom
    # k-point density actually reached (1 / largest spacing |b_i|/n_i) relative to L
    for L in (20, 30):
        m = mesh(b, L)
        f[f"eff_len_ratio_L{L}"] = float(np.min(m / b)) / L
    changes = set(mesh_change_lengths(b, lo=min(CHANGE_GRID), hi=max(CHANGE_GRID)).tolist())
    for L in CHANGE_GRID:
        f[f"mesh_change_L{L}"] = float(L in changes)
    all_changes = mesh_change_lengths(b, lo=10, hi=150)
    f["n_mesh_changes_le30"] = float((all_changes <= 30).sum())
    f["n_mesh_changes_le60"] = float((all_changes <= 60).sum())
    f["n_mesh_changes_le150"] = float(len(all_changes))

    # symmetry
    try:
        ds = spglib.get_symmetry_dataset((lat, frac, z), symprec=SYMPREC)
    except Exception:
        ds = None
    if ds is not None:
        sg = int(ds.number)
        f["spacegroup"] = sg
        f["crystal_system"] = _crystal_system(sg)
        f["n_sym_ops"] = len(ds.rotations)
        n_prim = max(1, len(set(ds.mapping_to_primitive.tolist())))
        f["cell_over_primitive"] = n / n_prim
        f["n_sym_distinct_sites"] = len(set(ds.equivalent_atoms.tolist()))
    else:
        for k in ("spacegroup", "crystal_system", "n_sym_ops", "cell_over_primitive", "n_sym_distinct_sites"):
            f[k] = np.nan

    # packing
    r = np.array([_cov_radius(int(k)) for k in z])
    f["packing_fraction"] = float((4 / 3) * np.pi * (r**3).sum() / vol)
    nn, ratio = _neighbour_stats(lat, frac, r)
    f["min_dist"] = float(nn.min())
    f["mean_nn_dist"] = float(nn.mean())
    f["min_dist_over_radii"] = ratio
    f["mean_nn_over_vpa"] = float(nn.mean() / (vol / n) ** (1 / 3))
    gaps = slab_gaps(frac, b)
    f["max_slab_gap"] = float(gaps.max())
    f["max_slab_gap_over_nn"] = float(gaps.max() / max(nn.mean(), 1e-6))
    return f


def _cache_file(cache_dir: Path) -> Path:
    from harness import numeric_env

    return Path(cache_dir) / "features" / f"physics-v{FEATURE_VERSION}-spglib{spglib.__version__}-{numeric_env.tag()}.pkl"


def canonical_cells(atoms_list) -> list:
    """Each structure as the cell ``predict`` hands every model (spglib's standardized
    primitive cell, harness.structure_io.canonical_cell): a model fitted on these is
    calibrated on the cells it gets in predict."""
    return [canonical_cell(a) for a in atoms_list]


def physics_features(atoms_list, cache_dir: Path | None = None) -> pd.DataFrame:
    """One row per structure (same order), float columns. With ``cache_dir``, rows are
    cached by structure content, so each structure is computed once."""
    atoms_list = list(atoms_list)
    if cache_dir is None:
        return pd.DataFrame([structure_physics(a) for a in atoms_list], dtype=float)
    keys = [structure_key(a) for a in atoms_list]
    by_key = dict(zip(keys, atoms_list))

    def compute(todo):
        from tqdm.auto import tqdm

        rows = [structure_physics(by_key[k]) for k in tqdm(todo, desc="physics features", unit="struct", leave=False,
                                                           mininterval=2, disable=len(todo) < 200)]
        return pd.DataFrame(rows, index=pd.Index(todo, name="key"), dtype=float)

    return cached_rows(_cache_file(cache_dir), keys, compute).reset_index(drop=True)
