"""Density (g/cm^3) pretraining data.

Offline source: OQMD volume per atom shipped with crabnet
(``crabnet/data/benchmark_data/OQMD_Volume_per_atom/{train,val,test}.csv``, 341,700
rows). density = mass(formula) / (atoms(formula) * volume_per_atom), with the mass from
pymatgen's ``Composition``; rows are deduplicated by reduced formula (median).

Optional: Materials Project densities through ``mp-api`` when ``$MP_API_KEY`` is set
(imported lazily; when it is not installed, not set, or the query fails, a warning is
printed and the OQMD data is used alone). MP values replace OQMD ones for the same
reduced formula.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import crabnet
from harness import atomic

OQMD_DIR = Path(crabnet.__file__).parent / "data" / "benchmark_data" / "OQMD_Volume_per_atom"
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660  # 1 amu / Å^3 = 1.66054 g/cm^3
DENSITY_CACHE_VERSION = 1
FLOAT_FORMAT = "%.6g"  # density in g/cm^3 to 6 significant digits


def _read_density_csv(src) -> pd.DataFrame:
    return pd.read_csv(src, keep_default_na=False, na_values=[""])


def _files_digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def oqmd_volume_rows(oqmd_dir: Path | None = None) -> pd.DataFrame:
    oqmd_dir = OQMD_DIR if oqmd_dir is None else oqmd_dir
    files = sorted(Path(oqmd_dir).glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"{oqmd_dir}: no OQMD volume-per-atom CSV files (crabnet data missing?)")
    return pd.concat([pd.read_csv(f, keep_default_na=False, na_values=[""]) for f in files], ignore_index=True)


def density_from_volume(raw: pd.DataFrame, progress: bool = True) -> tuple[pd.DataFrame, int]:
    """(formula, target=density g/cm^3) per reduced formula (median), and the number of
    raw rows skipped (unparsable formula or non-positive volume)."""
    from pymatgen.core import Composition
    from tqdm.auto import tqdm

    reduced, dens = [], []
    skipped = 0
    for f, v in tqdm(zip(raw["formula"], raw["target"]), total=len(raw), desc="OQMD density",
                     unit="formula", disable=not progress, mininterval=2):
        try:
            comp = Composition(f)
            v = float(v)
            if not (v > 0 and comp.num_atoms > 0):
                raise ValueError("non-positive volume or empty formula")
            reduced.append(comp.reduced_formula)
            dens.append(float(comp.weight) * AMU_PER_A3_TO_G_PER_CM3 / (comp.num_atoms * v))
        except Exception:
            skipped += 1
    df = pd.DataFrame({"formula": reduced, "target": dens})
    df = df.groupby("formula", sort=True)["target"].median().reset_index()
    return df, skipped


def mp_density(api_key: str | None = None) -> pd.DataFrame | None:
    """Materials Project (formula, density) by reduced formula (median), or None when
    no key, no ``mp-api`` or the query fails. Never raises."""
    api_key = api_key or os.environ.get("MP_API_KEY")
    if not api_key:
        return None
    try:
        from mp_api.client import MPRester  # lazy: optional dependency
    except ImportError:
        warnings.warn("MP_API_KEY is set but mp-api is not installed; using OQMD densities only")
        return None
    try:
        with MPRester(api_key) as mpr:
            docs = mpr.materials.summary.search(fields=["formula_pretty", "density"])
        rows = [(d.formula_pretty, float(d.density)) for d in docs if getattr(d, "density", None)]
    except Exception as err:  # network, auth, API changes
        warnings.warn(f"Materials Project query failed ({type(err).__name__}: {err}); using OQMD densities only")
        return None
    if not rows:
        return None
    from pymatgen.core import Composition

    df = pd.DataFrame(rows, columns=["formula", "target"])
    df["formula"] = [Composition(f).reduced_formula for f in df["formula"]]
    return df.groupby("formula", sort=True)["target"].median().reset_index()


def density_dataset(cache_dir: Path | None, use_mp: bool | None = None, progress: bool = True,
                    oqmd_dir: Path | None = None) -> tuple[pd.DataFrame, dict]:
    """The density dataset (formula, target) and provenance. The OQMD part is cached
    (keyed by the source files' content) under ``cache_dir``."""
    oqmd_dir = OQMD_DIR if oqmd_dir is None else oqmd_dir
    files = sorted(Path(oqmd_dir).glob("*.csv"))
    digest = _files_digest(files) if files else "none"
    cache = Path(cache_dir) / f"oqmd_density-{digest}-v{DENSITY_CACHE_VERSION}.csv" if cache_dir else None
    prov: dict = {"source": "OQMD volume per atom (crabnet 2.0.8 benchmark_data)", "oqmd_digest": digest}
    if cache is not None and cache.is_file():
        df = _read_density_csv(cache)
        prov.update(n_raw=None, skipped=None, cached=str(cache))
    else:
        raw = oqmd_volume_rows(oqmd_dir)
        df, skipped = density_from_volume(raw, progress=progress)
        prov.update(n_raw=len(raw), skipped=skipped)
        if skipped:
            print(f"OQMD density: skipped {skipped} of {len(raw)} rows (unparsable formula or volume <= 0)")
        text = df.to_csv(index=False, float_format=FLOAT_FORMAT)
        if cache is not None:
            atomic.write_text(cache, text)
        # Always the values as read back from the CSV text, so a fresh computation and a
        # cached one give bit-identical data (and the same pretraining checkpoint key).
        df = _read_density_csv(io.StringIO(text))
    if use_mp is None:
        use_mp = bool(os.environ.get("MP_API_KEY"))
    if use_mp:
        mp = mp_density()
        if mp is not None:
            df = pd.concat([df[~df["formula"].isin(set(mp["formula"]))], mp], ignore_index=True)
            df = df.sort_values("formula").reset_index(drop=True)
            prov["source"] += f" + Materials Project ({len(mp)} formulas)"
            prov["mp_formulas"] = len(mp)
    df = df[np.isfinite(df["target"])].reset_index(drop=True)
    prov["n"] = len(df)
    return df, prov
