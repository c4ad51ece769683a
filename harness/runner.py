"""``harness run``: train each model folder on the covered train ids, predict val and
test, write its submission, plot and fitted artifact. One model failing never stops
the others."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

from harness import atomic, kpoints, submission
from harness.context import ModelContext
from harness.errors import HarnessError
from harness.leaderboard import COVERAGE_FILE
from harness.metrics import regression_metrics
from harness.paths import RESULTS_DIR, SUBMISSIONS_DIR
from harness.plots import parity_plot
from harness.registry import ModelFolder, _rel
from harness.task import Task

PROJECT_URL = "https://github.com/kspacing-bench/kspacing-bench"


@dataclass
class Outcome:
    name: str
    ok: bool
    message: str = ""
    metrics: dict | None = None
    seconds: float = 0.0


def artifact_path(cache_dir: Path, name: str) -> Path:
    return Path(cache_dir) / "artifacts" / name / "model.joblib"


def slice_task(task: Task, limit: int) -> Task:
    """The same task on the first ``limit`` covered ids of each split (published order):
    for tests and debugging (``harness run --limit N``), never for the leaderboard."""
    covered = {s: ids[:limit] for s, ids in task.coverage.covered.items()}
    return dataclasses.replace(task, coverage=dataclasses.replace(task.coverage, covered=covered))


def write_coverage(task: Task, results_dir: Path = RESULTS_DIR, limit: int | None = None) -> None:
    cov = task.coverage
    data = {
        "benchmark": task.spec.name,
        "source": task.provenance,
        "counts": cov.counts(),
        "overlaps": {k: list(v) for k, v in cov.overlaps.items()},
        "test_ids": cov.covered["test"],
    }
    if limit is not None:
        data["limit"] = limit  # a slice (harness run --limit): not leaderboard numbers
    submission.write_json(Path(results_dir) / COVERAGE_FILE, data)
    # Reciprocal lattice lengths of the covered val/test ids: the leaderboard's k-point counts (L90).
    kpoints.write_lattice(task, results_dir)


def _metadata(task: Task, model: ModelFolder, estimator, seconds: float, old: dict) -> dict:
    meta = model.meta
    authors = meta.get("authors", [])
    return {
        "model_name": model.name,
        "project_url": meta.get("project_url", PROJECT_URL),
        # Date and time taken are kept from the previous submission when the predictions
        # did not change, so reruns give byte-identical files.
        "date_submitted": old.get("date_submitted") or time.strftime("%m-%d-%Y"),
        "author_email": next((a["email"] for a in authors if a.get("email")), ""),
        "team_name": meta.get("team_name", "kspacing-bench"),
        "language": "python",
        "os": "linux",
        "software_used": ",".join(meta.get("software", [])),
        "hardware_used": meta.get("hardware", ""),
        "git_url": [meta["git_url"]] if meta.get("git_url") else [],
        "time_taken_seconds": old.get("time_taken_seconds") or {task.spec.submission_filename: round(seconds, 1)},
        "kind": model.kind,
        "profile": str(getattr(estimator, "profile", getattr(estimator, "profile_", "-"))),
    }


def run_one(task: Task, model: ModelFolder, ctx: ModelContext, submissions_dir: Path = SUBMISSIONS_DIR,
            results_dir: Path = RESULTS_DIR, artifacts_dir: Path | None = None) -> Outcome:
    where = _rel(model.path / "model.py")
    try:
        module = model.load_module()
        estimator = module.make_model(ctx)
        if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
            raise HarnessError(f"{where}: make_model returned {type(estimator).__name__}, which lacks fit/predict")
        t0 = time.perf_counter()
        estimator.fit(task.X("train"), task.y("train"))
        fit_s = time.perf_counter() - t0
        preds = {}
        for split in ("val", "test"):
            raw = estimator.predict(task.X(split))
            if len(np.ravel(raw)) != len(task.ids(split)):
                raise HarnessError(f"{where}: predict returned {len(np.ravel(raw))} values for {len(task.ids(split))} {split} materials")
            try:
                preds[split] = task.check_predictions(split, task.ids(split), raw)
            except HarnessError as err:
                raise HarnessError(f"{where}: {err}") from None
        seconds = time.perf_counter() - t0
    except HarnessError as err:
        return Outcome(model.name, False, str(err))
    except (Exception, SystemExit) as err:  # a contributor's bug must not take the run down
        frames = traceback.extract_tb(err.__traceback__)
        # Point at the model's own code when the error passed through it, else at the raising frame.
        own = [f for f in frames if Path(f.filename).resolve() == (model.path / "model.py").resolve()]
        at = own[-1] if own else frames[-1]
        text = " ".join(str(err).split())
        return Outcome(model.name, False, f"{where}: {type(err).__name__}: {text} (at {Path(at.filename).name}:{at.lineno})")

    # Save the fitted model first: a model that cannot be saved fails before any file is written.
    if artifacts_dir is not None:
        path = artifact_path(artifacts_dir, model.name)
        try:
            with atomic.atomic_path(path) as tmp:
                joblib.dump(estimator, tmp)
        except Exception as err:
            return Outcome(model.name, False, f"{model.name}: fitted model cannot be saved for `predict` ({type(err).__name__}: {err})")

    sub = Path(submissions_dir) / model.name
    res = Path(results_dir) / model.name
    for stale in [*sub.glob(".*.tmp"), *res.glob(".*.tmp")]:  # left by a run killed mid-write (atomic.py)
        stale.unlink(missing_ok=True)
    old_meta = {}
    changed = submission.write_csv_zip(sub / task.spec.submission_filename, task.ids("test"), task.y("test"), preds["test"])
    if not changed and (sub / "metadata.json").is_file():
        old_meta = json.loads((sub / "metadata.json").read_text())
    submission.write_json(sub / "metadata.json", _metadata(task, model, estimator, seconds, old_meta))
    atomic.write_text(sub / "run.sh", f"#!/usr/bin/env bash\n# Reproduce this submission from the repository root.\nset -euo pipefail\npython -m harness run {model.name}\n")
    submission.write_csv_zip(res / "val_predictions.csv.zip", task.ids("val"), task.y("val"), preds["val"])
    parity_plot(res / "parity.png", task.y("test"), preds["test"], f"{model.name} — {task.spec.name}")
    submission.write_json(res / "timings.json", {"fit_seconds": round(fit_s, 1), "total_seconds": round(seconds, 1),
                                                  "machine": platform.machine(), "python": platform.python_version()})
    return Outcome(model.name, True, metrics=regression_metrics(task.y("test"), preds["test"]), seconds=seconds)
