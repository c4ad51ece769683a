"""The task object (after matbench): a frozen benchmark definition joined to the
structures of the local store. It hands out train/val/test and rejects predictions for
the wrong ids, naming the missing and extra ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.benchmark import SPLITS, Benchmark
from harness.errors import HarnessError
from harness.submission import check_ids  # noqa: F401  (re-exported: tests and models import it from here)


@dataclass
class Task:
    benchmark: Benchmark
    materials: pd.DataFrame
    provenance: dict  # the store: dataset, file, sha256, n

    def __post_init__(self):
        missing = [i for s in SPLITS for i in self.benchmark.ids[s] if i not in self.materials.index]
        if missing:
            raise HarnessError(f"{self.provenance.get('file')}: no structure for {len(missing)} id(s) of "
                               f"{self.benchmark.name}, e.g. {missing[0]}")

    @classmethod
    def load(cls, benchmark: Benchmark, data_dir=None, cache_dir=None) -> "Task":
        """``benchmark`` joined to the structure store in ``data_dir`` (default: the
        configured store); a HarnessError when the store lacks ids or is another file."""
        from harness import data, paths
        from harness.freeze import DATASET

        materials, prov = data.load_materials(DATASET, data_dir if data_dir is not None else paths.default_data_dir(),
                                              cache_dir if cache_dir is not None else paths.cache_dir())
        problem = benchmark.store_problem(materials.index, prov["sha256"])
        if problem:
            raise HarnessError(problem)
        return cls(benchmark, materials, prov)

    def ids(self, split: str) -> list[str]:
        return self.benchmark.ids[split]

    def X(self, split: str) -> pd.DataFrame:
        return self.materials.loc[self.ids(split)]

    def y(self, split: str) -> np.ndarray:
        return self.benchmark.y(split)

    def summary(self) -> str:
        return f"benchmark {self.benchmark.name}: {self.benchmark.counts_text()} ids (store {self.provenance.get('file')})"

    def check_predictions(self, split: str, ids: list[str], predictions) -> np.ndarray:
        """Predictions as a float array aligned to ``ids(split)``, or a HarnessError."""
        check_ids(self.ids(split), list(ids), f"{split} predictions")
        pred = np.asarray(predictions, dtype=float).ravel()
        if len(pred) != len(ids):
            raise HarnessError(f"{split} predictions: {len(pred)} values for {len(ids)} ids")
        bad = ~np.isfinite(pred)
        if bad.any():
            raise HarnessError(f"{split} predictions: {int(bad.sum())} non-finite value(s), first at id {list(ids)[int(np.argmax(bad))]}")
        from harness.submission import physical_problem

        problem = physical_problem(ids, pred, f"{split} predictions")
        if problem:
            raise HarnessError(problem)
        order = {i: k for k, i in enumerate(ids)}
        return pred[[order[i] for i in self.ids(split)]]
