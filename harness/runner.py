"""Train one model folder on one frozen benchmark and write what it produced.

``run_one`` is what the model's own process executes (``python -m harness run-model``,
started by ``harness.schedule``): fit on train, predict val and test, then write

* ``submissions/<model>/<key>.csv.zip`` (+ ``metadata.json``, ``run.sh``): the
  JARVIS-Leaderboard files;
* ``results/<model>/<benchmark>/``: ``val_predictions.csv.zip``, ``parity.png`` and the
  run record ``run.json`` (harness/record.py);
* the fitted artifact and its own record under ``$KSPACING_CACHE_DIR/artifacts/``.

A model raising anything fails alone with a one-line message naming its file.
"""

from __future__ import annotations

import json
import platform
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

from harness import atomic, conformal, numeric_env, predict_path, record, submission
from harness.context import ModelContext
from harness.errors import HarnessError
from harness.metrics import regression_metrics
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
    changed: bool = False  # the submission's predictions differ from the committed ones
    reused: bool = False  # nothing the fit depends on changed: the saved fit and files were kept (harness.warm)

    def as_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "message": self.message, "metrics": self.metrics,
                "seconds": self.seconds, "changed": self.changed, "reused": self.reused}



def _jsonable_options(options) -> dict:
    """The options a model ran with (its resolved ``options_``, else model.yaml's), as JSON."""
    return json.loads(json.dumps(dict(options or {}), sort_keys=True, default=str))

def artifact_path(cache_dir: Path, name: str, benchmark: str) -> Path:
    return record.artifact_dir(cache_dir, name, benchmark) / record.ARTIFACT_FILE


def _metadata(task: Task, model: ModelFolder, seconds: float, old: dict, changed: bool) -> dict:
    """JARVIS-Leaderboard's metadata.json. Date and time taken are kept from the previous
    submission when the predictions did not change, so reruns give byte-identical files."""
    meta = model.meta
    fname = task.benchmark.submission_filename
    times = dict(old.get("time_taken_seconds") or {}) if isinstance(old.get("time_taken_seconds"), dict) else {}
    if changed or fname not in times:
        times[fname] = round(seconds, 1)
    return {
        "model_name": model.name,
        "project_url": meta.get("project_url", PROJECT_URL),
        "date_submitted": (old.get("date_submitted") if not changed else None) or time.strftime("%m-%d-%Y"),
        "author_email": next((a["email"] for a in meta.get("authors", []) if a.get("email")), ""),
        "team_name": meta.get("team_name", "kspacing-bench"),
        "language": "python",
        "os": "linux",
        "software_used": ",".join(meta.get("software", [])),
        "hardware_used": meta.get("hardware", ""),
        "git_url": [meta["git_url"]] if meta.get("git_url") else [],
        "time_taken_seconds": dict(sorted(times.items())),
        "kind": model.kind,
    }


def _failure(model: ModelFolder, err: BaseException) -> str:
    where = _rel(model.path / "model.py")
    frames = traceback.extract_tb(err.__traceback__)
    # Point at the model's own code when the error passed through it, else at the raising frame.
    own = [f for f in frames if Path(f.filename).resolve() == (model.path / "model.py").resolve()]
    at = own[-1] if own else (frames[-1] if frames else None)
    text = " ".join(str(err).split())
    loc = f" (at {Path(at.filename).name}:{at.lineno})" if at else ""
    return f"{where}: {type(err).__name__}: {text}{loc}"


def _positional(raw, X, where: str, what: str):
    """A model's output, refused when it cannot be one value per row of ``X`` in X's order.
    Why: predictions are matched to materials by position; a pandas result sorted or
    reindexed by material id would otherwise be scored against the wrong materials."""
    if raw is None:
        raise HarnessError(f"{where}: {what} returned None (it must return one number per row of X, in X's order)")
    index = getattr(raw, "index", None)
    if (hasattr(index, "equals") and len(index) == len(X) and not index.equals(X.index)
            and set(index) == set(X.index)):
        raise HarnessError(f"{where}: {what} returned a {type(raw).__name__} whose index is X's ids in another "
                           "order: predictions are matched to X's rows by position (return them in X's row order)")
    return raw


