"""The run record: one JSON file per (model, benchmark) beside the val predictions,
``results/<model>/<benchmark>/run.json``, saying exactly what produced the committed
submission: benchmark and definition hash, store, seed, n_jobs, the model's options, library
versions, the conformal calibration, and the sha256 of the test and val prediction files
and of the fitted artifact.

Tracked files change only when predictions change: when a rerun's test and val files are
byte-identical to the recorded ones, the committed record is left as it is (its timing,
versions and artifact hash describe the run that first produced these predictions). The
fresh run's own record always goes beside its artifact in the cache
(``artifacts/<benchmark>/<model>/record.json``); ``predict`` accepts an artifact only
when that record's prediction hashes equal the committed record's.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path

from harness import atomic
from harness.errors import HarnessError

RECORD_FILE = "run.json"
VAL_FILE = "val_predictions.csv.zip"
# A model with ``predict_continuous`` (its prediction before any snapping to the grid of
# mesh changes): the harness calibrates the safe length on these instead.
CONTINUOUS_FILES = {"val_continuous": "val_continuous.csv.zip", "test_continuous": "test_continuous.csv.zip"}
PREDICTION_KEYS = ("test_predictions", "val_predictions", *CONTINUOUS_FILES)
PARITY_FILE = "parity.png"
ARTIFACT_FILE = "model.joblib"
SIDECAR_FILE = "record.json"
RECORD_VERSION = 1
LIBRARIES = ("numpy", "scipy", "scikit-learn", "xgboost", "lightgbm", "torch", "crabnet", "matminer", "pymatgen",
             "jarvis-tools", "jarvis-leaderboard", "spglib", "pandas")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return out


def results_folder(results_dir: Path, model: str, benchmark: str) -> Path:
    return Path(results_dir) / model / benchmark


def artifact_dir(cache_dir: Path, model: str, benchmark: str) -> Path:
    return Path(cache_dir) / "artifacts" / benchmark / model


def read(path: Path) -> dict:
    from harness.submission import read_metadata

    rec = read_metadata(path)
    path = Path(path)
    for field in ("model", "benchmark", "sha256", "calibration"):
        if field not in rec:
            raise HarnessError(f"{path}: {field}: missing")
    for field in ("test_predictions", "val_predictions"):
        if not isinstance(rec["sha256"].get(field), str):
            raise HarnessError(f"{path}: sha256.{field}: missing")
    return rec


def complete(rec: dict) -> bool:
    """A record written by a real run (not migrated from before records existed) that has
    every check a run makes (``predict_path``: records kept from before the check existed
    get it on their next fit, though their predictions did not change)."""
    return not rec.get("migrated") and bool(rec["sha256"].get("artifact")) and "predict_path" in rec


def dumps(rec: dict) -> str:
    return json.dumps(rec, indent=2) + "\n"


def write(path: Path, rec: dict) -> bool:
    """Write the committed record unless the old one is complete and describes the same
    prediction files. Returns whether the file was written."""
    path = Path(path)
    if path.is_file():
        try:
            old = read(path)
        except HarnessError:
            old = None
        if old is not None and complete(old) and same_predictions(old, rec):
            return False
    atomic.write_text(path, dumps(rec))
    return True


def same_predictions(a: dict, b: dict) -> bool:
    """Both records describe the same prediction files (continuous ones included)."""
    return all(a["sha256"].get(k) == b["sha256"].get(k) for k in PREDICTION_KEYS)
