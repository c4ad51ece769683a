"""Composition statistics: the one vectorised featurisation of a formula (element
fractions, Magpie-property statistics, stoichiometry norms, a common-oxidation-state
charge-balance test). The core needs it for the domain check (distance of a formula to
the training set); the model library's metallicity model and features build on it.
Hand-written rather than matminer's ElementProperty because the metallicity model
featurises ~450k external formulas: this is one numpy pass, matminer's is per formula."""

from __future__ import annotations

import itertools
import warnings
from functools import lru_cache

import numpy as np
from pymatgen.core import Composition
from pymatgen.core.periodic_table import Element

N_Z = 103  # element fractions for Z = 1..103
MAGPIE_PROPS = (
    "Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row", "CovalentRadius",
    "Electronegativity", "NsValence", "NpValence", "NdValence", "NfValence", "NValence",
    "NsUnfilled", "NpUnfilled", "NdUnfilled", "NfUnfilled", "NUnfilled", "GSvolume_pa",
    "GSbandgap", "GSmagmom", "SpaceGroupNumber", "IsMetal", "IsNonmetal", "IsMetalloid",
    "FirstIonizationEnergy", "ElectronAffinity", "Polarizability",
)
P_NORMS = (2, 3, 5, 7, 10)
MAX_OXI_COMBOS = 20000


@lru_cache(maxsize=None)
def reduced_formula(formula: str) -> str:
    return Composition(formula).reduced_formula



@lru_cache(maxsize=1)
def _element_table() -> np.ndarray:
    """(N_Z + 1, n_props) Magpie element properties, NaN filled by the property median."""
    from matminer.utils.data import MagpieData

    data = MagpieData(impute_nan=False).all_elemental_props
    tab = np.full((N_Z + 1, len(MAGPIE_PROPS)), np.nan)
    for z in range(1, N_Z + 1):
        sym = Element.from_Z(z).symbol
        for j, p in enumerate(MAGPIE_PROPS):
            v = data[p].get(sym)
            if v is not None:
                tab[z, j] = float(v)
    med = np.nanmedian(tab[1:], axis=0)
    tab = np.where(np.isnan(tab), med[None, :], tab)
    return tab


@lru_cache(maxsize=None)
def _common_oxidation_states(z: int) -> tuple[int, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        el = Element.from_Z(z)
        states = tuple(el.common_oxidation_states) or tuple(el.oxidation_states)
    return states or (0,)


def _charge_imbalance(zs: list[int], amounts: list[float]) -> float:
    """Smallest |sum of oxidation charges| per atom over all assignments of one common
    oxidation state per element (0 = a charge-balanced ionic assignment exists)."""
    options = [_common_oxidation_states(z) for z in zs]
    if np.prod([len(o) for o in options], dtype=float) > MAX_OXI_COMBOS:
        return np.nan
    amounts = np.asarray(amounts, float)
    combos = np.array(list(itertools.product(*options)), dtype=float)
    return float(np.abs(combos @ amounts).min() / amounts.sum())


def composition_feature_names() -> list[str]:
    names = [f"frac_Z{z}" for z in range(1, N_Z + 1)]
    for p in MAGPIE_PROPS:
        names += [f"{p}_mean", f"{p}_avgdev", f"{p}_min", f"{p}_max", f"{p}_range"]
    names += ["n_elements"] + [f"pnorm_{p}" for p in P_NORMS] + ["charge_imbalance", "charge_balanced"]
    return names


def composition_matrix(formulas) -> np.ndarray:
    """Vectorised composition features (see :func:`composition_feature_names`), float32."""
    formulas = list(formulas)
    n = len(formulas)
    frac = np.zeros((n, N_Z + 1))
    extra = np.zeros((n, 2))
    for i, f in enumerate(formulas):
        comp = Composition(f)
        amt = comp.get_el_amt_dict()
        zs = [Element(s).Z for s in amt]
        a = [amt[s] for s in amt]
        tot = sum(a)
        for z, v in zip(zs, a):
            if z <= N_Z:
                frac[i, z] += v / tot
        imb = _charge_imbalance(zs, a)
        extra[i] = (imb, float(imb < 1e-9) if np.isfinite(imb) else np.nan)
    tab = _element_table()
    present = frac > 0
    cols = [frac[:, 1:]]
    for j in range(tab.shape[1]):
        p = tab[:, j]
        mean = frac @ p
        avgdev = (frac * np.abs(p[None, :] - mean[:, None])).sum(1)
        mn = np.where(present, p[None, :], np.inf).min(1)
        mx = np.where(present, p[None, :], -np.inf).max(1)
        cols.append(np.stack([mean, avgdev, mn, mx, mx - mn], axis=1))
    ne = present.sum(1, keepdims=True).astype(float)
    norms = np.stack([(frac**p).sum(1) ** (1 / p) for p in P_NORMS], axis=1)
    cols += [ne, norms, extra]
    return np.concatenate(cols, axis=1).astype(np.float32)
