"""Calibrated safe k-point length L90: a split-conformal upper bound on the converged
length, calibrated on a model's val predictions, evaluated on test.

    L90(x) = floor_5( ŷ(x) + q̂ ),   q̂ = the ⌈(n+1)(1-α)⌉-th smallest of s_i = y_i − ŷ_i on val

Score: the additive residual y − ŷ. Chosen on val only (300 random halvings of the
1,767 covered val ids, calibrate on one half, measure on the other; α = 0.1, both
floored to the grid): additive beat the multiplicative score y/ŷ and Mondrian
(per-ŷ-bin, 3–8 bins) variants of both on mean k-points per material at equal
coverage (rf_composition: additive ≈1,160 vs multiplicative ≈1,320, binned ≥ 1,490;
all ≈ 90.2 % covered; train_median is a constant, where all coincide). A multiplicative
or binned score widens the bound where ŷ is large, and there the cost (∝ L³) is largest.

Grid: converged lengths are multiples of 5 Å (JARVIS steps the length by 5), so for
such y, y ≤ L ⇔ y ≤ 5·⌊L/5⌋: flooring the bound to the grid keeps exactly the same
covered set (hence the conformal guarantee) and only removes k-points that can never
be needed (val halvings, rf_composition: ≈1,350 → ≈1,160 k-points). Rounding up would waste them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.kpoints import GRID, kpoint_count  # noqa: F401 (GRID re-exported: the 5 Å grid)

ALPHA = 0.1  # L90: at least 90 % of materials need no more than L90
FIXED_QUANTILE = 0.9  # the fixed length a high-throughput user would take: train P90


def conformal_offset(y_cal, yhat_cal, alpha: float = ALPHA) -> float:
    """q̂ of the additive score y − ŷ on the calibration set.

    Split conformal (Vovk et al. 2005; Lei et al. 2018): with n exchangeable
    calibration scores, the ⌈(n+1)(1−α)⌉-th smallest one bounds a new score with
    probability ≥ 1 − α. Plain ``np.quantile(s, 1 − α)`` interpolates between order
    statistics and under-covers by O(1/n). We take that order statistic directly:
    ``np.quantile(s, k/n, method="higher")`` (MAPIE's formula) is not it, numpy
    indexes at q·(n−1), which with ties on the 5 Å grid jumps a whole step (train_median
    on val: 30 instead of 25 Å). MAPIE/crepes are not in the pinned environment and
    this is two lines."""
    y = np.asarray(y_cal, dtype=float).ravel()
    yhat = np.asarray(yhat_cal, dtype=float).ravel()
    if y.shape != yhat.shape:
        raise HarnessError(f"conformal calibration: {len(y)} targets vs {len(yhat)} predictions")
    n = len(y)
    k = math.ceil(round((n + 1) * (1 - alpha), 9))  # round(): (n+1)(1-α) in floats can be k + 1e-15
    if n == 0 or k > n:
        raise HarnessError(f"conformal calibration: {n} calibration material(s) cannot give a {1 - alpha:.0%} bound "
                           f"(needs at least {math.ceil((1 - alpha) / alpha)})")
    scores = y - yhat
    return float(np.partition(scores, k - 1)[k - 1])  # the k-th smallest score


def floor_to_grid(length, grid: float = GRID) -> np.ndarray:
    """Largest multiple of ``grid`` ≤ length (at least one grid step). Exact: the
    float division is corrected so that for y on the grid, y ≤ L ⇔ y ≤ result."""
    L = np.asarray(length, dtype=float)
    k = np.floor(L / grid)
    k = np.where(k * grid > L, k - 1, k)
    k = np.where((k + 1) * grid <= L, k + 1, k)
    return np.maximum(k, 1.0) * grid


def upper_bound(yhat, offset: float, grid: float = GRID) -> np.ndarray:
    """L90 = ŷ + q̂ floored to the grid."""
    return floor_to_grid(np.asarray(yhat, dtype=float) + offset, grid)


def fixed_length(train_targets, quantile: float = FIXED_QUANTILE) -> float:
    """One length for every material: the train set's P90, as the smallest train length
    that at least 90 % of train materials need no more than (``inverted_cdf``: an actual
    train length, so on the grid)."""
    return float(np.quantile(np.asarray(train_targets, dtype=float), quantile, method="inverted_cdf"))


@dataclass(frozen=True)
class Safety:
    """L90 of one model on test, against the fixed train-P90 length."""

    offset: float  # q̂ (Å)
    coverage: float  # fraction of test materials with true length ≤ L90
    kpoints_mean: float  # mean n1·n2·n3 per test material at L90
    kpoints_fixed: float  # the same at the fixed length
    n_cal: int

    @property
    def saved_pct(self) -> float:
        return 100.0 * (1.0 - self.kpoints_mean / self.kpoints_fixed)


def evaluate(y_val, yhat_val, y_test, yhat_test, recip_test, fixed: float, alpha: float = ALPHA) -> Safety:
    q = conformal_offset(y_val, yhat_val, alpha)
    L = upper_bound(yhat_test, q)
    y_test = np.asarray(y_test, dtype=float)
    return Safety(offset=q, coverage=float(np.mean(y_test <= L)), kpoints_mean=float(kpoint_count(recip_test, L).mean()),
                  kpoints_fixed=float(kpoint_count(recip_test, fixed).mean()), n_cal=len(np.ravel(y_val)))


# Levels drawn as each model's trade-off curve (the marked point is ALPHA).
CURVE_ALPHAS = (0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.075, 0.05, 0.03, 0.02)


def tradeoff_plot(path: Path, models: dict, y_test, recip_test, fixed: float, train_targets) -> bool:
    """results/l90_tradeoff.png: test coverage vs mean k-points per material for each
    model's conformal bound (curve over α, L90 marked), the fixed lengths (train
    P50…P99, train P90 marked) and the true lengths. ``models``: name -> (y_val,
    ŷ_val, ŷ_test). Deterministic bytes; written only when they change. Returns
    whether the file was (re)written."""
    from harness import plots  # first: it selects the Agg backend

    import matplotlib.pyplot as plt
    import matplotlib.ticker

    y_test = np.asarray(y_test, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    grid_L = np.unique([fixed_length(train_targets, p) for p in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)])
    fx = [kpoint_count(recip_test, L).mean() for L in grid_L]
    fy = [100 * np.mean(y_test <= L) for L in grid_L]
    ax.plot(fx, fy, "s--", color="0.45", ms=4, lw=1, label="fixed length (train quantiles)")
    for L, x, y in zip(grid_L, fx, fy):
        ax.annotate(f"{L:g}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7, color="0.35")
    ax.plot([kpoint_count(recip_test, fixed).mean()], [100 * np.mean(y_test <= fixed)], "s", mfc="none", mec="black",
            mew=1.5, ms=11, label=f"fixed train P90 = {fixed:g} Å", zorder=5)
    ax.plot([kpoint_count(recip_test, y_test).mean()], [100.0], "*", color="goldenrod", ms=13, label="true lengths")
    for k, (name, (yv, pv, pt)) in enumerate(sorted(models.items())):
        xs, ys = [], []
        for a in CURVE_ALPHAS:
            try:
                L = upper_bound(pt, conformal_offset(yv, pv, a))
            except HarnessError:
                continue
            xs.append(kpoint_count(recip_test, L).mean())
            ys.append(100 * np.mean(y_test <= L))
        color = f"C{k % 10}"
        ax.plot(xs, ys, "-", color=color, lw=1.2, alpha=0.8)
        L90 = upper_bound(pt, conformal_offset(yv, pv, ALPHA))
        ax.plot([kpoint_count(recip_test, L90).mean()], [100 * np.mean(y_test <= L90)], "o", color=color, ms=7,
                label=f"{name}: L90")
    ax.axhline(100 * (1 - ALPHA), color="firebrick", lw=0.8, ls=":", label=f"{100 * (1 - ALPHA):g} % target")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([100, 200, 500, 1000, 2000, 5000, 10000]))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("mean k-points per test material (n1·n2·n3)")
    ax.set_ylabel("test materials with true length ≤ bound (%)")
    ax.set_title(f"Safe k-length: split-conformal bound (calibrated on val) vs one fixed length\n"
                 f"curves: α = {CURVE_ALPHAS[0]:g} … {CURVE_ALPHAS[-1]:g}; dots: L90 (α = {ALPHA:g}); "
                 f"n = {len(y_test):,} covered test ids", fontsize=9)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return plots.save(fig, path, source=tradeoff_source(models, y_test, recip_test, fixed, train_targets))


def tradeoff_source(models: dict, y_test, recip_test, fixed: float, train_targets) -> str:
    """What tradeoff_plot draws, as a digest (the PNG's Source chunk): `harness leaderboard
    --check` compares it, so a new model's curve cannot be left out of the committed plot."""
    from harness import plots

    parts = [np.asarray(y_test, dtype=float), np.asarray(recip_test, dtype=float), float(fixed),
             np.asarray(train_targets, dtype=float)]
    for name, arrays in sorted(models.items()):
        parts += [name, *(np.asarray(a, dtype=float) for a in arrays)]
    return plots.digest(*parts)
