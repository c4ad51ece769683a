"""Leave-chemistry-out (LCO) evaluation: how a model and its safe length L90 behave on
chemistry it has never seen, and whether the domain check (harness.domain) flags it.

Inside the offline subset benchmark (dft_3d_on_subset_kpoint_length_unit, the O/N store),
each fold holds out every compound (train, val and test ids) of one chemistry family or
structure class, trains a cheap model on the rest of train, calibrates the conformal
offset on the rest of val (no held-out compound in either), predicts the held-out
compounds and reports: MAE; how many the domain check flags; the coverage (true length ≤
bound) and mean k-points (n1·n2·n3) of (i) the plain conformal L90 = floor_5(ŷ + q) and
(ii) the conservative out-of-domain bound (harness.domain.safe_length). Fold ``none``
holds nothing out (the in-distribution reference; its val/test predictions feed the
per-group calibration study).

The out-of-domain rule has one parameter (the factor c of floor_5(c·(ŷ + q)) for flagged
compounds). It is chosen on the folds themselves, so its coverage is reported **nested**:
for each fold, c is chosen on the other folds' held-out compounds (those outside this
fold), then applied to this fold. The final c (written to results/lco/lco.json, and to
harness.domain.OOD_RULE by hand) is the same choice on all folds.

Model: LightGBM (Huber loss on log L, as kspace_gbm) on modellib.features.physics,
the composition statistics of harness.chemistry.composition_matrix and the
metallicity estimates (MP/OQMD/AFLOW, never JARVIS), one seed, 800 trees, one thread.

    python -m modellib.studies.lco                    # all folds -> results/lco/lco.md, lco.json
    python -m modellib.studies.lco --folds alkali --limit 300 --out /tmp/lco   # a quick slice
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harness import atomic, paths
from harness.domain import BEYOND_EVIDENCE_METAL_QUANTILE
from harness.errors import HarnessError

ALPHA = 0.1
TARGET_COVERAGE = 0.90  # the rule's parameter is the smallest reaching this on the calibration folds
MIN_TIER_N = 30  # a fold takes part in choosing a tier's factor with at least this many compounds of the tier
CLAIM_COVERAGE = 0.85  # issue 12: held-out chemistry covered at least this
FACTOR_GRID = tuple(np.round(np.arange(1.0, 2.51, 0.05), 2))

ALKALI = {"Li", "Na", "K", "Rb", "Cs", "Fr"}
ALKALINE_EARTH = {"Be", "Mg", "Ca", "Sr", "Ba", "Ra"}
TM_3D = {"Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn"}
LANTHANIDES = {"La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu"}
P_BLOCK_METALS = {"Al", "Ga", "In", "Tl", "Ge", "Sn", "Pb", "Sb", "Bi"}
HALOGENS = {"F", "Cl", "Br", "I"}
CRYSTAL_SYSTEMS = {1: "triclinic", 2: "monoclinic", 3: "orthorhombic", 4: "tetragonal", 5: "trigonal",
                   6: "hexagonal", 7: "cubic"}

METAL_RICH_ANION_FRACTION = 0.25  # Cu3N, Fe4N, Ca3SnO: one anion in four atoms or fewer
# name -> (description, predicate on one compound's info dict)
FOLDS = {
    "none": ("nothing held out (in-distribution reference: held-out = the test ids)", None),
    "alkali": ("compounds with Li, Na, K, Rb, Cs", lambda c: bool(c["elements"] & ALKALI)),
    "alkaline_earth": ("compounds with Be, Mg, Ca, Sr, Ba", lambda c: bool(c["elements"] & ALKALINE_EARTH)),
    "3d_tm": ("compounds with a 3d transition metal (Sc–Zn)", lambda c: bool(c["elements"] & TM_3D)),
    "lanthanides": ("compounds with a lanthanide (La–Lu)", lambda c: bool(c["elements"] & LANTHANIDES)),
    "p_block_metals": ("compounds with Al, Ga, In, Tl, Ge, Sn, Pb, Sb, Bi", lambda c: bool(c["elements"] & P_BLOCK_METALS)),
    "halogens": ("compounds with F, Cl, Br, I", lambda c: bool(c["elements"] & HALOGENS)),
    "nitrides_no_o": ("nitrides without oxygen", lambda c: "N" in c["elements"] and "O" not in c["elements"]),
    "hexagonal": ("hexagonal crystal system (spglib, space groups 168–194)", lambda c: c["crystal_system"] == 6),
    "cubic": ("cubic crystal system (space groups 195–230)", lambda c: c["crystal_system"] == 7),
    "metals": ("likely metals (P(metal) > 0.5, metallicity model)", lambda c: c["p_metal"] > 0.5),
    # The store's nearest kin of the O/N-free metals it lacks (intermetallics, elements):
    # antiperovskites (Ca3SnO, Ca3AuN), interstitial nitrides (Fe4N, Mn4N), metal-rich suboxides.
    "metal_rich": (f"likely metals with at most {METAL_RICH_ANION_FRACTION:.0%} O + N atoms",
                   lambda c: c["p_metal"] > 0.5 and c["anion_fraction"] <= METAL_RICH_ANION_FRACTION),
}

LGBM_PARAMS = dict(objective="huber", alpha=0.15, n_estimators=800, learning_rate=0.05, num_leaves=63,
                   min_child_samples=10, subsample=0.8, subsample_freq=1, colsample_bytree=0.3, random_state=0,
                   n_jobs=1, deterministic=True, force_row_wise=True, verbose=-1)


def log(msg: str) -> None:
    print(f"[lco] {msg}", flush=True)


# ------------------------------------------------------------------ data


def load_store(data_dir=None, cache_dir=None):
    """(Benchmark, materials) of the offline subset benchmark."""
    from harness import benchmark as bm
    from harness.task import Task

    task = Task.load(bm.load(bm.SUBSET, paths.benchmarks_dir()), data_dir, cache_dir)
    return task.benchmark, task.materials


def features(materials: pd.DataFrame, ids: list[str], cache_dir, metallicity) -> pd.DataFrame:
    """Model inputs per id: physics features, composition statistics, metallicity estimates."""
    from harness.chemistry import composition_feature_names, composition_matrix
    from modellib.features.physics import physics_features

    sub = materials.loc[ids]
    parts = [physics_features(list(sub["atoms"]), cache_dir).reset_index(drop=True),
             pd.DataFrame(composition_matrix(list(sub["formula"])), columns=composition_feature_names())]
    if metallicity is not None:
        parts.append(metallicity.transform(list(sub["formula"])).reset_index(drop=True))
    F = pd.concat(parts, axis=1)
    F.columns = [str(c) for c in F.columns]
    F.index = pd.Index(ids, name="jid")
    return F


def reciprocal(bench, materials, ids) -> np.ndarray:
    """(n, 3) |b_i|: the definition's lattice.csv for val/test ids, computed for train ids."""
    from harness.kpoints import reciprocal_lengths

    rec = bench.recip or {}
    return np.array([rec[i] if i in rec else reciprocal_lengths(materials.at[i, "atoms"].lattice_mat) for i in ids],
                    dtype=float)


