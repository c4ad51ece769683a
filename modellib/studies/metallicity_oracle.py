"""Would knowing which materials are metals make kspace_gbm, or its per-group bound,
much better? An oracle diagnostic for issue 12 ("a sharper model for metals is probably
the main lever"), on val only.

The oracle is JARVIS' own OptB88vdW band gap of each material (the jarvis-leaderboard
package's ``dft_3d_optb88vdw_bandgap`` benchmark, all its splits): a DFT result of the
material itself, which no model may read, so this only measures an upper bound of what a
perfect metallicity estimate could give. Two questions:

1. Model: one kspace_gbm booster (same features, parameters and cost weights, seed 0) with
   and without the oracle gap == 0 flag (or the gap itself) as an extra feature: val MAE,
   overall and on the oracle's metals.
2. Bound: the per-group bound at harness.group_bound's constants with the oracle's metal
   label instead of P(metal) > 0.5 (metal scale m 2, 3, 4), over the same val halvings as
   modellib.studies.group_bound_choice.

Reads the features of the committed kspace_gbm artifact (``python -m harness run
kspace_gbm`` first). About 5 minutes on 2 cores when the features are cached.

    python -m modellib.studies.metallicity_oracle      # -> results/kspace_gbm/metallicity_oracle.md, .json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from harness import paths
from harness.errors import HarnessError
from modellib.studies import report

GAP_BENCHMARK = "dft_3d_optb88vdw_bandgap"
PLUS_U = frozenset({"Co", "Cr", "Fe", "Mn", "Mo", "Ni", "V", "W"})  # Materials Project's +U elements (oxides, fluorides)
N_REP = 50


def oracle_gaps() -> dict[str, float]:
    """{JARVIS id: OptB88vdW gap (eV)} over every split of the band-gap benchmark."""
    import jarvis_leaderboard

    path = (Path(jarvis_leaderboard.__file__).parent / "benchmarks" / "AI" / "SinglePropertyPrediction"
            / f"{GAP_BENCHMARK}.json.zip")
    if not path.is_file():
        raise HarnessError(f"{path}: missing (the jarvis-leaderboard package ships it)")
    with zipfile.ZipFile(path) as z:
        data = json.loads(z.read(z.namelist()[0]))
    return {k: float(v) for split in data.values() for k, v in split.items()}


def model_rows(task, est, gaps: dict[str, float]) -> dict:
    """Val MAE of one kspace_gbm booster without / with the oracle as a feature."""
    import lightgbm as lgb

    from harness import registry

    module = registry.read_folder(paths.MODELS_DIR / "kspace_gbm").load_module()
    X = {s: task.X(s) for s in ("train", "val")}
    F = {s: est._features(X[s])[est.feature_names_].reset_index(drop=True) for s in X}
    y = {s: task.y(s) for s in X}
    g = {s: np.array([gaps.get(i, np.nan) for i in task.ids(s)]) for s in X}
    w = module.cost_weights(X["train"]["atoms"], y["train"], est.cost_weight)
    metal = g["val"] <= 0
    out = {"n_val": int(len(y["val"])), "n_oracle_metals": int(metal.sum())}
    for name, extra in (("baseline", None), ("oracle metal flag", lambda s: (g[s] <= 0).astype(float)),
                        ("oracle gap", lambda s: g[s])):
        Ft, Fv = F["train"].copy(), F["val"].copy()
        if extra is not None:
            Ft["oracle"], Fv["oracle"] = extra("train"), extra("val")
        m = lgb.LGBMRegressor(objective="huber", alpha=est.huber_delta, n_estimators=est.n_estimators,
                              learning_rate=est.learning_rate, num_leaves=est.num_leaves,
                              min_child_samples=est.min_child_samples, subsample=est.subsample, subsample_freq=1,
                              colsample_bytree=est.colsample_bytree, random_state=0, n_jobs=2, deterministic=True,
                              force_row_wise=True, verbose=-1)
        m.fit(Ft, np.log(y["train"]), sample_weight=w)
        r = np.abs(y["val"] - np.exp(m.predict(Fv)))
        out[name] = {"mae": float(r.mean()), "mae_metals": float(r[metal].mean()), "mae_non_metals": float(r[~metal].mean())}
        print(f"[metallicity_oracle] {name}: val MAE {r.mean():.3f}", file=sys.stderr, flush=True)
    return out


def plus_u_shares(task, gaps: dict[str, float], pred_metal) -> dict:
    """Share of val materials with a Materials Project +U element: among the oracle metals
    P(metal) misses, among those it finds, among all."""
    ids = task.ids("val")
    has_u = np.array([bool(set(task.materials.at[i, "atoms"].elements) & PLUS_U) for i in ids])
    metal = np.array([gaps.get(i, np.nan) <= 0 for i in ids])
    pred = np.asarray(pred_metal, dtype=bool)
    return {"missed": float(has_u[metal & ~pred].mean()), "found": float(has_u[metal & pred].mean()), "all": float(has_u.mean())}


def bound_rows(val: dict, ids: list[str], gaps: dict[str, float], n_rep: int = N_REP) -> dict:
    """Val halvings of the per-group bound with P(metal) labels and with oracle labels;
    ``val``: modellib.studies.group_bound_choice.inputs()'s val split, of the ids ``ids``."""
    from harness import group_bound as gb
    from modellib.studies import group_bound_choice as gbc

    metal = np.array([gaps.get(i, np.nan) <= 0 for i in ids])
    point = {**gb.HYPER, "slack": gb.GROUP_SLACK}
    oracle = {**val, "lab": val["lab"].copy()}
    oracle["lab"][:, 0] = np.where(metal, "metal", "non-metal")
    pred_metal = val["lab"][:, 0] == "metal"
    rows = {"P(metal) > 0.5": gbc.halvings(val, point, n_rep)}
    for m in (2.0, 3.0, 4.0):
        rows[f"oracle, m {m:g}"] = gbc.halvings(oracle, {**point, "metal_scale": m}, n_rep)
    return {"rows": rows, "point": point, "n_rep": n_rep, "oracle_metal_share": float(metal.mean()),
            "predicted_metal_share": float(pred_metal.mean()),
            "precision": float(metal[pred_metal].mean()), "recall": float(pred_metal[metal].mean())}


