"""Is a structure inside a fitted model's training domain? And a safe length for when it is not.

A **domain profile** is computed once from the training set (:func:`build_profile`) and is a
plain JSON-able dict (:func:`save_profile` / :func:`load_profile`). :func:`check` compares
one structure with it and returns a :class:`DomainReport` with these flags:

* ``unseen_element``: an element no training compound contains;
* ``rare_element``: an element in fewer than ``rare_threshold`` (default 20) training compounds;
* ``far_from_training``: the composition's distance to its nearest training composition is
  above the training set's own leave-one-out P99. The space: the Magpie-statistics part of
  :func:`harness.chemistry.composition_matrix` (mean / deviation / min / max /
  range of 28 element properties, element count, stoichiometry norms, charge balance),
  standardized with the training mean and std; the distance is the RMS z-score difference.
  The training side is the list of distinct reduced formulas (kept in the profile, so the
  profile stays small: the matrix is rebuilt once per process, ~2 s);
* ``likely_metal``: P(metal) > 0.5, from the caller's metallicity model when given
  (``p_metal``, e.g. kspace_gbm's ``metallicity_.predict_proba_metal``), else the
  composition rule :func:`metal_rule` (no charge-balanced assignment of common oxidation
  states, or no non-metal element);
* ``rare_crystal_system``: a crystal system (spglib, symprec 0.01) of fewer than
  ``rare_threshold`` training structures; ``unseen_spacegroup``: a space group of none;
* ``low_dimensional``: a vacuum gap wider than the training maximum along one or two
  lattice vectors (2D / 1D); ``molecule``: ≥ 6 Å of vacuum along all three (0D). Gaps from
  :func:`harness.structure_io.vacuum_gaps` (the one definition);
* ``more_atoms_than_training``, ``volume_per_atom_outside_training``, ``short_distance``:
  a cell larger than every training cell, a volume per atom outside the training range,
  two atoms closer than in any training structure. The limits are the profile's ``cell``
  statistics, measured on the training set the profile was built from (the offline store
  here, the full release online), never constants of one store;
* ``beyond_evidence``: neither O nor N while every training compound has one (the offline
  store). Every leave-chemistry-out fold is a part of that store, so no measurement backs
  the out-of-domain rule there: its coverage is unmeasured, and the output says so.

``in_domain`` is False when any flag other than ``likely_metal`` is raised; ``likely_metal``
alone is a note, unless metals are rare in training (profile ``metal_fraction`` <
``METAL_MINORITY``, 5 %): in the offline O/N store 23 % of training compounds are likely
metals (the per-group calibration of modellib.studies.group_conformal handles them in domain).

:func:`safe_length` is the conservative bound: the conformal L90 in domain, an inflated
bound out of domain (rule and evidence: its docstring, ``python -m modellib.studies.lco`` →
results/lco/lco.md). The profile of the subset benchmark's training set is committed as
results/domain/<benchmark>.json (``python -m harness.domain`` writes it).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import atomic
from harness.errors import HarnessError

PROFILE_VERSION = 2  # 2: the training cells' statistics (``cell``)
RARE_THRESHOLD = 20  # training compounds containing the element
FAR_QUANTILE = 0.99  # of the training set's leave-one-out nearest-neighbour distances
METAL_MINORITY = 0.05  # likely_metal is out of domain only when metals are this rare in training (else a note)
MOLECULE_GAP_A = 6.0  # as harness.structure_io.MOLECULE_GAP_A: empty along all three vectors = 0D
SYMPREC = 0.01  # spglib, as modellib.features.physics
_CRYSTAL_SYSTEMS = ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"),
                    (167, "trigonal"), (194, "hexagonal"), (230, "cubic"))
N_FRACTION_COLUMNS = 103  # composition_matrix: element fractions first, then the statistics we use

# Out-of-domain bound (safe_length): see its docstring. The factors chosen by the
# leave-chemistry-out evaluation (`python -m modellib.studies.lco` -> results/lco/lco.json "rule";
# tests/test_domain.py checks they agree).
OOD_RULE = {"kind": "scale", "factor": 1.4, "factor_element": 1.0}
# Likely metals beyond the evidence (ood_tier 3) also get at least this quantile of the
# training metals' converged lengths (profile "target_quantiles_metal"): a model-free floor.
# Why: on the elemental metals issue 12 quotes with JARVIS' own lengths (Pb 90, Be 90,
# Cu 75, Li 75 Å), kspace_gbm predicts 40-50 Å and the scale rule gives 65-80 Å, covering
# one of four; the model has never seen an O/N-free metal, so no factor on its prediction
# can be measured. P99 (100 Å on the offline store) is what 99 % of the metals it did see
# need; P95 (80 Å) would leave Pb and Be uncovered.
BEYOND_EVIDENCE_METAL_QUANTILE = "p99"
EVIDENCE_ELEMENTS = frozenset({"O", "N"})  # the offline store: every compound has one of these
PROFILE_DIR = "domain"  # results/domain/<benchmark>.json: the profile of that benchmark's training set

NONMETALS = frozenset("H He B C N O F Ne Si P S Cl Ar As Se Br Kr Te I Xe At Rn".split())


@dataclass
class DomainReport:
    in_domain: bool
    flags: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def message(self) -> str:
        """One line for text output ('' when in domain)."""
        if self.in_domain and not self.flags:
            return ""
        parts = [self.details.get(f"{f}_text", f) for f in self.flags]
        return ("outside the training domain: " if not self.in_domain else "note: ") + "; ".join(parts)

    def as_dict(self) -> dict:
        return {"in_domain": self.in_domain, "flags": list(self.flags), "details": _jsonable(self.details)}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


# ------------------------------------------------------------------ composition


def _reduced(formula: str) -> str:
    import warnings

    from harness.chemistry import reduced_formula

    with warnings.catch_warnings():  # pymatgen sorts by electronegativity: "No Pauling electronegativity for He"
        warnings.simplefilter("ignore", UserWarning)
        return reduced_formula(formula)


def elements_of(formula: str) -> list[str]:
    from pymatgen.core import Composition

    return sorted(str(e) for e in Composition(formula).elements)


def stats_matrix(formulas) -> np.ndarray:
    """(n, d) composition statistics: composition_matrix without the element fractions."""
    import warnings

    from harness.chemistry import composition_matrix

    with warnings.catch_warnings():  # pymatgen: "No Pauling electronegativity for He" (the element table)
        warnings.simplefilter("ignore", UserWarning)
        return composition_matrix(list(formulas))[:, N_FRACTION_COLUMNS:].astype(float)


def metal_rule(formulas) -> np.ndarray:
    """1.0 where a composition is likely metallic, else 0.0: no charge-balanced assignment
    of common oxidation states exists, or every element is a metal. A fallback only: against
    Materials Project's is_metal labels (5,000 random MP formulas) it is right for 80 %
    (recall 90 %, precision 74 %), but on the 2,319 of them with O or N for 74 % (recall
    73 %, precision 46 %: mixed-valence oxides count as metals); it marks 39 % of the
    subset's compounds metallic against 23 % for the metallicity model. Pass ``p_metal``
    from modellib.features.metallicity when there is one."""
    from harness.chemistry import composition_feature_names, composition_matrix

    import warnings

    formulas = list(formulas)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        X = composition_matrix(formulas)
    bal = X[:, composition_feature_names().index("charge_balanced")]
    all_metal = np.array([not (set(elements_of(f)) & NONMETALS) for f in formulas])
    return ((bal != 1.0) | all_metal).astype(float)


# ------------------------------------------------------------------ profile


def _standardize(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    Z = (X - mean) / std
    return np.where(np.isfinite(Z), Z, 0.0)


def spacegroup_number(atoms, symprec: float = SYMPREC) -> int:
    """spglib space group number of a jarvis Atoms (0 when spglib finds none)."""
    import spglib

    cell = (np.asarray(atoms.lattice_mat, dtype=float), np.asarray(atoms.frac_coords, dtype=float),
            np.asarray(atoms.atomic_numbers, dtype=int))
    try:
        ds = spglib.get_symmetry_dataset(cell, symprec=symprec)
    except Exception:
        return 0
    return 0 if ds is None else int(ds.number)


def crystal_system(spacegroup: int) -> str:
    """Crystal system name of a space group number ('unknown' for 0)."""
    for top, name in _CRYSTAL_SYSTEMS:
        if 0 < spacegroup <= top:
            return name
    return "unknown"


def build_profile(materials, targets=None, p_metal=None, spacegroups=None, rare_threshold: int = RARE_THRESHOLD,
                  far_quantile: float = FAR_QUANTILE) -> dict:
    """The domain profile of a training set. ``materials``: DataFrame with ``formula`` and
    ``atoms`` (one row per training structure). ``targets`` (optional, same order): the
    training lengths (their quantiles are kept). ``p_metal`` (optional, same order): P(metal)
    from a metallicity model; else :func:`metal_rule`. ``spacegroups`` (optional, same
    order): spglib numbers at symprec 0.01 when already computed (else computed here)."""
    from sklearn.neighbors import NearestNeighbors

    from harness.structure_io import vacuum_gaps

    formulas = [_reduced(f) for f in materials["formula"]]
    if not formulas:
        raise HarnessError("domain profile: empty training set")
    counts: dict[str, int] = {}
    for f in formulas:
        for e in elements_of(f):
            counts[e] = counts.get(e, 0) + 1
    distinct = sorted(set(formulas))
    X = stats_matrix(distinct)
    mean = np.nanmean(X, axis=0)
    std = np.nanstd(X, axis=0)
    std = np.where(std > 1e-9, std, 1.0)
    Z = _standardize(X, mean, std)
    d = Z.shape[1]
    if len(distinct) > 1:
        nn = NearestNeighbors(n_neighbors=2).fit(Z)
        dist, _ = nn.kneighbors(Z)
        loo = dist[:, 1] / math.sqrt(d)
    else:
        loo = np.zeros(1)
    qs = {f"p{int(round(100 * q))}": float(np.quantile(loo, q)) for q in (0.5, 0.9, 0.95, 0.99)}
    gaps = np.array([max(vacuum_gaps(a)) for a in materials["atoms"]])
    sgs = ([int(x) if np.isfinite(x) else 0 for x in np.asarray(spacegroups, dtype=float)] if spacegroups is not None
           else [spacegroup_number(a) for a in materials["atoms"]])
    sg_counts: dict[str, int] = {}
    cs_counts: dict[str, int] = {}
    for g in sgs:
        sg_counts[str(g)] = sg_counts.get(str(g), 0) + 1
        cs_counts[crystal_system(g)] = cs_counts.get(crystal_system(g), 0) + 1
    metal = np.asarray(p_metal, dtype=float) if p_metal is not None else metal_rule(formulas)
    cell = cell_statistics(materials["atoms"])
    profile = {
        "version": PROFILE_VERSION,
        "n_train": len(formulas),
        "n_formulas": len(distinct),
        "element_counts": dict(sorted(counts.items())),
        "rare_threshold": int(rare_threshold),
        "feature": "composition_matrix statistics (Magpie), standardized; RMS z distance",
        "feature_mean": [float(x) for x in mean],
        "feature_std": [float(x) for x in std],
        "formulas": distinct,
        "nn_distance_quantiles": qs,
        "far_quantile": far_quantile,
        "far_threshold": float(np.quantile(loo, far_quantile)),
        "metal_source": "p_metal" if p_metal is not None else "metal_rule",
        "metal_fraction": float(np.mean(metal > 0.5)),
        "spacegroup_counts": dict(sorted(sg_counts.items(), key=lambda kv: int(kv[0]))),
        "crystal_system_counts": dict(sorted(cs_counts.items())),
        "vacuum_gap_max": float(gaps.max()),
        "vacuum_gap_p99": float(np.quantile(gaps, 0.99)),
        "cell": cell,
    }
    if targets is not None:
        y = np.asarray(targets, dtype=float)
        profile["target_quantiles"] = {f"p{q}": float(np.quantile(y, q / 100, method="inverted_cdf"))
                                       for q in (50, 90, 95, 99)}
        m = metal > 0.5
        if m.any():
            profile["target_quantiles_metal"] = {f"p{q}": float(np.quantile(y[m], q / 100, method="inverted_cdf"))
                                                 for q in (50, 90, 95, 99)}
    profile["sha256"] = profile_digest(profile)
    return profile


SHORTEST_SEARCH_A = 3.0  # Å: pairs searched within this; every bulk crystal has a closer pair


def volume_per_atom(atoms) -> float:
    return abs(float(np.linalg.det(np.asarray(atoms.lattice_mat, dtype=float)))) / int(atoms.num_atoms)


def shortest_distance(atoms, cutoff: float = SHORTEST_SEARCH_A) -> float | None:
    """Å between the closest two atoms (an atom and its own image included), None when no
    pair is closer than ``cutoff`` (harness.structure_io.closest_pair: the one definition)."""
    from harness.structure_io import closest_pair

    pair = closest_pair(atoms, cutoff)
    return None if pair is None else pair[0]


def cell_statistics(atoms_list) -> dict:
    """The training cells' limits that a new cell is checked against: most atoms, the
    volume-per-atom range, the shortest interatomic distance."""
    n = [int(a.num_atoms) for a in atoms_list]
    vpa = [volume_per_atom(a) for a in atoms_list]
    near = [d for d in (shortest_distance(a) for a in atoms_list) if d is not None]
    return {"max_atoms": max(n), "volume_per_atom_min": float(min(vpa)), "volume_per_atom_max": float(max(vpa)),
            "shortest_distance": float(min(near)) if near else None}


def cell_flags(atoms, cell: dict) -> dict[str, str]:
    """{flag: text} where ``atoms`` lies outside the training cells' limits ``cell``."""
    out = {}
    n = int(atoms.num_atoms)
    if n > cell["max_atoms"]:
        out["more_atoms_than_training"] = f"{n:,} atoms; the largest training cell has {cell['max_atoms']:,}"
    vpa = volume_per_atom(atoms)
    lo, hi = cell["volume_per_atom_min"], cell["volume_per_atom_max"]
    if not lo <= vpa <= hi:
        out["volume_per_atom_outside_training"] = f"{vpa:.3g} Å³ per atom; training range {lo:.3g}–{hi:.3g}"
    limit = cell.get("shortest_distance")
    d = None if limit is None else shortest_distance(atoms, limit)
    if d is not None:
        out["short_distance"] = f"two atoms {d:.3g} Å apart; the shortest in training is {limit:.3g} Å"
    return out


