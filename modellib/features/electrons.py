"""Electron-count features of a crystal structure: what decides whether a cell *must* be
metallic in DFT, and how large its Fermi surface is against the Brillouin zone.

* ``odd_electrons_primitive``: 1 when the primitive cell (spglib) holds an odd number of
  electrons. Core shells are closed (even), so the parity of the valence count is the
  parity of the sum of atomic numbers, whatever the pseudopotential. A band holds two
  electrons per k-point, so without spin polarization an odd count leaves a band partly
  filled: the cell is a metal, whatever a composition-level classifier trained on GGA+U
  data says. JARVIS' OptB88vdW runs carry no +U, and on the offline subset the current
  model under-predicts odd-count metals (val bias +4.4 Å against +2.1 for even ones).
  Composition fractions cannot carry this: it depends on the formula units per cell.
* ``valence_electrons_primitive``: Magpie valence electrons (NValence) per primitive cell.
* ``valence_density`` (e/Å³), ``k_fermi`` = (3π²n)^(1/3) (1/Å, the free-electron Fermi
  wave vector) and ``k_fermi_over_b_min`` / ``_max``: the Fermi sphere's radius over the
  shortest / longest reciprocal lattice vector 2π|b_i|, i.e. how many k-point spacings a
  Fermi surface spans at a given mesh. A tree cannot build these cube-root ratios from the
  per-atom averages and |b_i| it sees elsewhere.

Hand-written: matminer's composition featurizers see fractions (no cell, so no parity)
and its structure featurizers have no Fermi-wave-vector feature.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import spglib

from modellib.features.frame_cache import cached_rows, structure_key

FEATURE_VERSION = 1  # bump when a feature's definition changes
SYMPREC = 0.01  # as modellib.features.physics
NAMES = ("odd_electrons_primitive", "valence_electrons_primitive", "valence_density", "k_fermi",
         "k_fermi_over_b_min", "k_fermi_over_b_max")

_NVALENCE: dict[int, float] = {}


def _nvalence(z: int) -> float:
    if z not in _NVALENCE:
        from matminer.utils.data import MagpieData
        from pymatgen.core.periodic_table import Element

        _NVALENCE[z] = float(MagpieData().get_elemental_property(Element.from_Z(z), "NValence"))
    return _NVALENCE[z]


def primitive_multiplicity(lat, frac, z) -> int:
    """Cells of the spglib primitive cell in this one (1 when spglib finds no symmetry)."""
    try:
        ds = spglib.get_symmetry_dataset((lat, frac, z), symprec=SYMPREC)
    except Exception:
        ds = None
    if ds is None:
        return 1
    return max(1, len(z) // max(1, len(set(ds.mapping_to_primitive.tolist()))))


def structure_electrons(atoms) -> dict[str, float]:
    """Electron-count features of one jarvis ``Atoms``."""
    lat = np.asarray(atoms.lattice_mat, dtype=float)
    frac = np.asarray(atoms.frac_coords, dtype=float)
    z = np.asarray(atoms.atomic_numbers, dtype=int)
    vol = abs(float(np.linalg.det(lat)))
    mult = primitive_multiplicity(lat, frac, z)
    nval = float(sum(_nvalence(int(k)) for k in z))
    density = nval / vol
    kf = (3 * np.pi**2 * density) ** (1 / 3)
    b = np.linalg.norm(np.linalg.inv(lat).T, axis=1)  # as physics.reciprocal_lengths (no 2π)
    return {"odd_electrons_primitive": float((int(z.sum()) // mult) % 2),
            "valence_electrons_primitive": nval / mult,
            "valence_density": density,
            "k_fermi": kf,
            "k_fermi_over_b_min": kf / (2 * np.pi * b.min()),
            "k_fermi_over_b_max": kf / (2 * np.pi * b.max())}


def _cache_file(cache_dir: Path) -> Path:
    from harness import numeric_env

    return Path(cache_dir) / "features" / f"electrons-v{FEATURE_VERSION}-spglib{spglib.__version__}-{numeric_env.tag()}.pkl"


def electron_features(atoms_list, cache_dir: Path | None = None) -> pd.DataFrame:
    """One row per structure (same order), columns ``NAMES``; cached by structure content
    under ``cache_dir``."""
    atoms_list = list(atoms_list)
    keys = [structure_key(a) for a in atoms_list]
    by_key = dict(zip(keys, atoms_list))

    def compute(todo):
        from tqdm.auto import tqdm

        rows = [structure_electrons(by_key[k]) for k in tqdm(todo, desc="electron features", unit="struct",
                                                             leave=False, mininterval=2, disable=len(todo) < 200)]
        return pd.DataFrame(rows, index=pd.Index(todo, name="key"), columns=list(NAMES), dtype=float)

    path = None if cache_dir is None else _cache_file(cache_dir)
    return cached_rows(path, keys, compute).reset_index(drop=True)
