"""What the harness hands a model's ``make_model``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelContext:
    cache_dir: Path  # private, persistent cache folder for this model (features, checkpoints)
    profile: str = "cpu"  # "cpu" or "paper": compute profile for models that have one
    seed: int = 0
    n_jobs: int = 2
    # Cache shared by all models (e.g. featurized structures/formulas reused across models).
    shared_cache_dir: Path | None = None

    @property
    def shared_dir(self) -> Path:
        return self.shared_cache_dir or self.cache_dir