def compound_info(materials, ids, F: pd.DataFrame, p_metal: np.ndarray) -> list[dict]:
    from pymatgen.core import Composition

    from harness.domain import EVIDENCE_ELEMENTS

    cs = F["crystal_system"].to_numpy()
    out = []
    for k, i in enumerate(ids):
        comp = Composition(materials.at[i, "formula"])  # parsed once: elements and the O + N fraction
        out.append({"elements": {str(e) for e in comp.elements},
                    "crystal_system": int(cs[k]) if np.isfinite(cs[k]) else 0, "p_metal": float(p_metal[k]),
                    "anion_fraction": sum(comp.get_atomic_fraction(e) for e in sorted(EVIDENCE_ELEMENTS))})
    return out


# ------------------------------------------------------------------ model


def fit_predict(F_train: pd.DataFrame, y_train, F_pred: list[pd.DataFrame], params: dict) -> list[np.ndarray]:
    import lightgbm as lgb

    m = lgb.LGBMRegressor(**params)
    m.fit(F_train, np.log(np.asarray(y_train, dtype=float)))
    return [np.exp(m.predict(F)) for F in F_pred]


# ------------------------------------------------------------------ bounds


def plain_bound(yhat, q) -> np.ndarray:
    from harness.conformal import upper_bound

    return upper_bound(yhat, q)


