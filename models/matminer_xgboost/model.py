"""matminer + XGBoost (JARVIS-Leaderboard ``matminer_xgboost``, UofT 2023), faithful:
the published 273 features and hyperparameters, 10000 rounds x 8 parallel trees, no
early stopping. Features: modellib.features.structure (stock matminer numbers, fast
engine, cached per structure in the shared cache)."""

from __future__ import annotations

from harness import ModelContext
from modellib.features.structure_model import MatminerXGBoost


def make_model(ctx: ModelContext) -> MatminerXGBoost:
    return MatminerXGBoost(feature_cache_dir=ctx.shared_dir, random_state=ctx.seed, n_jobs=ctx.n_jobs)
