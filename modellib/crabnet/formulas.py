"""Formulas for CrabNet: taken from the structures, checked before any training, so an
unknown element or an unparsable formula is a clear error naming the material
(crabnet itself would print "skipping composition" and carry on with a zero row)."""

from __future__ import annotations

import math

import pandas as pd
from crabnet.utils.composition import CompositionError, _element_composition
from pymatgen.core.periodic_table import Element

# crabnet's element table (get_edm's all_symbols): Z = 1..118 in order.
ALL_SYMBOLS = tuple(Element.from_Z(z).symbol for z in range(1, 119))
_KNOWN = frozenset(ALL_SYMBOLS)
MAX_ELEMENTS = 16  # crabnet's EDM holds at most 16 elements per formula


class FormulaError(ValueError):
    """One or more materials cannot be represented by CrabNet."""


def reduced_formulas(X) -> list[str]:
    """The reduced formula of each row: from the ``atoms`` column (jarvis Atoms) when
    present, else the ``formula`` column; a plain sequence of strings also works."""
    if isinstance(X, pd.DataFrame):
        if "atoms" in X.columns:
            out = []
            for jid, atoms in zip(X.index, X["atoms"]):
                try:
                    out.append(str(atoms.composition.reduced_formula))
                except Exception as err:
                    raise FormulaError(f"{jid}: cannot get a formula from the structure ({type(err).__name__}: {err})") from None
            return out
        if "formula" in X.columns:
            return [str(f) for f in X["formula"]]
        raise FormulaError("X has neither an 'atoms' nor a 'formula' column")
    return [str(f) for f in X]


def problem(formula: str) -> str | None:
    """Why crabnet cannot use ``formula``, or None."""
    if not isinstance(formula, str) or not formula.strip():
        return "empty formula"
    try:
        comp = _element_composition(formula)
    except (CompositionError, ValueError, TypeError) as err:
        return f"unparsable formula ({err})"
    if not comp:
        return "no elements"
    unknown = sorted(e for e in comp if e not in _KNOWN)
    if unknown:
        return f"unknown element(s) {', '.join(unknown)}"
    bad = [e for e, n in comp.items() if not (isinstance(n, (int, float)) and math.isfinite(n) and n > 0)]
    if bad:
        return f"non-positive or non-finite amount for {', '.join(bad)}"
    if len(comp) > MAX_ELEMENTS:
        return f"{len(comp)} elements (CrabNet holds at most {MAX_ELEMENTS})"
    return None


def validate(formulas, ids=None, what: str = "materials") -> None:
    """Raise FormulaError naming every material (first 10) that crabnet cannot use."""
    ids = list(ids) if ids is not None else list(range(len(formulas)))
    bad = []
    for i, f in zip(ids, formulas):
        why = problem(f)
        if why:
            bad.append(f"{i} ({f!r}: {why})")
    if bad:
        shown = "; ".join(bad[:10]) + (f"; +{len(bad) - 10} more" if len(bad) > 10 else "")
        raise FormulaError(f"CrabNet cannot use {len(bad)} of {len(ids)} {what}: {shown}")


def filter_valid(df: pd.DataFrame, what: str) -> tuple[pd.DataFrame, int]:
    """For source (pretraining) data: drop rows crabnet cannot use, returning the
    count so the caller reports it (a documented, counted skip)."""
    ok = df["formula"].map(lambda f: problem(f) is None)
    return df[ok].reset_index(drop=True), int((~ok).sum())