def rule_bound(yhat, q, tier, factors) -> np.ndarray:
    """harness.domain.safe_length, vectorised: floor_5(ŷ + q) where ``tier`` is 0 (in
    domain), max(that, floor_5(c·(ŷ + q))) elsewhere. ``factors``: a tuple (element-only
    factor, other factor) applied by tier, or an array with one factor per compound."""
    from harness.conformal import floor_to_grid

    tier = np.asarray(tier, int)
    if isinstance(factors, tuple):
        c = np.where(tier == 1, float(factors[0]), float(factors[1]))
    else:
        c = np.asarray(factors, float)
    up = floor_to_grid(c * (np.asarray(yhat, float) + q))
    base = plain_bound(yhat, q)
    return np.where(tier > 0, np.maximum(base, up), base)


def coverage(y, L) -> float:
    y = np.asarray(y, float)
    return float(np.mean(y <= np.asarray(L, float))) if len(y) else float("nan")


def formula_half(formula: str) -> int:
    """0 or 1: a fixed split of compounds by reduced formula (polymorphs stay together)."""
    import hashlib

    from harness.chemistry import reduced_formula

    return int(hashlib.sha256(reduced_formula(formula).encode()).hexdigest(), 16) % 2


def choose_factor(items: list[dict], tiers=(1, 2), target: float = TARGET_COVERAGE, half: int | None = None,
                  min_n: int = MIN_TIER_N) -> float:
    """Smallest factor c on FACTOR_GRID with which the rule covers ≥ ``target`` of the
    held-out compounds of ``tiers`` in **every** fold of ``items`` (per-fold arrays) that has
    at least ``min_n`` of them (only the compounds of formula half ``half`` when given).
    The largest grid factor when none does."""
    sets = []
    for it in items:
        keep = np.isin(it["tier"], list(tiers))
        if half is not None:
            keep &= it["half"] == half
        if keep.sum() >= min_n:
            sets.append((it["y"][keep], it["yhat"][keep], it["q"]))
    if not sets:
        return float(FACTOR_GRID[-1])  # nothing to learn from: the most conservative
    for c in FACTOR_GRID:
        if all(coverage(y, rule_bound(yh, q, np.full(len(y), 2), (c, c))) >= target for y, yh, q in sets):
            return float(c)
    return float(FACTOR_GRID[-1])


def choose_rule(items: list[dict], half: int | None = None) -> tuple[float, float]:
    """(element-only factor, other factor): each chosen on its own tier."""
    return choose_factor(items, (1,), half=half), choose_factor(items, (2,), half=half)


# ------------------------------------------------------------------ folds