def profile_digest(profile: dict) -> str:
    body = {k: v for k, v in profile.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save_profile(profile: dict, path: str | Path) -> None:
    atomic.write_text(path, json.dumps(profile, sort_keys=True, separators=(",", ":")) + "\n")


def load_profile(path: str | Path) -> dict:
    try:
        profile = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise HarnessError(f"{path}: cannot read the domain profile ({err})") from None
    if not isinstance(profile, dict) or profile.get("version") != PROFILE_VERSION:
        raise HarnessError(f"{path}: not a version-{PROFILE_VERSION} domain profile (rebuild it: "
                           "`python -m modellib.studies.domain_profile`)")
    if profile.get("sha256") != profile_digest(profile):
        raise HarnessError(f"{path}: domain profile does not match its sha256 (edited?)")
    return profile


_NN_CACHE: dict[str, object] = {}


def _neighbours(profile: dict):
    """(NearestNeighbors on the training formulas, mean, std, d), built once per profile."""
    key = profile.get("sha256") or profile_digest(profile)
    if key not in _NN_CACHE:
        from sklearn.neighbors import NearestNeighbors

        mean = np.asarray(profile["feature_mean"], dtype=float)
        std = np.asarray(profile["feature_std"], dtype=float)
        Z = _standardize(stats_matrix(profile["formulas"]), mean, std)
        _NN_CACHE.clear()  # one profile at a time is the normal case; keep memory bounded
        _NN_CACHE[key] = (NearestNeighbors(n_neighbors=1).fit(Z), mean, std, Z.shape[1])
    return _NN_CACHE[key]


def nn_distances(formulas, profile: dict) -> tuple[np.ndarray, list[str]]:
    """RMS z distance of each formula to its nearest training formula, and that formula."""
    nn, mean, std, d = _neighbours(profile)
    Z = _standardize(stats_matrix(formulas), mean, std)
    dist, idx = nn.kneighbors(Z)
    return dist[:, 0] / math.sqrt(d), [profile["formulas"][i] for i in idx[:, 0]]


# ------------------------------------------------------------------ check


def check_many(atoms_list, formulas, profile: dict, p_metal=None, spacegroups=None) -> list[DomainReport]:
    """:func:`check` for many structures at once (one featurization, one neighbour query).
    ``atoms_list`` may hold None (composition-only check: no structure flags).
    ``spacegroups``: spglib numbers when already known (else computed)."""
    from harness.structure_io import vacuum_gaps

    formulas = [_reduced(f) for f in formulas]
    atoms_list = list(atoms_list)
    if len(atoms_list) != len(formulas):
        raise HarnessError(f"domain check: {len(atoms_list)} structures vs {len(formulas)} formulas")
    if not formulas:
        return []
    dist, nearest = nn_distances(formulas, profile)
    pm = (np.asarray(p_metal, dtype=float).reshape(-1) if p_metal is not None else metal_rule(formulas))
    counts = profile["element_counts"]
    rare_n = profile["rare_threshold"]
    out = []
    for k, f in enumerate(formulas):
        flags, det = [], {"formula": f, "nn_distance": float(dist[k]), "nearest_training_formula": nearest[k],
                          "far_threshold": profile["far_threshold"], "p_metal": float(pm[k]),
                          "p_metal_source": "model" if p_metal is not None else "metal_rule"}
        els = elements_of(f)
        det["element_train_counts"] = {e: int(counts.get(e, 0)) for e in els}
        unseen = [e for e in els if counts.get(e, 0) == 0]
        rare = [e for e in els if 0 < counts.get(e, 0) < rare_n]
        if unseen:
            flags.append("unseen_element")
            det["unseen_element_text"] = f"element(s) {', '.join(unseen)} in no training compound"
        if rare:
            flags.append("rare_element")
            det["rare_element_text"] = (f"element(s) {', '.join(f'{e} ({counts[e]})' for e in rare)} in fewer than "
                                        f"{rare_n} training compounds")
        if dist[k] > profile["far_threshold"]:
            flags.append("far_from_training")
            det["far_from_training_text"] = (f"composition far from the training set (distance {dist[k]:.2f} > "
                                             f"{profile['far_threshold']:.2f}, the training P99; nearest {nearest[k]})")
        if pm[k] > 0.5:
            flags.append("likely_metal")
            det["likely_metal_text"] = (f"likely a metal (P = {pm[k]:.2f}); metals are "
                                        f"{100 * profile['metal_fraction']:.0f} % of training")
        a = atoms_list[k]
        if a is not None:
            sg = int(spacegroups[k]) if spacegroups is not None and np.isfinite(spacegroups[k]) else spacegroup_number(a)
            system = crystal_system(sg)
            n_sg = profile["spacegroup_counts"].get(str(sg), 0)
            n_cs = profile["crystal_system_counts"].get(system, 0)
            det.update({"spacegroup": sg, "crystal_system": system, "spacegroup_train_count": n_sg,
                        "crystal_system_train_count": n_cs})
            if n_cs < rare_n:
                flags.append("rare_crystal_system")
                det["rare_crystal_system_text"] = f"{system} cell: {n_cs} {system} training structures"
            if sg and n_sg == 0:
                flags.append("unseen_spacegroup")
                det["unseen_spacegroup_text"] = f"space group {sg}: in no training structure"
            gaps = vacuum_gaps(a)
            det["vacuum_gaps"] = [float(g) for g in gaps]
            limit = profile["vacuum_gap_max"]
            if min(gaps) >= MOLECULE_GAP_A:
                flags.append("molecule")
                det["molecule_text"] = f"0D: ≥ {min(gaps):.1f} Å of vacuum along all three lattice vectors"
            elif max(gaps) > limit:
                wide = [i for i in range(3) if gaps[i] > limit]
                kind = "2D/layered" if len(wide) == 1 else "1D"
                flags.append("low_dimensional")
                det["low_dimensional_text"] = (f"{kind}: {max(gaps):.1f} Å empty gap along "
                                               f"{', '.join('abc'[i] for i in wide)} (training at most {limit:.1f} Å)")
            for flag, text in cell_flags(a, profile["cell"]).items():
                flags.append(flag)
                det[f"{flag}_text"] = text
        if not set(els) & EVIDENCE_ELEMENTS and _training_always_has_evidence_element(profile):
            flags.append("beyond_evidence")
            det["beyond_evidence_text"] = (
                f"no {' or '.join(sorted(EVIDENCE_ELEMENTS))}, unlike every training compound: beyond every "
                "leave-chemistry-out fold, so the safe length's coverage here is unmeasured"
                + (f"; as a likely metal it gets at least the training metals' {BEYOND_EVIDENCE_METAL_QUANTILE} "
                   f"length" if pm[k] > 0.5 else ""))
            floor = metal_floor(profile)
            if pm[k] > 0.5 and floor is not None:
                det["fallback_length"] = floor
        ood = [x for x in flags if x != "likely_metal"]
        if "likely_metal" in flags and profile["metal_fraction"] < METAL_MINORITY:
            ood.append("likely_metal")
        out.append(DomainReport(in_domain=not ood, flags=flags, details=det))
    return out


def check(atoms, formula: str, profile: dict, p_metal: float | None = None) -> DomainReport:
    """Domain report of one structure (jarvis ``Atoms``, or None for a composition-only
    check; its formula) against ``profile``. ``p_metal``: P(metal) from a metallicity model
    (e.g. ``model.metallicity_.predict_proba_metal([formula])[0]`` for kspace_gbm), else
    the composition rule :func:`metal_rule`."""
    return check_many([atoms], [formula], profile, None if p_metal is None else [p_metal])[0]


# ------------------------------------------------------------------ bound

ELEMENT_FLAGS = frozenset({"unseen_element", "rare_element"})


def metal_floor(profile: dict) -> float | None:
    """The least safe length of a likely metal beyond the evidence: the training metals'
    BEYOND_EVIDENCE_METAL_QUANTILE length (all training compounds' when training has no
    metal; None for a profile built without targets)."""
    quantiles = profile.get("target_quantiles_metal") or profile.get("target_quantiles")
    return float(quantiles[BEYOND_EVIDENCE_METAL_QUANTILE]) if quantiles else None


def _training_always_has_evidence_element(profile: dict) -> bool:
    """Whether every training formula of ``profile`` contains an element of EVIDENCE_ELEMENTS
    (True for the offline O/N store, False for the full JARVIS release). Element symbols
    by regular expression: pymatgen parsing of 9,277 formulas per call would cost a second."""
    import re

    key = profile.get("sha256") or profile_digest(profile)
    if key not in _EVIDENCE_CACHE:
        _EVIDENCE_CACHE[key] = all(set(re.findall(r"[A-Z][a-z]?", f)) & EVIDENCE_ELEMENTS for f in profile["formulas"])
    return _EVIDENCE_CACHE[key]


_EVIDENCE_CACHE: dict = {}


def ood_tier(report: DomainReport) -> int:
    """0: in domain; 1: out of domain only by its elements (unseen or rare), and not
    likely a metal: chemistry next to the training set's; 2: anything else out of domain
    (far composition, likely metal, unseen crystal system / space group, low-dimensional,
    a cell outside the training cells' limits);
    3: beyond the evidence (``beyond_evidence``: chemistry no leave-chemistry-out fold held)."""
    if "beyond_evidence" in report.flags:
        return 3
    if report.in_domain:
        return 0
    if set(report.flags) - {"likely_metal"} <= ELEMENT_FLAGS and "likely_metal" not in report.flags:
        return 1
    return 2


def safe_length(yhat: float, q: float, report: DomainReport, profile: dict | None = None,
                rule: dict | None = None) -> float:
    """The safe k-point length (Å, on the 5 Å grid) for prediction ``yhat`` (continuous or
    snapped) with conformal offset ``q`` (the model's L90 offset, or a group offset of
    modellib.studies.group_conformal):

    * in domain: L90 = floor_5(ŷ + q);
    * out of domain: max(L90, floor_5(c·(ŷ + q))), c = ``rule["factor_element"]`` when only
      the elements are new (:func:`ood_tier` 1), ``rule["factor"]`` otherwise (tier 2);
    * beyond the evidence (tier 3): as tier 2, and for likely metals at least the training
      metals' BEYOND_EVIDENCE_METAL_QUANTILE length (the report's ``fallback_length``).

    ``rule`` defaults to :data:`OOD_RULE`, whose factors were chosen by the
    leave-chemistry-out evaluation (``python -m modellib.studies.lco``, results/lco/lco.md): the
    smallest factors on a 0.05 grid covering ≥ 90 % of the out-of-domain compounds of every
    held-out family; measured nested (factors chosen without the family and without the
    compounds), every family stayed ≥ 85 % covered. ``profile`` is accepted for rules that
    use training statistics (none does now)."""
    from harness.conformal import floor_to_grid

    base = float(floor_to_grid(float(yhat) + float(q)))
    tier = ood_tier(report)
    if tier == 0:
        return base
    rule = rule or OOD_RULE
    if rule.get("kind") != "scale":
        raise HarnessError(f"safe_length: unknown rule {rule.get('kind')!r}")
    c = rule["factor_element"] if tier == 1 else rule["factor"]
    fallback = float(report.details.get("fallback_length") or 0.0) if tier == 3 else 0.0
    return float(max(base, float(floor_to_grid(c * (float(yhat) + float(q)))), fallback))


# ------------------------------------------------------------------ the committed profile


def default_profile_path(benchmark: str) -> Path:
    """results/domain/<benchmark>.json: the profile of the benchmark's training set."""
    from harness import paths

    return paths.results_dir() / PROFILE_DIR / f"{benchmark}.json"
