"""Random forest on matminer composition features (seed model 1)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline

from harness import ModelContext
from modellib.features.composition import composition_features
from modellib.features.frame_cache import UserCacheDir
from modellib.features.robust import canonical


class RFComposition(UserCacheDir, BaseEstimator, RegressorMixin):
    def __init__(self, cache_dir=None, n_estimators=500, min_samples_leaf=1, max_features=0.33, random_state=0, n_jobs=2):
        self.cache_dir = cache_dir
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _features(self, X):
        # Rounded (modellib/features/robust.py): the same inputs on every machine.
        return canonical(composition_features(list(X["formula"]), self._cache_dir()).to_numpy(dtype=float))

    def fit(self, X, y):
        self.pipeline_ = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            RandomForestRegressor(n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf,
                                  max_features=self.max_features, random_state=self.random_state, n_jobs=self.n_jobs),
        )
        self.pipeline_.fit(self._features(X), np.asarray(y, float))
        return self

    def predict(self, X):
        return self.pipeline_.predict(self._features(X))


def make_model(ctx: ModelContext) -> RFComposition:
    return RFComposition(cache_dir=ctx.shared_dir, random_state=ctx.seed, n_jobs=ctx.n_jobs)