def run(folds: list[str], limit: int | None = None, params: dict | None = None, data_dir=None, cache_dir=None,
        metallicity="model", bench=None, materials=None) -> dict:
    """Run the named folds; returns {"folds": [summary...], "items": {fold: arrays}, ...}.
    ``limit``: use only the first ``limit`` ids of each split (quick slices).
    ``metallicity``: "model" (modellib.features.metallicity, fitted once and cached),
    None (no metallicity features; the domain check uses its composition rule), or a
    fitted MetallicityModel."""
    from harness import domain
    from harness.conformal import conformal_offset
    from harness.kpoints import kpoint_count

    params = {**LGBM_PARAMS, **(params or {})}
    cache_dir = Path(cache_dir) if cache_dir is not None else paths.cache_dir()
    unknown = [f for f in folds if f not in FOLDS]
    if unknown:
        raise HarnessError(f"unknown fold(s) {', '.join(unknown)}; known: {', '.join(FOLDS)}")
    t0 = time.time()
    if bench is None or materials is None:
        bench, materials = load_store(data_dir, cache_dir)
    ids = {s: bench.ids[s][:limit] if limit else list(bench.ids[s]) for s in ("train", "val", "test")}
    all_ids = ids["train"] + ids["val"] + ids["test"]
    y_all = {i: bench.targets[s][i] for s in ids for i in ids[s]}
    split_of = {i: s for s in ids for i in ids[s]}
    log(f"benchmark {bench.name}: train {len(ids['train']):,} / val {len(ids['val']):,} / test {len(ids['test']):,} ids")
    if metallicity == "model":
        from modellib.features.metallicity import fitted_metallicity

        log("metallicity model (fitted once on MP data, then cached) ...")
        metallicity = fitted_metallicity(cache_dir, n_jobs=1)
    log(f"features for {len(all_ids):,} structures (physics features cached in {cache_dir}) ...")
    F = features(materials, all_ids, cache_dir, metallicity)
    p_metal = (metallicity.predict_proba_metal(list(materials.loc[all_ids, "formula"])) if metallicity is not None
               else domain.metal_rule(list(materials.loc[all_ids, "formula"])))
    info = dict(zip(all_ids, compound_info(materials, all_ids, F, p_metal)))
    pm = dict(zip(all_ids, p_metal))
    recip = dict(zip(all_ids, reciprocal(bench, materials, all_ids)))
    half_of = {i: formula_half(materials.at[i, "formula"]) for i in all_ids}
    log(f"features ready ({F.shape[1]} columns, {time.time() - t0:.0f} s)")

    summaries, items = [], {}
    for name in folds:
        t = time.time()
        desc, pred = FOLDS[name]
        if pred is None:
            held = set(ids["test"])
            train = ids["train"]
            cal = ids["val"]
        else:
            held = {i for i in all_ids if pred(info[i])}
            train = [i for i in ids["train"] if i not in held]
            cal = [i for i in ids["val"] if i not in held]
        held_ids = [i for i in all_ids if i in held]
        if len(cal) < 20 or len(train) < 50 or not held_ids:
            log(f"fold {name}: skipped (train {len(train)}, calibration {len(cal)}, held out {len(held_ids)})")
            continue
        assert not held & set(train) and not held & set(cal)
        log(f"fold {name}: hold out {len(held_ids):,} ({desc}); train {len(train):,}, calibrate {len(cal):,} ...")
        y_tr = np.array([y_all[i] for i in train])
        yhat_cal, yhat_held = fit_predict(F.loc[train], y_tr, [F.loc[cal], F.loc[held_ids]], params)
        y_cal = np.array([y_all[i] for i in cal])
        y = np.array([y_all[i] for i in held_ids])
        q = conformal_offset(y_cal, yhat_cal, ALPHA)
        profile = domain.build_profile(materials.loc[train], targets=y_tr, p_metal=[pm[i] for i in train],
                                       spacegroups=F.loc[train, "spacegroup"].to_numpy())
        reports = domain.check_many(list(materials.loc[held_ids, "atoms"]), list(materials.loc[held_ids, "formula"]),
                                    profile, [pm[i] for i in held_ids], spacegroups=F.loc[held_ids, "spacegroup"].to_numpy())
        tier = np.array([domain.ood_tier(r) for r in reports])
        flagged = tier > 0
        flag_counts = {}
        for r in reports:
            for f in r.flags:
                flag_counts[f] = flag_counts.get(f, 0) + 1
        R = np.array([recip[i] for i in held_ids])
        L = plain_bound(yhat_held, q)
        floor = domain.metal_floor(profile)
        items[name] = {"ids": np.array(held_ids), "y": y, "yhat": yhat_held, "q": q, "flagged": flagged, "tier": tier,
                       "metal_floor": np.nan if floor is None else floor,
                       "metal": np.array([pm[i] > 0.5 for i in held_ids]), "recip": R,
                       "half": np.array([half_of[i] for i in held_ids]),
                       "split": np.array([split_of[i] for i in held_ids])}
        s = {"fold": name, "description": desc, "n_held": len(held_ids), "n_train": len(train), "n_cal": len(cal),
             "mae": float(np.mean(np.abs(y - yhat_held))), "mae_cal": float(np.mean(np.abs(y_cal - yhat_cal))),
             "q": q, "n_flagged": int(flagged.sum()), "n_in_domain": int((~flagged).sum()), "flags": flag_counts,
             "n_tier_element": int((tier == 1).sum()), "n_tier_other": int((tier == 2).sum()),
             "coverage_plain": coverage(y, L),
             "coverage_plain_in_domain": coverage(y[~flagged], L[~flagged]),
             "coverage_plain_flagged": coverage(y[flagged], L[flagged]),
             "kpoints_true": float(kpoint_count(R, y).mean()), "kpoints_plain": float(kpoint_count(R, L).mean())}
        summaries.append(s)
        log(f"fold {name}: MAE {s['mae']:.2f} (calibration {s['mae_cal']:.2f}), q {q:.2f}, flagged "
            f"{s['n_flagged']:,}/{s['n_held']:,}, L90 coverage {100 * s['coverage_plain']:.1f} % "
            f"(in domain {100 * s['coverage_plain_in_domain']:.1f} %, flagged {100 * s['coverage_plain_flagged']:.1f} %), "
            f"{time.time() - t:.0f} s")  # wall time on the console only: lco.json is the same on any machine
        # what it was trained and calibrated on (checks; fold none's val predictions feed modellib.studies.group_conformal)
        items[name].update({"train_ids": np.array(train), "cal_ids": np.array(cal), "cal_y": y_cal, "cal_yhat": yhat_cal})
    result = {"benchmark": bench.name, "limit": limit, "alpha": ALPHA, "params": {k: v for k, v in params.items()},
              "metallicity": "model" if metallicity is not None else "metal_rule", "folds": summaries, "items": items}
    evaluate_rule(result)
    log(f"done in {time.time() - t0:.0f} s")
    return result