def markdown(res: dict, command: str) -> str:
    m, b = res["model"], res["bound"]
    lines = ["# Metallicity oracle (issue 12): how much would knowing the metals help?", "",
             f"Generated by `{command}` (modellib/studies/metallicity_oracle.py), val only. The oracle is JARVIS' "
             f"OptB88vdW gap of each material ({GAP_BENCHMARK}), a DFT result no model may read: an upper bound of "
             "what a perfect metallicity estimate could give.", "",
             f"Val: {b['oracle_metal_share']:.1%} of materials have a zero OptB88vdW gap; kspace_gbm's P(metal) > 0.5 "
             f"marks {b['predicted_metal_share']:.1%} (precision {b['precision']:.2f}, recall {b['recall']:.2f}). "
             f"{res['plus_u']['missed']:.0%} of the zero-gap materials it misses contain an element Materials Project "
             f"(whose labels it learned) treats with +U ({', '.join(sorted(PLUS_U))}), against "
             f"{res['plus_u']['found']:.0%} of those it finds and {res['plus_u']['all']:.0%} of val: JARVIS' "
             "OptB88vdW has no +U, so many transition-metal oxides are metals there and not in MP.", "",
             f"## One kspace_gbm booster (seed 0), val {m['n_val']:,}, of which {m['n_oracle_metals']:,} oracle metals", "",
             "| extra feature | val MAE | on oracle metals | on the others |", "|---|---:|---:|---:|"]
    for name in ("baseline", "oracle metal flag", "oracle gap"):
        r = m[name]
        lines.append(f"| {name} | {r['mae']:.3f} | {r['mae_metals']:.3f} | {r['mae_non_metals']:.3f} |")
    p = b["point"]
    lines += ["", f"## Per-group bound (s0 {p['scale']:g}, c {p['power']:g}, slack {p['slack']:g}), means over "
              f"{b['n_rep']} val halvings", "",
              "| metal label | val coverage | worst group | val k-points |", "|---|---:|---|---:|"]
    for name, r in b["rows"].items():
        lines.append(f"| {name} | {100 * r['coverage']:.1f} % | {100 * r['worst_coverage']:.1f} % {r['worst_group']} | "
                     f"{r['kpoints']:,.0f} |")
    lines += ["", "The groups of the last rows are the oracle's, so their worst groups are other groups than the "
              "first row's; the k-points compare directly.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m modellib.studies.metallicity_oracle", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-rep", type=int, default=N_REP, help=f"val halvings for the bound (default {N_REP})")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default results/kspace_gbm)")
    a = ap.parse_args(argv)
    t0 = time.time()
    try:
        from harness import benchmark as bm
        from harness.fitted import load_fitted
        from harness.task import Task

        gaps = oracle_gaps()
        task = Task.load(bm.load(bm.SUBSET, paths.benchmarks_dir()))
        from modellib.studies import group_bound_choice as gbc

        val = gbc.inputs()["val"]
        res = {"model": model_rows(task, load_fitted("kspace_gbm").estimator, gaps),
               "bound": bound_rows(val, task.ids("val"), gaps, a.n_rep),
               "plus_u": plus_u_shares(task, gaps, val["lab"][:, 0] == "metal")}
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out = a.out if a.out is not None else paths.results_dir() / "kspace_gbm"
    report.write(out, "metallicity_oracle", "modellib.studies.metallicity_oracle", argv, res, markdown)
    print(f"[metallicity_oracle] {time.time() - t0:.0f} s; wrote {out / 'metallicity_oracle.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
