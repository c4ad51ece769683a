"""Features rounded so that last-bit noise cannot reach a model.

Even with the pinned numeric environment (harness/numeric_env.py), a value can differ in
its last bits between machines (glibc's libm picks FMA variants per CPU; qhull; a cell
written as CIF or POSCAR: a cosine that is 0.0 in one file is 1.6e-16 in the other, and
LightGBM splits at 1e-35). Every feature matrix a model sees goes through ``canonical``:
the mantissa is rounded to 30 bits (about 9 significant digits, far below any physical
resolution of these features) with exact operations (frexp / ldexp / round-half-even on
a power-of-two scale, identical on every IEEE machine), and magnitudes below 1e-12 become
0. Two inputs that differ in the last bits give the same output unless they straddle a
rounding boundary (odds about 2^-22 per value)."""

from __future__ import annotations

import numpy as np
import pandas as pd

MANTISSA_BITS = 30
TINY = 1e-12


def canonical(values) -> np.ndarray:
    x = np.array(values, dtype=float, copy=True)
    m, e = np.frexp(x)
    m = np.round(m * 2.0 ** MANTISSA_BITS) / 2.0 ** MANTISSA_BITS  # exact: power-of-two scaling
    out = np.ldexp(m, e)
    out[np.abs(out) < TINY] = 0.0
    out[np.isnan(x)] = np.nan
    return out


def canonical_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``canonical`` on every numeric column; index and column names kept."""
    out = df.copy()
    num = out.select_dtypes(include=[np.number]).columns
    if len(num):
        out[num] = canonical(out[num].to_numpy(dtype=float))
    return out