def evaluate_rule(result: dict) -> None:
    """Add the out-of-domain rule to ``result``: the factors chosen on all LCO folds (``none``
    excluded) and, per fold, the nested coverage: the compounds of formula half h of fold k
    get the factors chosen on the **other** folds' compounds of the **other** half (neither
    this fold's predictions nor these compounds take part in choosing them). For
    comparison, one factor for both tiers (``single``), chosen the same way."""
    from harness.kpoints import kpoint_count

    items = result["items"]
    lco = [f for f in items if f != "none"]
    pool = [items[f] for f in lco] or list(items.values())
    fe, fo = choose_rule(pool)
    single = choose_factor(pool, (1, 2))
    result["rule"] = {"kind": "scale", "factor": fo, "factor_element": fe, "single_factor": single,
                      "target_coverage": TARGET_COVERAGE, "min_compounds_per_fold": MIN_TIER_N,
                      "criterion": "per tier, the smallest factor covering the tier's compounds of every LCO fold "
                                   "(with at least min_compounds_per_fold of them) at the target",
                      "chosen_on": lco, "grid": [float(FACTOR_GRID[0]), float(FACTOR_GRID[-1]), 0.05]}
    for s in result["folds"]:
        it = items[s["fold"]]
        others = [items[f] for f in lco if f != s["fold"]] or pool
        n = len(it["y"])
        fac, fac1 = np.empty(n), np.empty(n)
        nested = {}
        for h in (0, 1):
            sel = it["half"] == h
            nested[h] = choose_rule(others, half=1 - h)
            fac[sel] = np.where(it["tier"][sel] == 1, nested[h][0], nested[h][1])
            fac1[sel] = choose_factor(others, (1, 2), half=1 - h)
        s["factors_nested"] = [list(nested[0]), list(nested[1])]
        s["single_factor_nested"] = sorted(set(fac1.tolist()))
        for tag, f in (("nested", fac), ("single_nested", fac1), ("final", (fe, fo))):
            L = rule_bound(it["yhat"], it["q"], it["tier"], f)
            s[f"coverage_rule_{tag}"] = coverage(it["y"], L)
            s[f"coverage_rule_{tag}_flagged"] = coverage(it["y"][it["flagged"]], L[it["flagged"]])
            s[f"kpoints_rule_{tag}"] = float(kpoint_count(it["recip"], L).mean())
        m = it["metal"]
        L = rule_bound(it["yhat"], it["q"], it["tier"], fac)
        s["coverage_plain_metal"] = coverage(it["y"][m], plain_bound(it["yhat"], it["q"])[m])
        s["coverage_rule_nested_metal"] = coverage(it["y"][m], L[m])
        s["n_metal"] = int(m.sum())
        # harness.domain's tier-3 floor for metals (the fold's training metals' P99), measured
        # on every held-out metal: the store has no O/N-free metal to measure it on.
        Lf = np.maximum(L, np.nan_to_num(float(it["metal_floor"])))
        s["metal_floor"] = float(it["metal_floor"])
        s["coverage_floor_metal"] = coverage(it["y"][m], Lf[m])
        s["kpoints_rule_nested_metal"] = float(kpoint_count(it["recip"][m], L[m]).mean()) if m.any() else None
        s["kpoints_floor_metal"] = float(kpoint_count(it["recip"][m], Lf[m]).mean()) if m.any() else None
        it["factor_nested"] = fac


