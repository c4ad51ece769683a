"""Metallicity from external (Materials Project) data: real signal on held-out formulas,
sensible charge-balance features, picklable."""

import io

import joblib
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from modellib.features import metallicity as met

HELD_OUT_METALS = ["Cu", "Al", "Ni3Al", "TiAl", "Fe"]
HELD_OUT_INSULATORS = ["MgO", "Al2O3", "SiO2", "NaCl", "ZrO2"]


@pytest.fixture(scope="module")
def small_model():
    # ~10k MP formulas, the probe formulas excluded from training: a quick but real fit
    return met.MetallicityModel(n_estimators=120, max_depth=6, learning_rate=0.15, lookups=False,
                                max_formulas=10000, n_jobs=1).fit(
        exclude_formulas=HELD_OUT_METALS + HELD_OUT_INSULATORS)


def test_held_out_metals_score_higher_than_held_out_oxides(small_model):
    p = small_model.predict_proba_metal(HELD_OUT_METALS + HELD_OUT_INSULATORS)
    metals, insulators = p[: len(HELD_OUT_METALS)], p[len(HELD_OUT_METALS):]
    assert metals.min() > insulators.max()
    assert metals.mean() > 0.8 and insulators.mean() < 0.2


def test_auc_on_unseen_mp_formulas(small_model):
    df = met.external_data("mp_is_metal").groupby("reduced")["target"].mean()
    rng = np.random.default_rng(1)
    # formulas outside the 10k the model saw (same RNG as MetallicityModel's subsample)
    keep = set(df.index[np.sort(np.random.default_rng(0).choice(len(df), 10000, replace=False))])
    unseen = [f for f in df.index[rng.choice(len(df), 3000, replace=False)] if f not in keep][:1500]
    p = small_model.predict_proba_metal(unseen)
    assert roc_auc_score(df.loc[unseen] >= 0.5, p) > 0.9


def test_charge_balance_features():
    names = met.composition_feature_names()
    X = met.composition_matrix(["MgO", "Al2O3", "Cu", "Ni3Al"])
    bal = X[:, names.index("charge_balanced")]
    assert list(bal) == [1, 1, 0, 0]
    frac_o = X[:, names.index("frac_Z8")]
    assert frac_o[0] == pytest.approx(0.5) and frac_o[1] == pytest.approx(0.6)


def test_pickles_and_predicts_the_same(small_model):
    buf = io.BytesIO()
    joblib.dump(small_model, buf)
    buf.seek(0)
    again = joblib.load(buf)
    f = ["Cu", "MgO", "LiFePO4"]
    assert np.array_equal(again.transform(f).to_numpy(), small_model.transform(f).to_numpy())


def test_cache_key_names_parameters_and_code_version(tmp_path, monkeypatch):
    # a fit cached by other code or with other parameters is never reused
    model = met.MetallicityModel(n_estimators=120)
    path = met.cache_path(tmp_path, model)
    assert path.parent == tmp_path / "features" and path == met.cache_path(tmp_path, met.MetallicityModel(n_estimators=120))
    assert met.cache_path(tmp_path, met.MetallicityModel(n_estimators=121)) != path
    assert met.cache_path(tmp_path, met.MetallicityModel(n_estimators=120, n_jobs=7)) == path  # threads do not change the fit
    monkeypatch.setattr(met, "METALLICITY_VERSION", met.METALLICITY_VERSION + 1)
    assert met.cache_path(tmp_path, model) != path
