"""The per-group safe length: a cost-aware, group-conditional conformal bound that holds
for metals and non-metals, small and large cells and every crystal system, not only on
average (harness.conformal's plain L90 covers 90 % overall but metals about 80 %).

Bounds. For a multiplier Λ ≥ 0 a material's bound is the 5 Å grid length L ≥ floor_5(ŷ)
maximising Λ·F(L) − K(L): K(L) = n1·n2·n3 at L (the exact mesh, harness.kpoints) and F a
fixed working model of P(y ≤ L), Laplace around ŷ with scale s0·(K(floor_5 ŷ)/100)^c, ×m
for metals. This is the Lagrangian of "fewest k-points at a given coverage": cheap,
predictable materials get large offsets, expensive ones (small metallic cells, K ∝ L³·b1b2b3)
small ones. A larger Λ never lowers a bound, so a calibration material's score is the least
Λ whose bound covers it; s0, c, m are three constants chosen on val halvings.

Calibration (Gibbs, Cherian & Candès 2023, "Conformal prediction with conditional
guarantees"): the threshold Λ(x) = θ·φ(x), φ = intercept + one-hot metal / size / crystal
system, θ from the level-τ quantile regression of the val scores on φ with the new
material added at score +∞: one small LP per metal × size × system cell (28), solved
once at calibration. For exchangeable val/test it gives P(covered | G) ≥ τ for every
group G at once; unlike a max over per-group offsets it does not over-cover materials in
several hard groups.

Choice, on val only (modellib.studies.group_bound_choice → results/lco/group_bound.md: a
3 × 3 × 3 × 3 grid of s0, c, m and the slack, 50 random halvings of kspace_gbm's 1,767 val
predictions each; rule: mean val coverage 90 ± 1 %, every group's mean val coverage
≥ 89 %, then the fewest val k-points): s0 = 3, c = 0.2, m = 1.5, τ = 1 − α − 0.01. Test,
once: 89.6 % covered, worst group 88.4 % (orthorhombic; every group ≥ 88 % in 17 % of
bootstrap resamples), 1,218 mean k-points (bootstrap 95 %: 1,091–1,350), against 89.6 %,
79.5 % (metals) and 979 for the plain L90. The bound never goes below the mesh of the
model's own predicted length (mesh_floor): a "safe" length must not be coarser than the
recommended one. The bound works on the cell the model
sees (the canonical cell; its labels and reciprocal lengths are in the groups file, from
which calibration reads them, as predict derives them), so that it does not depend on the
user's choice of cell and is calibrated on what predict computes; the k-points a user
pays are those of their own cell.

Hand-written: no conformal library in the pinned environment (MAPIE, crepes) has
conditional-guarantee calibration; the LP is scipy's HiGHS.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.kpoints import GRID, kpoint_count

GROUPINGS = ("metal", "size", "system")
LABELS = {"metal": ("metal", "non-metal"), "size": ("small", "large"),
          "system": ("cubic", "hexagonal", "monoclinic", "orthorhombic", "tetragonal", "triclinic", "trigonal")}
SMALL_CELL_MAX_ATOMS = 14  # median atoms per cell of the subset's train set
METAL_THRESHOLD = 0.5  # P(metal) above this: "metal"
LENGTHS = np.arange(GRID, 205.0, GRID)  # candidate bounds, 5 … 200 Å
HYPER = {"scale": 3.0, "power": 0.2, "metal_scale": 1.5}  # working model F: modellib.studies.group_bound_choice
GROUP_SLACK = 0.01  # τ = 1 − α − slack, the per-group level: chosen with HYPER (results/lco/group_bound.md)
METHOD = "cost-aware group-conditional conformal"
GROUPS_FILE = "results/domain/{benchmark}.groups.csv"  # val/test labels and cells, by modellib.studies.domain_profile


def groups_of(n_atoms, spacegroups, p_metal, small_max_atoms: int = SMALL_CELL_MAX_ATOMS) -> list[dict]:
    """One {grouping: label} per material, from its atom count, spglib space group number
    and P(metal)."""
    from harness.domain import crystal_system

    out = []
    for n, sg, p in zip(n_atoms, spacegroups, p_metal, strict=True):
        sg = int(sg) if sg is not None and np.isfinite(sg) else 0
        out.append({"metal": "metal" if float(p) > METAL_THRESHOLD else "non-metal",
                    "size": "small" if int(n) <= small_max_atoms else "large",
                    "system": crystal_system(sg)})
    return out


GROUPS_HEADER = "split,id,metal,size,system,b1,b2,b3"


def _rows(path: Path, ids: dict[str, list[str]]) -> dict[str, list[list[str]]] | None:
    """{split: the groups file's fields (metal, size, system, b1, b2, b3) per id of ``ids``}."""
    if not Path(path).is_file():
        return None
    lines = Path(path).read_text().splitlines()
    if not lines or lines[0] != GROUPS_HEADER:
        raise HarnessError(f"{path}: line 1: expected the header {GROUPS_HEADER} (an older file? rerun "
                           "`python -m modellib.studies.domain_profile`)")
    got: dict[str, dict[str, list[str]]] = {split: {} for split in ids}
    n_fields = len(GROUPS_HEADER.split(","))
    for n, line in enumerate(lines[1:], start=2):
        parts = line.split(",")
        if len(parts) != n_fields:
            raise HarnessError(f"{path}: line {n}: expected {GROUPS_HEADER}")
        if parts[0] in got:
            got[parts[0]][parts[1]] = parts[2:]
    out = {}
    for split, want in ids.items():
        missing = [i for i in want if i not in got[split]]
        if missing:
            raise HarnessError(f"{path}: no groups for {len(missing)} {split} id(s), e.g. {missing[0]} (rerun "
                               "`python -m modellib.studies.domain_profile`)")
        out[split] = [got[split][i] for i in want]
    return out


def read_groups_file(path: Path, ids: dict[str, list[str]]) -> tuple[dict, dict] | None:
    """({split: {grouping: label per id}}, {split: (n, 3) reciprocal lengths}) for the
    splits in ``ids`` (val, test) from the groups file, or None when absent. Both are those
    of the cell the model sees (harness.structure_io.canonical_cell), as predict derives
    them: the bound's working model and costs use that cell there, so calibration does too
    (the k-points a user pays are counted on the user's own cell)."""
    rows = _rows(path, ids)
    if rows is None:
        return None
    groups = {split: {g: [r[k] for r in rs] for k, g in enumerate(GROUPINGS)} for split, rs in rows.items()}
    try:
        recip = {split: np.array([[float(x) for x in r[3:]] for r in rs], dtype=float).reshape(-1, 3)
                 for split, rs in rows.items()}
    except ValueError as err:
        raise HarnessError(f"{path}: reciprocal lengths b1,b2,b3: {err}") from None
    return groups, recip


def _labels(groups) -> np.ndarray:
    """(n, 3) labels from {grouping: label} dicts or an (n, 3) array."""
    if len(groups) and isinstance(groups[0], dict):
        return np.array([[g[G] for G in GROUPINGS] for g in groups], dtype=str)
    return np.asarray(groups, dtype=str).reshape(-1, 3)


def _design(lab: np.ndarray) -> np.ndarray:
    """Intercept + one-hot of every label but the first of each grouping (rank 10)."""
    cols = [np.ones(len(lab))]
    for j, G in enumerate(GROUPINGS):
        cols += [(lab[:, j] == v).astype(float) for v in LABELS[G][1:]]
    return np.stack(cols, 1)


def _floor(L) -> np.ndarray:
    from harness.conformal import floor_to_grid

    return floor_to_grid(L)


def mesh_floor(point, recip) -> np.ndarray:
    """Per material, the least grid length whose mesh is at least as dense, along every
    reciprocal vector, as the mesh at the model's own predicted length ``point`` (what
    predict recommends; for kspace_gbm a mesh-change length, which is then its own floor).
    Why: a "safe" length below the recommended one would give a coarser mesh than the
    recommendation (45 of 1,708 test materials before this floor, e.g. CrN JVASP-8345:
    recommended 70 Å, safe 65 Å, JARVIS converged at 70)."""
    from harness.kpoints import mesh

    b = np.asarray(recip, dtype=float).reshape(-1, 3)
    want = mesh(b, np.minimum(np.asarray(point, dtype=float), LENGTHS[-1]))  # (n, 3)
    dense = np.stack([(mesh(b, np.full(len(b), L)) >= want).all(1) for L in LENGTHS], 1)  # (n, m), monotone in L
    return LENGTHS[np.argmax(dense, axis=1)]


def _family(yhat, recip, lab, hp, point=None):
    """K (n, m) k-points at LENGTHS, F (n, m) working P(y ≤ L), ok (n, m): L ≥ floor_5(ŷ)
    and, given the model's predicted lengths ``point``, L ≥ mesh_floor(point)."""
    yhat = np.asarray(yhat, dtype=float)
    b = np.asarray(recip, dtype=float).reshape(-1, 3)
    K = np.stack([kpoint_count(b, np.full(len(b), L)) for L in LENGTHS], 1).astype(float)
    base = _floor(np.maximum(yhat, GRID))
    low = base if point is None else np.maximum(base, mesh_floor(point, b))
    k0 = kpoint_count(b, base).astype(float)  # the working model's scale: of ŷ alone, whatever the floor
    sig = hp["scale"] * (k0 / 100.0) ** hp["power"] * np.where(lab[:, 0] == "metal", hp["metal_scale"], 1.0)
    z = (LENGTHS[None, :] - yhat[:, None]) / sig[:, None]
    F = np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1 - 0.5 * np.exp(-np.maximum(z, 0)))
    return K, F, LENGTHS[None, :] >= low[:, None]