# ------------------------------------------------------------------ report


def _pct(x) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


def table(result: dict) -> str:
    head = ("| fold | held out | train | MAE | q | flagged (element-only / other) | L90 cov | L90 cov in-domain | "
            "L90 cov flagged | **rule cov** (nested) | rule cov flagged | c nested (half 0; half 1) | k-pts true | "
            "k-pts L90 | k-pts rule | one-factor rule: cov / k-pts |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n")
    rows = []
    for s in result["folds"]:
        cs = "; ".join(f"{a:.2f}/{b:.2f}" for a, b in s["factors_nested"])
        rows.append(f"| {s['fold']} | {s['n_held']:,} | {s['n_train']:,} | {s['mae']:.2f} | {s['q']:.1f} | "
                    f"{s['n_flagged']:,} ({100 * s['n_flagged'] / s['n_held']:.0f} %: {s['n_tier_element']:,} / "
                    f"{s['n_tier_other']:,}) | {_pct(s['coverage_plain'])} | "
                    f"{_pct(s['coverage_plain_in_domain'])} | {_pct(s['coverage_plain_flagged'])} | "
                    f"**{_pct(s['coverage_rule_nested'])}** | {_pct(s['coverage_rule_nested_flagged'])} | "
                    f"{cs} | {s['kpoints_true']:,.0f} | {s['kpoints_plain']:,.0f} | "
                    f"{s['kpoints_rule_nested']:,.0f} | {_pct(s['coverage_rule_single_nested'])} / "
                    f"{s['kpoints_rule_single_nested']:,.0f} |")
    return head + "\n".join(rows) + "\n"


