"""matminer_xgboost with a training budget that fits a 2-core machine: the same
features, pipeline and hyperparameters, but at most 2000 rounds (x 8 parallel trees),
stopped early (200 rounds without improvement of the MAE) on a 10% slice of the
training set.
The faithful 10000-round model (models/matminer_xgboost) took 18 min on an idle 2-core
machine with n_jobs=2 (it had not finished after an hour on a shared, loaded machine)."""

from __future__ import annotations

from harness import ModelContext
from modellib.features.structure_model import MatminerXGBoost


def make_model(ctx: ModelContext) -> MatminerXGBoost:
    return MatminerXGBoost(feature_cache_dir=ctx.shared_dir, random_state=ctx.seed, n_jobs=ctx.n_jobs,
                           n_estimators=2000, early_stopping_rounds=200, validation_fraction=0.1)