def _lengths_at(lam, K, F, ok) -> np.ndarray:
    """Bound at multiplier(s) lam: the largest L maximising lam·F − K over allowed L."""
    lam = np.maximum(np.asarray(lam, dtype=float), 1e-300)[:, None]
    obj = np.where(ok, np.where(np.isinf(lam), F, lam * F - K), -np.inf)
    best = obj.max(1, keepdims=True)
    top = obj >= best - 1e-12 * np.maximum(1.0, np.abs(best))
    return LENGTHS[len(LENGTHS) - 1 - np.argmax(top[:, ::-1], axis=1)]


def scores(y, K, F, ok) -> np.ndarray:
    """Least Λ whose bound covers y: max over allowed j below y's grid index of the min
    over k at or above it of ΔK/ΔF (0 when y ≤ floor_5 ŷ, inf when y is beyond the grid)."""
    y = np.asarray(y, dtype=float)
    m = len(LENGTHS)
    iy = np.rint(y / GRID).astype(int) - 1
    j = np.arange(m)
    below = ok & (j[None, :] < iy[:, None])
    above = j[None, None, :] >= iy[:, None, None]
    dK = K[:, None, :] - K[:, :, None]
    dF = F[:, None, :] - F[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(dF > 0, dK / dF, np.where(dK <= 0, 0.0, np.inf))
    r = np.where(above, r, np.inf).min(2)
    s = np.where(below, np.maximum(r, 0.0), -np.inf).max(1)
    return np.where(iy >= m, np.inf, np.maximum(s, 0.0))


def _qr_threshold(X, s, tau: float, x_new) -> float:
    """Threshold at x_new of the level-tau quantile regression of s on X with (x_new, +inf)
    added, from its dual: max Σ a_i s_i s.t. X'a = −tau·(x_new + Σ_{s_i = inf} x_i),
    a_i ∈ [tau − 1, tau]; θ = −(the equality multipliers)."""
    from scipy.optimize import linprog

    fin = np.isfinite(s)
    rhs = -(tau * x_new + tau * X[~fin].sum(0))  # points at +inf sit at a_i = tau
    res = linprog(-s[fin], A_eq=X[fin].T, b_eq=rhs, bounds=(tau - 1, tau), method="highs")
    if res.status == 2:  # dual infeasible: no finite threshold
        return math.inf
    if res.status != 0:
        raise HarnessError(f"per-group bound: quantile regression failed ({res.message})")
    return float(-x_new @ res.eqlin.marginals)


def cells() -> list[tuple[str, str, str]]:
    return [(a, b, c) for a in LABELS["metal"] for b in LABELS["size"] for c in LABELS["system"]]


def fit(y_cal, yhat_cal, recip_cal, groups_cal, alpha: float = 0.1, hyper: dict | None = None,
        slack: float | None = None, point_cal=None) -> dict:
    """Calibrate on val: the Λ threshold of every metal|size|system cell (JSON-able).
    ``point_cal``: the model's predicted (recommended) lengths, a floor (mesh_floor)."""
    hp = dict(HYPER if hyper is None else hyper)
    slack = GROUP_SLACK if slack is None else float(slack)
    tau = 1 - alpha - slack
    if not 0 < tau < 1:
        raise HarnessError(f"alpha = {alpha}: the per-group level 1 - alpha - {slack} must lie in (0, 1)")
    lab = _labels(groups_cal)
    if len(lab) != len(np.asarray(y_cal)):
        raise HarnessError(f"per-group bound: {len(np.asarray(y_cal))} targets vs {len(lab)} group labels")
    unknown = sorted({v for j, G in enumerate(GROUPINGS) for v in lab[:, j]} - {v for G in GROUPINGS for v in LABELS[G]})
    if unknown:
        raise HarnessError(f"per-group bound: unknown group label(s) {', '.join(unknown)}")
    K, F, ok = _family(yhat_cal, recip_cal, lab, hp, point_cal)
    s = scores(y_cal, K, F, ok)
    return {"method": METHOD, "alpha": float(alpha), "level": tau, "hyper": hp, "thresholds": thresholds(s, lab, tau),
            "n": int(len(s)), "point_floor": point_cal is not None}


def thresholds(s, lab: np.ndarray, tau: float) -> dict[str, float]:
    """The Λ threshold of every metal|size|system cell from calibration scores ``s`` and
    their (n, 3) labels (a material's score does not depend on the calibration set, so a
    study re-splitting val reuses the scores and calls only this)."""
    pos = s[(s > 0) & np.isfinite(s)]
    unit = float(np.median(pos)) if len(pos) else 1.0  # the QR is scale-equivariant: condition the LP
    X = _design(lab)
    return {"|".join(c): _qr_threshold(X, s / unit, tau, _design(np.array([c]))[0]) * unit for c in cells()}


def bound(yhat, recip, groups, params: dict, point=None) -> np.ndarray:
    """Per-group safe lengths (5 Å grid) of new materials; ``recip``: reciprocal lengths of
    the cell the model saw; ``point``: the model's predicted lengths (the bound's mesh is
    never coarser than theirs; give them wherever fit had them). A cell without a finite
    threshold gets the grid's top."""
    lab = _labels(groups)
    thr = params["thresholds"]
    lam = np.array([thr["|".join(row)] for row in lab], dtype=float)
    if params.get("point_floor") and point is None:
        raise HarnessError("per-group bound: calibrated with the predicted lengths as a floor, so it needs them "
                           "(point=) for new materials too")
    K, F, ok = _family(yhat, recip, lab, params["hyper"], point)
    return _lengths_at(lam, K, F, ok)
