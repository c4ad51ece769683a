"""The matminer + XGBoost estimator shared by models/matminer_xgboost and
models/matminer_xgboost_fast (a real module, so fitted estimators pickle)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from modellib.features.robust import canonical
from modellib.features.structure import featurize_structures


class MatminerXGBoost(BaseEstimator, RegressorMixin):
    """273 matminer features (modellib.features.structure, cached per structure) ->
    SimpleImputer -> StandardScaler -> XGBRegressor. Defaults are the published
    JARVIS-Leaderboard ``matminer_xgboost`` hyperparameters (its script also sets
    subsample=0.85). With ``early_stopping_rounds`` the booster stops when the MAE on a
    random ``validation_fraction`` slice of the training set (fixed by ``random_state``)
    has not improved for that many rounds; it is trained on the rest and predicts with
    its best round.

    ``canonical_cells``: featurize spglib's standardized primitive cell of each input
    (modellib.features.physics.canonical_cells), the cell ``predict`` hands every model,
    so fit, benchmark and predict see the same cell and the safe length is calibrated on
    what users get. On JARVIS' own cells, 22 % of val predictions of a fit on them move
    when the same crystals come as canonical cells (mean 0.58 Å, up to 31 Å), and
    Voronoi-based features fail (NaN) for 118 of 1,767 val cells against none."""

    def __init__(self, feature_cache_dir=None, n_estimators=10000, learning_rate=0.1, reg_lambda=0.01,
                 reg_alpha=0.01, subsample=0.85, colsample_bytree=0.3, colsample_bylevel=0.5,
                 num_parallel_tree=8, tree_method="hist", max_depth=6, early_stopping_rounds=None,
                 validation_fraction=0.1, canonical_cells=True, random_state=0, n_jobs=2):
        self.feature_cache_dir = feature_cache_dir
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.reg_lambda = reg_lambda
        self.reg_alpha = reg_alpha
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.colsample_bylevel = colsample_bylevel
        self.num_parallel_tree = num_parallel_tree
        self.tree_method = tree_method
        self.max_depth = max_depth
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.canonical_cells = canonical_cells
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _features(self, X) -> np.ndarray:
        if getattr(self, "canonical_cells", False):  # artifacts pickled before the parameter: as given
            from modellib.features.physics import canonical_cells

            X = X.assign(atoms=canonical_cells(list(X["atoms"])))
        # Rounded: last-bit differences between machines must not move a histogram bin.
        return canonical(featurize_structures(X, self.feature_cache_dir, n_jobs=self.n_jobs).to_numpy(dtype=float))

    def _regressor(self):
        from xgboost import XGBRegressor

        return XGBRegressor(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate, reg_lambda=self.reg_lambda,
            reg_alpha=self.reg_alpha, subsample=self.subsample, colsample_bytree=self.colsample_bytree,
            colsample_bylevel=self.colsample_bylevel, num_parallel_tree=self.num_parallel_tree,
            tree_method=self.tree_method, max_depth=self.max_depth, random_state=self.random_state,
            n_jobs=self.n_jobs, early_stopping_rounds=self.early_stopping_rounds,
            eval_metric="mae",  # the benchmark's metric (used only by early stopping)
        )

    def fit(self, X, y):
        F, y = self._features(X), np.asarray(y, float)
        prep = Pipeline([("imputer", SimpleImputer()), ("scaler", StandardScaler())])
        reg = self._regressor()
        if self.early_stopping_rounds:
            val = np.random.default_rng(self.random_state).random(len(y)) < self.validation_fraction
            reg.fit(prep.fit_transform(F[~val]), y[~val], eval_set=[(prep.transform(F[val]), y[val])], verbose=False)
            self.best_iteration_ = int(reg.best_iteration)
        else:
            reg.fit(prep.fit_transform(F), y)
        self.pipeline_ = Pipeline(prep.steps + [("model", reg)])
        return self

    def predict(self, X) -> np.ndarray:
        # XGBoost predicts with the best iteration when early stopping was used
        return np.asarray(self.pipeline_.predict(self._features(X)), dtype=float)