def fit_predict(task: Task, model: ModelFolder, ctx: ModelContext):
    """(estimator, {split: predictions aligned to task.ids(split)}, fit seconds, total seconds)."""
    where = _rel(model.path / "model.py")
    module = model.load_module()
    estimator = module.make_model(ctx)
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
        raise HarnessError(f"{where}: make_model returned {type(estimator).__name__}, which lacks fit/predict")
    t0 = time.perf_counter()
    estimator.fit(task.X("train"), task.y("train"))
    fit_s = time.perf_counter() - t0
    preds = {}
    for split in ("val", "test"):
        raw = _positional(estimator.predict(task.X(split)), task.X(split), where, "predict")
        if len(np.ravel(raw)) != len(task.ids(split)):
            raise HarnessError(f"{where}: predict returned {len(np.ravel(raw))} values for {len(task.ids(split))} {split} materials")
        try:
            preds[split] = task.check_predictions(split, task.ids(split), raw)
        except HarnessError as err:
            raise HarnessError(f"{where}: {err}") from None
    if callable(getattr(estimator, "predict_continuous", None)):
        for split in ("val", "test"):
            raw = _positional(estimator.predict_continuous(task.X(split)), task.X(split), where, "predict_continuous")
            try:
                preds[f"{split}_continuous"] = task.check_predictions(split, task.ids(split), raw)
            except HarnessError as err:
                raise HarnessError(f"{where}: predict_continuous: {err}") from None
    return estimator, preds, fit_s, time.perf_counter() - t0


def _reuse(task: Task, model: ModelFolder, ctx: ModelContext, submissions_dir: Path, results_dir: Path,
           art: Path | None) -> Outcome | None:
    """The Outcome of the saved fit when harness.warm finds nothing changed, else None."""
    from harness import warm

    t0 = time.perf_counter()
    bench = task.benchmark
    res = record.results_folder(results_dir, model.name, bench.name)
    test_file = Path(submissions_dir) / model.name / bench.submission_filename
    outputs = {"test_predictions": test_file, "val_predictions": res / record.VAL_FILE,
               **{k: res / f for k, f in record.CONTINUOUS_FILES.items()}}
    side = warm.reusable(task, model, ctx, art, outputs, res / record.RECORD_FILE)
    if side is None:
        return None
    rows = submission.read_csv_zip(test_file)
    pred = task.check_predictions("test", rows.ids, rows.predictions)  # recomputed from the file, never trusted
    return Outcome(model.name, True, "inputs unchanged: saved fit reused", metrics=regression_metrics(task.y("test"), pred),
                   seconds=time.perf_counter() - t0, reused=True)


