"""The task object (after matbench): hands out train/val/test on the covered ids and
rejects predictions for the wrong ids, naming the missing and extra ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.benchmark import BenchmarkSpec, Split, load_spec, load_split
from harness.data import Coverage, coverage, load_materials
from harness.errors import HarnessError


def _ids_problem(expected: list[str], got: list[str], where: str) -> str | None:
    exp, seen = set(expected), set()
    dups = sorted({i for i in got if i in seen or seen.add(i)})
    missing = sorted(exp - set(got))
    extra = sorted(set(got) - exp)
    parts = []
    for label, ids in (("missing", missing), ("extra", extra), ("duplicate", dups)):
        if ids:
            shown = ", ".join(ids[:5]) + (f" (+{len(ids) - 5} more)" if len(ids) > 5 else "")
            parts.append(f"{len(ids)} {label} id(s): {shown}")
    return f"{where}: " + "; ".join(parts) if parts else None


def check_ids(expected: list[str], got: list[str], where: str) -> None:
    problem = _ids_problem(expected, got, where)
    if problem:
        raise HarnessError(problem)


@dataclass
class Task:
    spec: BenchmarkSpec
    split: Split
    materials: pd.DataFrame
    coverage: Coverage
    provenance: dict

    @classmethod
    def load(cls, data_dir: Path | None, cache_dir: Path, benchmark: str | None = None) -> "Task":
        spec = load_spec(benchmark) if benchmark else load_spec()
        split = load_split(spec)
        materials, prov = load_materials(spec, data_dir, cache_dir)
        return cls(spec, split, materials, coverage(split, materials), prov)

    def ids(self, split: str) -> list[str]:
        return self.coverage.covered[split]

    def X(self, split: str) -> pd.DataFrame:
        return self.materials.loc[self.ids(split)]

    def y(self, split: str) -> np.ndarray:
        return np.array([self.split.targets[split][i] for i in self.ids(split)], dtype=float)

    def check_predictions(self, split: str, ids: list[str], predictions) -> np.ndarray:
        """Predictions as a float array aligned to ``ids(split)``, or a HarnessError."""
        check_ids(self.ids(split), list(ids), f"{split} predictions")
        pred = np.asarray(predictions, dtype=float).ravel()
        if len(pred) != len(ids):
            raise HarnessError(f"{split} predictions: {len(pred)} values for {len(ids)} ids")
        bad = ~np.isfinite(pred)
        if bad.any():
            raise HarnessError(f"{split} predictions: {int(bad.sum())} non-finite value(s), first at id {list(ids)[int(np.argmax(bad))]}")
        order = {i: k for k, i in enumerate(ids)}
        return pred[[order[i] for i in self.ids(split)]]
