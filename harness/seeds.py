"""``harness seeds NAME``: how much a model's test MAE moves with its training seed.

Trains the model with seeds 1 … n-1 in scratch output roots (seed 0 is the committed
run), on the benchmark of its committed run record, and writes
``results/<model>/<benchmark>/seeds.json`` (its one writer): the test MAE of every seed,
mean and sample standard deviation. The committed submission is not touched; the
leaderboard shows mean ± std next to the seed-0 row."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from harness import atomic, fitted, paths, record, submission
from harness import benchmark as bm
from harness.errors import HarnessError
from harness.metrics import regression_metrics

SEEDS_FILE = "seeds.json"


def _mae(path: Path, definition: bm.Benchmark) -> float:
    rows = submission.read_csv_zip(path)
    return regression_metrics(definition.y("test", rows.ids), rows.predictions)["mae"]


def seed_spread(name: str, n: int, child_args: dict, parallel: int = 1) -> dict:
    from harness.schedule import _finish, _start

    bench = fitted.trained_benchmark(name)
    if bench is None:
        raise HarnessError(f"{paths.results_dir() / name}: no committed run record; run `python -m harness run {name}` first")
    definition = bm.load(bench, paths.benchmarks_dir())
    committed = paths.submissions_dir() / name / definition.submission_filename
    maes = {0: _mae(committed, definition)}
    roots = {}
    todo = list(range(1, n))
    running = []
    try:
        while todo or running:
            while todo and len(running) < max(1, parallel):
                seed = todo.pop(0)
                root = Path(tempfile.mkdtemp(prefix=f"kspacing-seed{seed}-{name}-"))
                shutil.copytree(definition.path, root / "benchmarks" / bench)
                roots[seed] = root
                log = paths.cache_dir() / "logs" / f"{name}-seed{seed}.log"
                print(f"== {name} seed {seed} (log: {log})", flush=True)
                running.append((seed, _start(name, bench, {**child_args, "seed": seed}, {paths.OUTPUT_DIR_ENV: str(root)}, log)))
            seed, r = running.pop(0)
            out = _finish(r)
            if not out.ok:
                raise HarnessError(f"{name} seed {seed}: {out.message}")
            maes[seed] = _mae(roots[seed] / "submissions" / name / definition.submission_filename, definition)
            print(f"{name} seed {seed}: test MAE {maes[seed]:.4f}", flush=True)
    finally:
        for root in roots.values():
            shutil.rmtree(root, ignore_errors=True)
    values = np.array([maes[s] for s in sorted(maes)])
    doc = {"model": name, "benchmark": bench, "seeds": sorted(maes), "test_mae": [round(float(v), 6) for v in values],
           "mean": round(float(values.mean()), 6), "std": round(float(values.std(ddof=1)), 6) if len(values) > 1 else 0.0,
           "test_predictions_sha256_seed0": record.sha256_file(committed)}
    atomic.write_text(record.results_folder(paths.results_dir(), name, bench) / SEEDS_FILE, json.dumps(doc, indent=2) + "\n")
    return doc


def read(results_dir: Path, model: str, benchmark: str, test_file: Path) -> dict | None:
    """The seed spread of a submission, or None (absent, or made for other predictions)."""
    path = record.results_folder(results_dir, model, benchmark) / SEEDS_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise HarnessError(f"{path}: not valid JSON") from None
    if doc.get("test_predictions_sha256_seed0") != record.sha256_file(test_file):
        return None  # stale: the committed seed-0 predictions changed since
    return doc