def pooled(result: dict) -> dict:
    """Pooled over the LCO folds (``none`` excluded), each held-out compound once per fold."""
    out = {}
    lco = [s for s in result["folds"] if s["fold"] != "none"]
    if not lco:
        return out
    ys, Lp, Ln = [], [], []
    for s in lco:
        it = result["items"][s["fold"]]
        ys.append(it["y"])
        Lp.append(plain_bound(it["yhat"], it["q"]))
        Ln.append(rule_bound(it["yhat"], it["q"], it["tier"], it["factor_nested"]))
    y = np.concatenate(ys)
    out["n"] = int(len(y))
    out["coverage_plain"] = coverage(y, np.concatenate(Lp))
    out["coverage_rule_nested"] = coverage(y, np.concatenate(Ln))
    out["worst_fold_rule_single_nested"] = min(s["coverage_rule_single_nested"] for s in lco)
    out["worst_fold_plain"] = min(s["coverage_plain"] for s in lco)
    out["worst_fold_rule_nested"] = min(s["coverage_rule_nested"] for s in lco)
    out["folds_below_claim_plain"] = [s["fold"] for s in lco if s["coverage_plain"] < CLAIM_COVERAGE]
    out["folds_below_claim_rule_nested"] = [s["fold"] for s in lco if s["coverage_rule_nested"] < CLAIM_COVERAGE]
    return out


def markdown(result: dict, command: str) -> str:
    rule = result["rule"]
    pool = pooled(result)
    lines = [
        "# Leave-chemistry-out evaluation (issue 12, part 2)",
        "",
        f"Generated by `{command}` (modellib/studies/lco.py); benchmark `{result['benchmark']}`"
        + (f", first {result['limit']} ids per split" if result.get("limit") else "") + ".",
        "",
        "Each fold holds out every compound (train, val and test ids) of one family; the model (LightGBM, Huber on "
        f"log L, physics + composition statistics + metallicity estimates, {result['params']['n_estimators']} trees, "
        "1 seed) trains on the rest of train; q is the conformal offset (α = 0.1, additive score, continuous "
        "predictions) on the rest of val. `flagged`: held-out compounds that harness.domain.check puts out of domain "
        "against a profile of that fold's training set; `element-only`: out of domain only by unseen/rare elements "
        "and not likely a metal (harness.domain.ood_tier 1), `other`: everything else out of domain (tier 2). "
        "`L90`: floor_5(ŷ + q). `rule`: the conservative bound harness.domain.safe_length, max(L90, floor_5(c·(ŷ + q))) "
        "for flagged compounds (c = c_element for tier 1, c_other for tier 2), L90 for the rest; each c is the "
        f"smallest factor (grid {FACTOR_GRID[0]:g}–{FACTOR_GRID[-1]:g}, step 0.05) covering ≥ "
        f"{100 * TARGET_COVERAGE:.0f} % of its tier's compounds in **every** fold used to choose it (folds with ≥ "
        f"{MIN_TIER_N} such compounds). `rule cov` is nested: compounds are split in two halves by a hash of the "
        "reduced formula, and the compounds of half h of fold k get the factors chosen on the **other** folds' "
        "compounds of the **other** half (`c nested`: c_element/c_other for half 0; half 1), so neither the fold nor "
        "the compounds themselves take part in choosing their factors. `one-factor rule`: the same with one c for "
        "both tiers. Fold `none` holds out nothing: its row is the test set of the in-distribution model (what the "
        "rule costs on ordinary inputs). k-points: mean n1·n2·n3 per held-out compound (lattice: the definition's "
        "lattice.csv for val/test ids, computed for train ids).",
        "",
        table(result),
        f"Final factors (chosen on all LCO folds): **c_element = {rule['factor_element']:.2f}, c_other = "
        f"{rule['factor']:.2f}** (one-factor variant: {rule['single_factor']:.2f}); these are harness.domain.OOD_RULE.",
        "",
    ]
    if pool:
        lines += [
            f"Pooled over the {len([s for s in result['folds'] if s['fold'] != 'none'])} LCO folds ({pool['n']:,} "
            f"held-out predictions): plain L90 covers {_pct(pool['coverage_plain'])} %, the rule (nested c) "
            f"{_pct(pool['coverage_rule_nested'])} %. Worst fold: plain {_pct(pool['worst_fold_plain'])} %, rule "
            f"{_pct(pool['worst_fold_rule_nested'])} % (one-factor rule {_pct(pool['worst_fold_rule_single_nested'])} %). "
            f"Folds below {100 * CLAIM_COVERAGE:.0f} %: plain "
            f"{', '.join(pool['folds_below_claim_plain']) or 'none'}; rule "
            f"{', '.join(pool['folds_below_claim_rule_nested']) or 'none'}.",
            "",
            "Metals among the held-out compounds (P(metal) > 0.5), plain L90 → rule: "
            + "; ".join(f"{s['fold']} {s['n_metal']:,}: {_pct(s['coverage_plain_metal'])} → "
                        f"{_pct(s['coverage_rule_nested_metal'])} %" for s in result["folds"] if s["n_metal"]) + ".",
            "",
            "The floor for metals beyond the evidence (harness.domain: an O/N-free likely metal also gets at least the "
            f"training metals' {BEYOND_EVIDENCE_METAL_QUANTILE}; the store has none to measure it on), applied here to every "
            "held-out metal, rule → rule with the floor (in brackets: the fold's training metals' "
            f"{BEYOND_EVIDENCE_METAL_QUANTILE}, or all training compounds' where the fold holds out every metal, in Å): "
            "coverage, mean k-points: "
            + "; ".join(f"{s['fold']} ({s['metal_floor']:g}): {_pct(s['coverage_rule_nested_metal'])} → "
                        f"{_pct(s['coverage_floor_metal'])} %, {s['kpoints_rule_nested_metal']:,.0f} → "
                        f"{s['kpoints_floor_metal']:,.0f}" for s in result["folds"] if s["n_metal"]) + ".",
            "",
        ]
    lines += ["Flags raised on held-out compounds, per fold: "
              + "; ".join(f"{s['fold']}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(s["flags"].items()))
                          for s in result["folds"]) + "."]
    return "\n".join(lines) + "\n"


