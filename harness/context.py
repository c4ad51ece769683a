"""What the harness hands a model's ``make_model``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ModelContext:
    cache_dir: Path  # private, persistent cache folder for this model (features, checkpoints)
    seed: int = 0
    n_jobs: int = 2
    # Cache shared by all models (e.g. featurized structures/formulas reused across models).
    shared_cache_dir: Path | None = None
    # The model's own options: model.yaml's ``options`` mapping (e.g. CrabNet's compute profile);
    # the harness passes them through without reading them.
    options: dict = field(default_factory=dict)

    @property
    def shared_dir(self) -> Path:
        return self.shared_cache_dir or self.cache_dir
