"""``harness reproduce NAME``: retrain a model in a scratch output root, on the same
frozen benchmark as its committed run record, and compare the new prediction files with
the committed ones: byte-identical, or how many predictions changed and by how much MAE."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import benchmark as bm
from harness import fitted, paths, record, submission
from harness.errors import HarnessError
from harness.metrics import regression_metrics


@dataclass
class Comparison:
    model: str
    benchmark: str
    identical: bool
    n_changed: int
    n: int
    mae_committed: float
    mae_new: float
    val_identical: bool
    message: str = ""

    def line(self) -> str:
        if self.message:
            return f"{self.model}: FAILED: {self.message}"
        if self.identical and self.val_identical:
            return f"{self.model}: byte-identical to the committed submission and val predictions ({self.benchmark})"
        return (f"{self.model}: DIFFERS: {self.n_changed:,} of {self.n:,} test predictions changed"
                f"{'' if self.val_identical else ' (val predictions too)'}; test MAE {self.mae_committed:.4f} committed, "
                f"{self.mae_new:.4f} now ({self.mae_new - self.mae_committed:+.4f})")


def compare_files(committed: Path, new: Path, truth: dict[str, float]) -> tuple[bool, int, int, float, float]:
    if committed.read_bytes() == new.read_bytes():
        rows = submission.read_csv_zip(committed)
        m = regression_metrics([truth[i] for i in rows.ids], rows.predictions)["mae"]
        return True, 0, len(rows.ids), m, m
    a, b = submission.read_csv_zip(committed), submission.read_csv_zip(new)
    pa, pb = dict(zip(a.ids, a.predictions)), dict(zip(b.ids, b.predictions))
    ids = a.ids
    changed = sum(pa[i] != pb.get(i) for i in ids)
    y = [truth[i] for i in ids]
    return (False, changed, len(ids), regression_metrics(y, [pa[i] for i in ids])["mae"],
            regression_metrics(y, [pb.get(i, np.nan) for i in ids])["mae"])


def reproduce(name: str, child_args: dict, keep: Path | None = None) -> Comparison:
    from harness.schedule import run_in_process

    bench_name = fitted.trained_benchmark(name)
    if bench_name is None:
        raise HarnessError(f"{paths.results_dir() / name}: no committed run record to reproduce")
    definition = bm.load(bench_name, paths.benchmarks_dir())
    root = Path(tempfile.mkdtemp(prefix=f"kspacing-reproduce-{name}-")) if keep is None else Path(keep)
    try:
        shutil.copytree(definition.path, root / "benchmarks" / bench_name, dirs_exist_ok=True)
        out = run_in_process(name, bench_name, child_args, env={paths.OUTPUT_DIR_ENV: str(root)})
        if not out.ok:
            return Comparison(name, bench_name, False, 0, 0, np.nan, np.nan, False, out.message)
        f = definition.submission_filename
        same, n_changed, n, m0, m1 = compare_files(paths.submissions_dir() / name / f, root / "submissions" / name / f,
                                                   definition.targets["test"])
        val_old = record.results_folder(paths.results_dir(), name, bench_name) / record.VAL_FILE
        val_new = record.results_folder(root / "results", name, bench_name) / record.VAL_FILE
        return Comparison(name, bench_name, same, n_changed, n, m0, m1, val_old.read_bytes() == val_new.read_bytes())
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
