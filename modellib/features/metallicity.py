"""Metallicity and band-gap estimates of a composition, learned from external data.

Metals need far denser k-point meshes than insulators, but the JARVIS band gap of the
material itself is a DFT result and may not be an input. Instead this module learns
metallicity from *other* databases shipped (as Matbench / benchmark CSVs) inside the
installed ``crabnet`` package, and applies it to any formula:

* ``matbench/mp_is_metal.csv`` (Materials Project, 106,113 entries, 78,164 reduced
  formulas): a gradient-boosted classifier -> ``p_metal``;
* ``matbench/mp_gap.csv`` (same MP entries, PBE gap in eV): a regressor -> ``gap_pred``;
* direct look-ups of the reduced formula in MP (fraction of metallic polymorphs, min
  gap), OQMD (``benchmark_data/OQMD_Bandgap``, 341,608 formulas) and AFLOW
  (``benchmark_data/aflow__Egap``, 27,577 formulas); NaN where the formula is absent.

The labels are MP / OQMD / AFLOW calculations, never JARVIS results, so there is no
leakage of the JARVIS target or of the same material's JARVIS DFT outputs. Formulas of
our val/test materials do occur in these databases (about 80 % are in MP): the look-ups
and the classifier then report what *those* databases computed for that formula.

Everything a prediction needs (element tables, fitted boosters, look-up tables) lives
in the fitted :class:`MetallicityModel`, so it pickles and works on new formulas.
Inputs of the learned models are a fast vectorised composition featurisation
(:func:`composition_matrix`: element fractions, Magpie-property statistics,
stoichiometry norms, a common-oxidation-state charge-balance test).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from harness import atomic
from harness.chemistry import composition_feature_names, composition_matrix, reduced_formula  # noqa: F401 (re-exported)

EXTERNAL_FILES = {
    "mp_is_metal": ("matbench/mp_is_metal.csv",),
    "mp_gap": ("matbench/mp_gap.csv",),
    "oqmd_gap": tuple(f"benchmark_data/OQMD_Bandgap/{s}.csv" for s in ("train", "val", "test")),
    "aflow_gap": tuple(f"benchmark_data/aflow__Egap/{s}.csv" for s in ("train", "val", "test")),
}


# ----------------------------------------------------------------------------- data

def _crabnet_data_file(rel: str) -> Path:
    return Path(str(resources.files("crabnet.data").joinpath(rel)))


def external_data(name: str) -> pd.DataFrame:
    """Raw (formula, target) rows of one external data set, reduced formula added."""
    frames = [pd.read_csv(_crabnet_data_file(rel)) for rel in EXTERNAL_FILES[name]]
    df = pd.concat(frames, ignore_index=True)
    df["reduced"] = [reduced_formula(f) for f in df["formula"]]
    return df


def external_files_digest() -> str:
    h = hashlib.sha256()
    for name in sorted(EXTERNAL_FILES):
        for rel in EXTERNAL_FILES[name]:
            h.update(_crabnet_data_file(rel).read_bytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------- model

OUTPUT_COLUMNS = ("p_metal", "gap_pred", "mp_metal_frac", "mp_gap_min", "mp_n_polymorphs",
                  "oqmd_gap", "aflow_gap")


class MetallicityModel(BaseEstimator):
    """Metallicity / gap estimates per formula from MP, OQMD and AFLOW (see module doc).

    ``fit()`` takes no JARVIS data at all: it trains on the external files only.
    ``transform(formulas)`` returns a DataFrame with OUTPUT_COLUMNS.
    ``lookups=False`` leaves the look-up columns out (learned estimates only);
    ``max_formulas`` trains the boosters on a random subset of that many MP formulas
    (quick tests; None = all 78k).
    """

    def __init__(self, n_estimators=600, max_depth=8, learning_rate=0.08, subsample=0.8,
                 colsample_bytree=0.5, lookups=True, max_formulas=None, random_state=0, n_jobs=1):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.lookups = lookups
        self.max_formulas = max_formulas
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _booster_params(self):
        return dict(n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
                    subsample=self.subsample, colsample_bytree=self.colsample_bytree, tree_method="hist",
                    random_state=self.random_state, n_jobs=self.n_jobs)

    def fit(self, X=None, y=None, exclude_formulas=()):
        """Train on the external data. ``exclude_formulas`` (reduced or not) are dropped
        from every external set first (for held-out tests)."""
        from xgboost import XGBRegressor

        excl = {reduced_formula(f) for f in exclude_formulas}
        metal = external_data("mp_is_metal")
        gap = external_data("mp_gap")
        metal = metal[~metal["reduced"].isin(excl)].groupby("reduced")["target"].agg(["mean", "count"])
        gap = gap[~gap["reduced"].isin(excl)].groupby("reduced")["target"].agg(["min", "mean"])
        if self.max_formulas is not None and self.max_formulas < len(metal):
            rng = np.random.default_rng(self.random_state)
            keep = np.sort(rng.choice(len(metal), size=self.max_formulas, replace=False))
            metal = metal.iloc[keep]
            gap = gap.loc[gap.index.intersection(metal.index)]
        import sys

        print(f"metallicity model: fitting on {len(metal):,} MP formulas (metal classifier, then gap regressor; "
              "cached once fitted)", file=sys.stderr, flush=True)
        Xm = composition_matrix(metal.index)
        # binary:logistic on soft labels (XGBClassifier only takes hard classes)
        self.classifier_ = XGBRegressor(objective="binary:logistic", **self._booster_params())
        # soft labels: fraction of metallic MP polymorphs of the formula
        self.classifier_.fit(Xm, metal["mean"].to_numpy(), sample_weight=np.sqrt(metal["count"].to_numpy()))
        Xg = Xm if gap.index.equals(metal.index) else composition_matrix(gap.index)
        self.regressor_ = XGBRegressor(objective="reg:squarederror", **self._booster_params())
        self.regressor_.fit(Xg, gap["mean"].to_numpy())
        if self.lookups:
            self.mp_metal_ = metal["mean"].to_dict()
            self.mp_count_ = metal["count"].astype(float).to_dict()
            self.mp_gap_min_ = gap["min"].to_dict()
            self.oqmd_gap_ = self._table("oqmd_gap", excl)
            self.aflow_gap_ = self._table("aflow_gap", excl)
        return self

    @staticmethod
    def _table(name, excl):
        df = external_data(name)
        return df[~df["reduced"].isin(excl)].groupby("reduced")["target"].min().to_dict()

    def transform(self, formulas) -> pd.DataFrame:
        formulas = list(formulas)
        red = [reduced_formula(f) for f in formulas]
        Xc = composition_matrix(red)
        out = {"p_metal": self.classifier_.predict(Xc),
               "gap_pred": np.clip(self.regressor_.predict(Xc), 0, None)}
        if self.lookups:
            out["mp_metal_frac"] = [self.mp_metal_.get(r, np.nan) for r in red]
            out["mp_gap_min"] = [self.mp_gap_min_.get(r, np.nan) for r in red]
            out["mp_n_polymorphs"] = [self.mp_count_.get(r, 0.0) for r in red]
            out["oqmd_gap"] = [self.oqmd_gap_.get(r, np.nan) for r in red]
            out["aflow_gap"] = [self.aflow_gap_.get(r, np.nan) for r in red]
        return pd.DataFrame(out, dtype=float)

    def predict_proba_metal(self, formulas) -> np.ndarray:
        return self.transform(formulas)["p_metal"].to_numpy()


METALLICITY_VERSION = 1  # in the cache key: bump when a change here or in harness.chemistry could change the fit


def cache_path(cache_dir: Path, model: MetallicityModel) -> Path:
    """Where ``model`` (unfitted) is cached once fitted: keyed by its parameters, the
    external data, the libraries, the composition features, the numeric environment and
    METALLICITY_VERSION (this code), so that no fit made by other code is reused."""
    import sklearn
    import xgboost

    from harness import numeric_env

    # n_jobs does not change the fitted boosters (hist is deterministic across threads)
    fit_params = sorted((k, v) for k, v in model.get_params().items() if k != "n_jobs")
    key = hashlib.sha256(repr((fit_params, external_files_digest(), xgboost.__version__, sklearn.__version__,
                               composition_feature_names(), numeric_env.tag(), METALLICITY_VERSION)).encode())
    return Path(cache_dir) / "features" / f"metallicity-{key.hexdigest()[:16]}.joblib"


def fitted_metallicity(cache_dir: Path | None, **params) -> MetallicityModel:
    """A fitted MetallicityModel, loaded from ``cache_dir`` when one with the same
    parameters, external data, library versions and code version was fitted before."""
    model = MetallicityModel(**params)
    if cache_dir is None:
        return model.fit()
    path = cache_path(cache_dir, model)
    if path.is_file():
        try:
            return joblib.load(path)
        except Exception:  # a damaged cache is refitted, never trusted
            pass
    model.fit()
    with atomic.atomic_path(path) as tmp:
        joblib.dump(model, tmp)
    return model
