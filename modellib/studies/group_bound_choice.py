"""How harness.group_bound's constants were chosen, reproducibly, and what they give on test
(issue 12, part 3).

The per-group bound has four constants: the working model's scale s0, cost power c and
metal factor m (HYPER) and the per-group slack (GROUP_SLACK, level τ = 1 − α − slack).
They are chosen on **val only**: for every point of a small grid, 50 random halvings of
val (calibrate on one half, measure on the other, fixed seed); the rule keeps the points
whose mean val coverage is 90 ± 1 % and whose every group's mean val coverage is ≥ 89 %
(1 % of margin above the issue's 88 % floor: per-group test coverage on 95–417 materials
has a sampling spread of ±2–4 %), then takes the fewest mean val k-points. Test is
evaluated once, for the chosen point, calibrated on all of val, with 95 % bootstrap
intervals over test materials (the calibration held fixed): every figure there is one
draw of a noisy statistic, and the intervals say how noisy. A hindsight floor, calibrated
on test's own targets (a diagnostic, never a choice), says how far any val-calibrated
bound of this family could get on this test set with this model.

Inputs are committed files only (no features, no refit): kspace_gbm's continuous val/test
predictions (checked against its run record), the definition's targets and lattice.csv,
and the val/test group labels of results/domain. Runs in about 5 minutes on 2 cores.

    python -m modellib.studies.group_bound_choice            # -> results/lco/group_bound.md, .json, .png
    python -m modellib.studies.group_bound_choice --n-rep 5 --out /tmp/gb   # a quick look
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

from harness import group_bound as gb, paths
from harness.errors import HarnessError
from modellib.studies import report
from modellib.studies.group_conformal import random_halves

MODEL = "kspace_gbm"
ALPHA = 0.1
N_REP = 50
SEED = 0
N_BOOT = 2000
GRID = {"scale": (2.0, 3.0, 4.0), "power": (0.1, 0.2, 0.3), "metal_scale": (1.5, 2.0, 3.0), "slack": (0.0, 0.01, 0.02)}
MARGINAL_BAND = (0.89, 0.91)  # the issue's 90 ± 1 %
MIN_GROUP_VAL = 0.89  # every group's mean val coverage (the issue's 88 % plus 1 % margin)
ISSUE_GROUP_FLOOR = 0.88
HINDSIGHT_TAUS = tuple(np.round(np.arange(0.87, 0.9101, 0.0025), 4))  # per-group levels the hindsight scan tries


def split_inputs(b) -> dict:
    """y, reciprocal lengths and group labels of val and test of benchmark ``b``: ``recip``
    and ``lab`` of the cell the model sees (the bound's, as in predict), ``count_recip`` of
    the benchmark's own cell (where the k-points a user pays are counted)."""
    path = paths.results_dir().parent / gb.GROUPS_FILE.format(benchmark=b.name)
    ids = {s: b.ids[s] for s in ("val", "test")}
    read = gb.read_groups_file(path, ids)
    if read is None:
        raise HarnessError(f"{gb.GROUPS_FILE.format(benchmark=b.name)}: missing (run `python -m modellib.studies.domain_profile --benchmark {b.name}`)")
    groups, cells = read
    return {s: {"y": b.y(s), "recip": cells[s], "count_recip": np.array([b.recip[i] for i in b.ids[s]]),
                "lab": np.array([groups[s][G] for G in gb.GROUPINGS]).T} for s in ("val", "test")}


def inputs(model: str = MODEL) -> dict:
    """y, ŷ (continuous), reciprocal lengths and group labels of val and test, from the
    committed files of ``model`` on the subset benchmark."""
    from harness import benchmark as bm, leaderboard

    b = bm.load(bm.SUBSET, paths.benchmarks_dir())
    test_file = paths.submissions_dir() / model / b.submission_filename
    rec, files = leaderboard.checked_record(paths.results_dir(), model, b, test_file)
    if "val_continuous" not in files:
        raise HarnessError(f"{paths.results_dir() / model}: no continuous predictions (the bound is calibrated on them)")
    out = {"benchmark": b.name, "sha256": {k: rec["sha256"][k] for k in ("val_continuous", "test_continuous")}}
    point_files = {"val": files["val"], "test": test_file}  # the reported predictions: the bound's floor
    for s, d in split_inputs(b).items():
        out[s] = {**d, "yhat": leaderboard._on(files[f"{s}_continuous"], b.ids[s], b.ids[s]),
                  "point": leaderboard._on(point_files[s], b.ids[s], b.ids[s])}
    return out


def _group_masks(lab: np.ndarray) -> dict[str, np.ndarray]:
    return {f"{G}={v}": lab[:, j] == v for j, G in enumerate(gb.GROUPINGS) for v in gb.LABELS[G] if (lab[:, j] == v).any()}


def measure(y, L, recip, lab) -> dict:
    from harness.kpoints import kpoint_count

    cov = np.asarray(y) <= L
    per = {g: (float(cov[m].mean()), int(m.sum())) for g, m in _group_masks(lab).items()}
    worst = min(per, key=lambda g: per[g][0])
    return {"coverage": float(cov.mean()), "per_group": per, "worst_group": worst, "worst_coverage": per[worst][0],
            "kpoints": float(kpoint_count(recip, L).mean())}


def halvings(val: dict, point: dict, n_rep: int = N_REP, seed: int = SEED) -> dict:
    """Mean val coverage, per-group coverage and k-points over ``n_rep`` random halvings."""
    hp = {k: point[k] for k in gb.HYPER}
    tau = 1 - ALPHA - point["slack"]
    K, F, ok = gb._family(val["yhat"], val["recip"], val["lab"], hp, val["point"])
    s = gb.scores(val["y"], K, F, ok)
    keys = ["|".join(r) for r in val["lab"]]
    got = []
    for a, b in random_halves(len(s), n_rep, seed):
        thr = gb.thresholds(s[a], val["lab"][a], tau)
        lam = np.array([thr[keys[i]] for i in b])
        L = gb._lengths_at(lam, K[b], F[b], ok[b])
        got.append(measure(val["y"][b], L, val["count_recip"][b], val["lab"][b]))
    per = {g: float(np.mean([r["per_group"][g][0] for r in got if g in r["per_group"]])) for g in got[0]["per_group"]}
    worst = min(per, key=per.get)
    return {"coverage": float(np.mean([r["coverage"] for r in got])), "per_group": per, "worst_group": worst,
            "worst_coverage": per[worst], "kpoints": float(np.mean([r["kpoints"] for r in got]))}


def admissible(v: dict) -> bool:
    return MARGINAL_BAND[0] <= v["coverage"] <= MARGINAL_BAND[1] and v["worst_coverage"] >= MIN_GROUP_VAL


def choose(rows: list[dict]) -> int:
    """Index of the chosen grid point (val only): fewest k-points among the admissible ones,
    else the one with the best worst group."""
    ok = [i for i, r in enumerate(rows) if admissible(r["val"])]
    if not ok:
        return max(range(len(rows)), key=lambda i: rows[i]["val"]["worst_coverage"])
    return min(ok, key=lambda i: (rows[i]["val"]["kpoints"], i))


def bootstrap(y, L, recip, lab, n_boot: int = N_BOOT, seed: int = SEED, floor: float = ISSUE_GROUP_FLOOR) -> dict:
    """Over test materials resampled with replacement (fixed seed; the calibration held
    fixed): 95 % percentile intervals of the marginal coverage and the mean k-points, and
    the share of resamples in which every group is covered ≥ ``floor``."""
    from harness.kpoints import kpoint_count

    cov = (np.asarray(y) <= L).astype(float)
    K = kpoint_count(recip, L).astype(float)
    masks = list(_group_masks(lab).values())
    rng = np.random.default_rng(seed)
    n = len(cov)
    stats = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        c = cov[idx]
        worst = min(c[m[idx]].mean() for m in masks if m[idx].any())
        stats.append((c.mean(), K[idx].mean(), worst >= floor))
    stats = np.array(stats, dtype=float)
    lo, hi = np.percentile(stats[:, :2], [2.5, 97.5], axis=0)
    return {"coverage": [float(lo[0]), float(hi[0])], "kpoints": [float(lo[1]), float(hi[1])],
            "every_group_at_floor": float(stats[:, 2].mean()), "floor": floor}


def _hindsight_one(test: dict, hp: dict, taus) -> list[dict]:
    K, F, ok = gb._family(test["yhat"], test["recip"], test["lab"], hp, test["point"])
    s = gb.scores(test["y"], K, F, ok)
    keys = ["|".join(r) for r in test["lab"]]
    out = []
    for tau in taus:
        thr = gb.thresholds(s, test["lab"], float(tau))
        L = gb._lengths_at(np.array([thr[k] for k in keys]), K, F, ok)
        m = measure(test["y"], L, test["count_recip"], test["lab"])
        out.append({"point": {**hp, "level": float(tau)}, **{k: m[k] for k in ("coverage", "worst_group", "worst_coverage", "kpoints")}})
    return out


def hindsight(test: dict, n_jobs: int = 2, taus=HINDSIGHT_TAUS) -> dict:
    """Not a method, a diagnostic: the fewest test k-points this family of bounds reaches
    with this model when calibrated on **test's own targets** (every grid point of s0, c,
    m and a scan of the per-group level), subject to the issue's targets (coverage 90 ± 1 %,
    every group ≥ 88 %). No val-calibrated bound can be expected to beat it on this test
    set: what is left above it is the price of not knowing test, below it a sharper model."""
    from joblib import Parallel, delayed

    hps = sorted({tuple(p[k] for k in gb.HYPER) for p in grid_points()})
    runs = Parallel(n_jobs=n_jobs)(delayed(_hindsight_one)(test, dict(zip(gb.HYPER, h)), taus) for h in hps)
    rows = [r for rs in runs for r in rs]
    ok = [r for r in rows if MARGINAL_BAND[0] <= r["coverage"] <= MARGINAL_BAND[1] and r["worst_coverage"] >= ISSUE_GROUP_FLOOR]
    best = min(ok, key=lambda r: (r["kpoints"], sorted(r["point"].items()))) if ok else None
    return {"levels": [float(t) for t in taus], "n_points": len(rows), "n_meeting": len(ok), "best": best}


def grid_points() -> list[dict]:
    return [dict(zip(GRID, v)) for v in itertools.product(*GRID.values())]


def grid(val: dict, n_rep: int = N_REP, n_jobs: int = 2) -> list[dict]:
    """{point, val} for every grid point: its val halvings (any n_jobs, same numbers)."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    points = grid_points()
    jobs = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(halvings)(val, p, n_rep) for p in points)
    vals = list(tqdm(jobs, total=len(points), desc="group_bound grid", unit="point", file=sys.stderr))
    return [{"point": p, "val": v} for p, v in zip(points, vals)]


def run(n_rep: int = N_REP, n_jobs: int = 2, model: str = MODEL) -> dict:
    from harness import conformal

    data = inputs(model)
    rows = grid(data["val"], n_rep, n_jobs)
    k = choose(rows)
    chosen = rows[k]["point"]
    hp = {key: chosen[key] for key in gb.HYPER}
    v, t = data["val"], data["test"]
    params = gb.fit(v["y"], v["yhat"], v["recip"], v["lab"], ALPHA, hyper=hp, slack=chosen["slack"], point_cal=v["point"])
    L = gb.bound(t["yhat"], t["recip"], t["lab"], params, point=t["point"])
    test = measure(t["y"], L, t["count_recip"], t["lab"])
    test["bootstrap_95"] = bootstrap(t["y"], L, t["count_recip"], t["lab"])
    # The marginal-only option (harness.conformal's L90 on the same continuous predictions).
    q = conformal.conformal_offset(v["y"], v["yhat"], ALPHA)
    L90 = conformal.upper_bound(t["yhat"], q)
    plain = measure(t["y"], L90, t["count_recip"], t["lab"])
    plain["bootstrap_95"] = bootstrap(t["y"], L90, t["count_recip"], t["lab"])
    from harness.kpoints import kpoint_count

    return {"hindsight": hindsight(t, n_jobs), "benchmark": data["benchmark"], "model": model, "inputs_sha256": data["sha256"], "n_rep": n_rep,
            "seed": SEED, "grid": GRID, "rule": {"marginal_band": MARGINAL_BAND, "min_group_val": MIN_GROUP_VAL},
            "rows": rows, "chosen": chosen, "current": {**gb.HYPER, "slack": gb.GROUP_SLACK}, "test": test,
            "plain_l90": {"offset": float(q), **plain}, "n": {"val": len(v["y"]), "test": len(t["y"])},
            "kpoints_true": float(kpoint_count(t["count_recip"], t["y"]).mean())}


def _pt(p: dict) -> str:
    return f"s0 {p['scale']:g}, c {p['power']:g}, m {p['metal_scale']:g}, slack {p['slack']:g}"


def _hindsight_lines(h: dict | None) -> list[str]:
    if not h:
        return []
    head = ("**Hindsight floor (a diagnostic, not a method: calibrated on test's own targets).** Over the "
            f"{h['n_points']} combinations of the grid's s0, c, m and per-group levels "
            f"{100 * h['levels'][0]:.2f}–{100 * h['levels'][-1]:.2f} %, calibrated on test itself, ")
    b = h["best"]
    if b is None:
        return [head + "none meets coverage 90 ± 1 % with every group ≥ 88 %.", ""]
    p = b["point"]
    return [head + f"the fewest k-points meeting coverage 90 ± 1 % with every group ≥ 88 % is **{b['kpoints']:,.0f}** "
            f"(s0 {p['scale']:g}, c {p['power']:g}, m {p['metal_scale']:g}, level {100 * p['level']:.2f} %: "
            f"{100 * b['coverage']:.1f} % covered, worst group {100 * b['worst_coverage']:.1f} % {b['worst_group']}; "
            f"{h['n_meeting']} of {h['n_points']} combinations meet them). A bound calibrated on val cannot be expected "
            "to do better on this test set; the gap above it is the price of not knowing test, and lowering the floor "
            "needs a sharper model.", ""]


def markdown(res: dict, command: str) -> str:
    t, pl = res["test"], res["plain_l90"]
    lines = ["# Choosing the per-group safe length's constants (issue 12, part 3)", "",
             f"Generated by `{command}` (modellib/studies/group_bound_choice.py) from {res['model']}'s committed "
             f"continuous predictions on `{res['benchmark']}` (val {res['n']['val']:,}, test {res['n']['test']:,} "
             "of the offline subset). Grid: " + "; ".join(f"{k} {', '.join(f'{x:g}' for x in v)}" for k, v in res["grid"].items())
             + f". Val: means over {res['n_rep']} random halvings (seed {res['seed']}). Rule: mean val coverage "
             f"{100 * res['rule']['marginal_band'][0]:.0f}–{100 * res['rule']['marginal_band'][1]:.0f} %, every group's "
             f"mean val coverage ≥ {100 * res['rule']['min_group_val']:.0f} %, then the fewest val k-points.", "",
             f"**Chosen: {_pt(res['chosen'])}** (harness.group_bound has {_pt(res['current'])}).", "",
             "## Test, once (calibrated on all of val; 95 % bootstrap intervals over test materials)", "",
             "| bound | coverage | worst group | every group ≥ 88 % in | mean k-points |", "|---|---|---|---:|---|",
             *[f"| {name} | {100 * r['coverage']:.1f} % ({100 * r['bootstrap_95']['coverage'][0]:.1f}–"
               f"{100 * r['bootstrap_95']['coverage'][1]:.1f}) | {100 * r['worst_coverage']:.1f} % {r['worst_group']} | "
               f"{100 * r['bootstrap_95']['every_group_at_floor']:.0f} % of resamples | {r['kpoints']:,.0f} "
               f"({r['bootstrap_95']['kpoints'][0]:,.0f}–{r['bootstrap_95']['kpoints'][1]:,.0f}) |"
               for name, r in (("per-group (chosen)", t), (f"marginal L90 (offset {pl['offset']:.2f} Å)", pl))],
             f"| true lengths | 100 % | 100 % | | {res['kpoints_true']:,.0f} |", "",
             "Per group, per-group bound: " + ", ".join(f"{g} {100 * c:.1f} % (n {n:,})" for g, (c, n) in t["per_group"].items()) + ".", "",
             "Per group, marginal L90: " + ", ".join(f"{g} {100 * c:.1f} %" for g, (c, n) in pl["per_group"].items()) + ".", "",
             "Intervals: 95 % bootstrap over test materials. With 95–417 test materials per group, a group's "
             "coverage moves by ±2–4 % between draws, so 'every group ≥ 88 %' on one test set is partly luck; the "
             "resample share says how often it holds.", "",
             *_hindsight_lines(res.get("hindsight")),
             "## Val halvings (the only numbers the choice saw)", "",
             "| s0 | c | m | slack | val cov | val worst group | val k-pts | admissible |", "|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in sorted(res["rows"], key=lambda r: r["val"]["kpoints"]):
        p, v = r["point"], r["val"]
        mark = "**chosen**" if p == res["chosen"] else ("yes" if admissible(v) else "")
        lines.append(f"| {p['scale']:g} | {p['power']:g} | {p['metal_scale']:g} | {p['slack']:g} | {100 * v['coverage']:.1f} | "
                     f"{100 * v['worst_coverage']:.1f} ({v['worst_group']}) | {v['kpoints']:,.0f} | {mark} |")
    lines += ["", "Inputs (sha256): " + ", ".join(f"{k} {v[:12]}…" for k, v in res["inputs_sha256"].items()) + ".", ""]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> bool:
    """results/lco/group_bound.png: each group's test coverage under the marginal L90 and the
    per-group bound, with 95 % Wilson intervals (binomial, n the group's test materials),
    against the issue's 88 % floor and the 90 % level. Returns whether it was (re)written."""
    from harness import plots  # first: it selects the Agg backend

    import matplotlib.pyplot as plt
    from scipy.stats import binomtest

    series = (("marginal L90", res["plain_l90"], "C0", -0.18), ("per-group bound", res["test"], "C3", 0.18))
    groups = list(res["test"]["per_group"])
    fig, ax = plt.subplots(figsize=(7, 0.42 * len(groups) + 2.2), dpi=110)
    for name, r, color, dy in series:
        for k, g in enumerate(groups):
            cov, n = r["per_group"][g]
            ci = binomtest(int(round(cov * n)), n).proportion_ci(0.95, method="wilson")
            ax.errorbar([100 * cov], [k + dy], xerr=[[100 * (cov - ci.low)], [100 * (ci.high - cov)]], fmt="o", ms=5,
                        color=color, capsize=2, lw=1, label=f"{name}: {100 * r['coverage']:.1f} % overall, "
                        f"{r['kpoints']:,.0f} k-points" if k == 0 else None)
    ax.axvline(100 * ISSUE_GROUP_FLOOR, color="0.3", ls="--", lw=0.8, label=f"{100 * ISSUE_GROUP_FLOOR:.0f} % per group (issue 12)")
    ax.axvline(100 * (1 - ALPHA), color="firebrick", ls=":", lw=0.8, label=f"{100 * (1 - ALPHA):.0f} % level")
    ax.set_yticks(range(len(groups)), [f"{g.split('=')[1]} (n {res['test']['per_group'][g][1]:,})" for g in groups], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test materials with true length ≤ safe length (%)")
    ax.set_title(f"{res['model']}: safe length per group on test (calibrated on val; 95 % Wilson intervals)\n"
                 f"{res['benchmark']}: {res['n']['test']:,} covered test ids", fontsize=9)
    ax.grid(True, axis="x", lw=0.3, alpha=0.5)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, frameon=False)
    fig.tight_layout()
    return plots.save(fig, path, source=plot_source(res))


def plot_source(res: dict) -> str:
    """What the plot draws, as a digest (its PNG's Source text chunk)."""
    import hashlib
    import json

    drawn = {k: res[k] for k in ("model", "benchmark", "n", "test", "plain_l90")}
    return "group_bound.json sha256 " + hashlib.sha256(json.dumps(drawn, sort_keys=True).encode()).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m modellib.studies.group_bound_choice", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-rep", type=int, default=N_REP, help=f"val halvings per grid point (default {N_REP})")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="output folder (default results/lco)")
    a = ap.parse_args(argv)
    t0 = time.time()
    try:
        res = run(a.n_rep, a.n_jobs)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out = a.out if a.out is not None else paths.results_dir() / "lco"
    report.write(out, "group_bound", "modellib.studies.group_bound_choice", argv, res, markdown)
    plot(res, out / "group_bound.png")
    t = res["test"]
    print(f"[group_bound_choice] {time.time() - t0:.0f} s; chosen {_pt(res['chosen'])}; test {100 * t['coverage']:.1f} % covered, worst group "
          f"{100 * t['worst_coverage']:.1f} % ({t['worst_group']}), {t['kpoints']:,.0f} k-points; wrote {out / 'group_bound.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