def to_json(result: dict) -> dict:
    from harness.domain import _jsonable

    return _jsonable({k: v for k, v in result.items() if k != "items"} | {"pooled": pooled(result)})


def write(result: dict, out_dir: Path, command: str) -> list[Path]:
    out_dir = Path(out_dir)
    md, js = out_dir / "lco.md", out_dir / "lco.json"
    atomic.write_text(md, markdown(result, command))
    atomic.write_text(js, json.dumps(to_json(result), indent=1, sort_keys=True) + "\n")
    return [md, js]


def save_items(result: dict, path: Path) -> None:
    """Per-compound arrays of every fold (npz; for further studies, not committed)."""
    flat = {}
    for fold, it in result["items"].items():
        for k, v in it.items():
            flat[f"{fold}/{k}"] = np.asarray(v)
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **flat)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m modellib.studies.lco", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="folds: " + "; ".join(f"{k}: {v[0]}" for k, v in FOLDS.items()))
    ap.add_argument("--folds", default=",".join(FOLDS), help="comma-separated fold names (default: all)")
    ap.add_argument("--limit", type=int, default=None, help="first N ids of each split only (quick runs)")
    ap.add_argument("--n-estimators", type=int, default=LGBM_PARAMS["n_estimators"])
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: results/lco)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--no-metallicity", action="store_true",
                    help="no metallicity model (no such features; the domain check uses its composition rule)")
    ap.add_argument("--items", type=Path, default=None,
                    help="also save per-compound arrays here (.npz; default: <cache>/lco/items.npz)")
    a = ap.parse_args(argv)
    try:
        res = run([f for f in a.folds.split(",") if f], limit=a.limit, params={"n_estimators": a.n_estimators},
                  data_dir=a.data_dir, metallicity=None if a.no_metallicity else "model")
        out = a.out if a.out is not None else paths.results_dir() / "lco"
        cmd = "python -m modellib.studies.lco" + (f" {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
        for p in write(res, out, cmd.strip()):
            log(f"wrote {p}")
        items = a.items if a.items is not None else paths.cache_dir() / "lco" / "items.npz"
        save_items(res, items)
        log(f"per-compound arrays: {items}")
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
