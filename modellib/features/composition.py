"""Matminer composition features (Magpie statistics, stoichiometry, valence orbitals,
ionic character) per reduced formula, with a persistent cache: each formula is
featurized once, ever."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pandas as pd
from matminer.featurizers.base import MultipleFeaturizer
from matminer.featurizers.composition import ElementProperty, IonProperty, Stoichiometry, ValenceOrbital
from pymatgen.core import Composition
from tqdm.auto import tqdm

from harness.errors import HarnessError
from modellib.features.frame_cache import cached_rows

PRESETS = ("stoichiometry", "magpie", "valence_orbital", "ion_property")


def _featurizer(presets: tuple[str, ...]) -> MultipleFeaturizer:
    make = {
        "stoichiometry": Stoichiometry,
        "magpie": lambda: ElementProperty.from_preset("magpie", impute_nan=False),
        "valence_orbital": lambda: ValenceOrbital(props=["frac"], impute_nan=False),
        "ion_property": lambda: IonProperty(fast=True, impute_nan=False),
    }
    unknown = [p for p in presets if p not in make]
    if unknown:
        raise HarnessError(f"composition features: unknown preset(s) {unknown}; known: {list(make)}")
    return MultipleFeaturizer([make[p]() for p in presets])


def _cache_file(cache_dir: Path, presets: tuple[str, ...]) -> Path:
    import matminer

    from harness import numeric_env

    key = hashlib.sha256(f"{presets}|matminer {matminer.__version__}|{numeric_env.tag()}".encode()).hexdigest()[:16]
    return Path(cache_dir) / "features" / f"composition-{key}.pkl"


def composition_features(formulas: list[str], cache_dir: Path | None, presets: tuple[str, ...] = PRESETS) -> pd.DataFrame:
    """One row per input formula (same order), NaN where a featurizer has no data.
    ``cache_dir`` None: computed without a cache."""

    def compute(todo):
        feat = _featurizer(presets)
        rows = []
        for f in tqdm(todo, desc="composition features", unit="formula", leave=False):
            try:
                comp = Composition(f)
            except Exception as err:
                raise HarnessError(f"formula {f!r}: cannot parse ({err})") from None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rows.append(feat.featurize(comp))
        return pd.DataFrame(rows, index=pd.Index(todo, name="formula"), columns=feat.feature_labels(), dtype=float)

    return cached_rows(None if cache_dir is None else _cache_file(cache_dir, presets), list(formulas), compute)