def run_one(task: Task, model: ModelFolder, ctx: ModelContext, submissions_dir: Path, results_dir: Path,
            artifacts_dir: Path | None = None, retrain: bool = False) -> Outcome:
    from harness import warm

    art = artifact_path(artifacts_dir, model.name, task.benchmark.name) if artifacts_dir is not None else None
    for folder in (Path(submissions_dir) / model.name, record.results_folder(results_dir, model.name, task.benchmark.name)):
        for stale in folder.glob(".*.tmp"):  # left by a run killed mid-write (atomic.py)
            stale.unlink(missing_ok=True)
    if not retrain:
        try:
            reused = _reuse(task, model, ctx, submissions_dir, results_dir, art)
        except HarnessError:
            reused = None  # a damaged file: refit and rewrite
        if reused is not None:
            return reused
    try:
        estimator, preds, fit_s, seconds = fit_predict(task, model, ctx)
    except HarnessError as err:
        return Outcome(model.name, False, str(err))
    except (Exception, SystemExit) as err:  # a contributor's bug must not take the run down
        return Outcome(model.name, False, _failure(model, err))
    path_check = predict_path.check(estimator, task.X("val"), preds["val"])

    bench = task.benchmark
    code = warm.loaded_project_files()  # what the fit executed (its process loaded nothing else of ours)
    # Save the fitted model first: a model that cannot be saved fails before any file is written.
    if art is not None:
        try:
            with atomic.atomic_path(art) as tmp:
                joblib.dump(estimator, tmp)
        except Exception as err:
            return Outcome(model.name, False, f"{model.name}: fitted model cannot be saved for `predict` ({type(err).__name__}: {err})")

    sub = Path(submissions_dir) / model.name
    res = record.results_folder(results_dir, model.name, bench.name)
    test_file = sub / bench.submission_filename
    val_file = res / record.VAL_FILE
    changed = submission.write_csv_zip(test_file, task.ids("test"), task.y("test"), preds["test"])
    changed |= submission.write_csv_zip(val_file, task.ids("val"), task.y("val"), preds["val"])
    for key, fname in record.CONTINUOUS_FILES.items():
        if key in preds:
            split = key.split("_")[0]
            changed |= submission.write_csv_zip(res / fname, task.ids(split), task.y(split), preds[key])
        else:
            (res / fname).unlink(missing_ok=True)
    old_meta = {}
    if (sub / "metadata.json").is_file():
        try:
            old_meta = json.loads((sub / "metadata.json").read_text())
        except json.JSONDecodeError:
            old_meta = {}
    submission.write_json(sub / "metadata.json", _metadata(task, model, seconds, old_meta, changed))
    atomic.write_text(sub / "run.sh", "#!/usr/bin/env bash\n# Reproduce this folder's submission files (needs the "
                      "kspacing-bench checkout this folder sits in; see CONTRIBUTING.md).\nset -euo pipefail\n"
                      f'cd "$(dirname "$0")/../.."\npython -m harness run {model.name}\n')
    parity_plot(res / record.PARITY_FILE, task.y("test"), preds["test"], f"{model.name} — {bench.name}")

    # Calibrate on what the model knows before snapping, as written to the file (the
    # leaderboard and predict recompute the offset from the file: the same number).
    cal = [float(submission.format_float(v)) for v in preds.get("val_continuous", preds["val"])]
    q = conformal.conformal_offset(task.y("val"), cal)
    rec = {
        "record_version": record.RECORD_VERSION,
        "model": model.name,
        "benchmark": {"name": bench.name, "key": bench.key, "definition_sha256": bench.definition_sha256},
        "store": {k: task.provenance.get(k) for k in ("dataset", "file", "sha256")},
        "counts": bench.counts(),
        "seed": ctx.seed,
        "n_jobs": ctx.n_jobs,
        "options": _jsonable_options(getattr(estimator, "options_", None) or ctx.options),
        "calibration": {"score": "additive y - yhat", "alpha": conformal.ALPHA, "offset": q, "n": len(task.ids("val")),
                        "grid": conformal.GRID,
                        "on": "continuous predictions" if "val_continuous" in preds else "predictions"},
        "sha256": {"test_predictions": record.sha256_file(test_file), "val_predictions": record.sha256_file(val_file),
                   **{k: record.sha256_file(res / f) for k, f in record.CONTINUOUS_FILES.items() if k in preds},
                   "artifact": record.sha256_file(art) if art is not None else None},
        "versions": record.library_versions(),
        "numeric_env": numeric_env.describe(),
        "machine": platform.machine(),
        "predict_path": path_check,
        "fit_seconds": round(fit_s, 1),
        "total_seconds": round(seconds, 1),
    }
    if art is not None:
        side = {**rec, "fingerprint": warm.fingerprint(task, model, ctx, code)}
        atomic.write_text(art.parent / record.SIDECAR_FILE, record.dumps(side))
    record.write(res / record.RECORD_FILE, rec)
    return Outcome(model.name, True, predict_path.warning(model.name, path_check) or "",
                   metrics=regression_metrics(task.y("test"), preds["test"]), seconds=seconds, changed=changed)
