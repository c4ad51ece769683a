"""A fitted model as ``predict`` uses it: the estimator saved by ``harness run`` plus its
conformal calibration, both checked against the committed run record.

The artifact is accepted only when (1) its bytes match the record saved beside it, and
(2) that record's test and val prediction hashes equal the committed
``results/<model>/<benchmark>/run.json``'s: the estimator is the one whose predictions
are on the leaderboard, and the L90 offset comes from those same val predictions.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import benchmark as bm
from harness import paths, record, registry
from harness.errors import HarnessError

# The model used when leaderboard.csv names none of ours with a saved artifact.
DEFAULT_MODEL = "rf_composition"


@dataclass
class Fitted:
    name: str
    estimator: object
    benchmark: str = ""
    y_val: np.ndarray | None = None  # calibration truth (None: no calibration available)
    p_val: np.ndarray | None = None  # the model's val predictions
    record: dict = field(default_factory=dict)
    problem: str | None = None  # why there is no calibration, when there is none
    continuous: bool = False  # calibrated on predict_continuous: bound that, not the snapped prediction
    val_recip: np.ndarray | None = None  # reciprocal lengths of the val cells the model sees (the groups file)
    val_groups: np.ndarray | None = None  # (n_val, 3) metal / size / system labels (harness.group_bound)
    point_val: np.ndarray | None = None  # the model's predicted (reported) val lengths: the per-group bound's floor
    group_problem: str | None = None  # why there is no per-group bound, when there is none
    _group_params: dict = field(default_factory=dict, repr=False)

    @property
    def calibrated(self) -> bool:
        return self.y_val is not None

    @property
    def n_cal(self) -> int:
        return 0 if self.y_val is None else len(self.y_val)

    def offset(self, alpha: float = 0.1) -> float:
        """q̂ of the additive conformal score at level 1 - alpha (HarnessError if uncalibrated)."""
        from harness import conformal

        if self.y_val is None:
            raise HarnessError(self.problem or f"{self.name}: no calibration data")
        return conformal.conformal_offset(self.y_val, self.p_val, alpha)

    def group_params(self, alpha: float = 0.1) -> dict | None:
        """Calibration of the per-group bound (harness.group_bound) at level 1 - alpha, or
        None when it cannot be had (``group_problem`` says why)."""
        from harness import group_bound

        if self.y_val is None or self.val_groups is None or self.val_recip is None:
            return None
        # Without separately reported lengths (a model calibrated on what it predicts), p_val is both.
        point = self.p_val if self.point_val is None else self.point_val
        if alpha not in self._group_params:
            self._group_params[alpha] = group_bound.fit(self.y_val, self.p_val, self.val_recip, self.val_groups, alpha,
                                                        point_cal=point)
        return self._group_params[alpha]


def trained_benchmark(name: str, results_dir: Path | None = None, benchmarks_dir: Path | None = None) -> str | None:
    """The largest benchmark with a committed run record for ``name`` (None: never run)."""
    results_dir = Path(results_dir or paths.results_dir())
    for b in bm.names_by_size(benchmarks_dir or paths.benchmarks_dir()):
        if (record.results_folder(results_dir, name, b) / record.RECORD_FILE).is_file():
            return b
    return None


def artifact_path(name: str, benchmark: str, cache_dir: Path | None = None) -> Path:
    return record.artifact_dir(cache_dir or paths.run_cache_dir(), name, benchmark) / record.ARTIFACT_FILE


def has_artifact(name: str, cache_dir: Path | None = None, results_dir: Path | None = None) -> bool:
    """A saved model that belongs to the committed run record (checked as in load_fitted)."""
    b = trained_benchmark(name, results_dir)
    if b is None or not artifact_path(name, b, cache_dir).is_file():
        return False
    try:
        _checked_artifact(name, b, Path(results_dir or paths.results_dir()), cache_dir)
        return True
    except HarnessError:
        return False


def _checked_artifact(name: str, bench: str, results_dir: Path, cache_dir: Path | None) -> tuple[Path, dict]:
    folder = record.results_folder(results_dir, name, bench)
    rec = record.read(folder / record.RECORD_FILE)
    art = artifact_path(name, bench, cache_dir)
    if not art.is_file():
        raise HarnessError(f"no trained model {name} in {art}: run `python -m harness run {name}`")
    side = record.read(art.parent / record.SIDECAR_FILE)
    if record.sha256_file(art) != side["sha256"].get("artifact"):
        raise HarnessError(f"{art}: does not match its record {art.parent / record.SIDECAR_FILE} (replaced or damaged); "
                           f"rerun `python -m harness run {name}`")
    if not record.same_predictions(side, rec):
        raise HarnessError(f"{art}: fitted in another run than {folder / record.RECORD_FILE} (its predictions differ "
                           f"from the committed ones); rerun `python -m harness run {name}`")
    return art, rec


def default_model(leaderboard_csv: Path | None = None, cache_dir: Path | None = None,
                  models_dir: Path | None = None, results_dir: Path | None = None) -> str:
    """The best-ranked of our rows in leaderboard.csv whose saved model belongs to its
    committed run record; else DEFAULT_MODEL when it has one; else a HarnessError naming
    the command to run."""
    leaderboard_csv = Path(leaderboard_csv or paths.output_dir() / "leaderboard.csv")
    models_dir = Path(models_dir or paths.models_dir())
    ours = []
    try:
        with open(leaderboard_csv, newline="", encoding="utf-8") as f:
            ours = [r["model"] for r in csv.DictReader(f)
                    if r.get("kind") != "reference" and (models_dir / r.get("model", "")).is_dir()]
    except (OSError, KeyError, csv.Error):
        pass
    for name in dict.fromkeys(ours + [DEFAULT_MODEL]):
        if has_artifact(name, cache_dir, results_dir):
            return name
    best = ours[0] if ours else DEFAULT_MODEL
    raise HarnessError(f"no trained model under {Path(cache_dir or paths.cache_dir()) / 'artifacts'}: run "
                       f"`python -m harness run {best}` (or pass --model NAME of a trained one)")


def _load_estimator(name: str, path: Path, models_dir: Path):
    import joblib

    from harness import registry

    folder = Path(models_dir) / name
    if not folder.is_dir():
        raise HarnessError(f"no model folder {folder}")
    registry.read_folder(folder).load_module()  # its classes must be importable to unpickle
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. scikit-learn version notes; a real mismatch fails below
            return joblib.load(path)
    except Exception as err:
        raise HarnessError(f"{path}: cannot load the fitted model ({type(err).__name__}: "
                           f"{' '.join(str(err).split())[:200]}); rerun `python -m harness run {name}`") from None


def load_fitted(name: str, cache_dir: Path | None = None, models_dir: Path | None = None,
                results_dir: Path | None = None, benchmarks_dir: Path | None = None) -> Fitted:
    """The checked estimator and calibration of ``name``; HarnessError (one line) when the
    artifact is missing or does not belong to the committed run record."""
    from harness import submission

    results_dir = Path(results_dir or paths.results_dir())
    benchmarks_dir = Path(benchmarks_dir or paths.benchmarks_dir())
    models_dir = Path(models_dir or paths.models_dir())
    bench = trained_benchmark(name, results_dir, benchmarks_dir)
    if bench is None and not (models_dir / name).is_dir():
        raise registry.no_folder(name, models_dir)
    if bench is None:
        raise HarnessError(f"{results_dir / name}: no run record; run `python -m harness run {name}`")
    folder = record.results_folder(results_dir, name, bench)
    art, rec = _checked_artifact(name, bench, results_dir, cache_dir)
    fitted = Fitted(name, _load_estimator(name, art, models_dir), benchmark=bench, record=rec)
    try:
        key = "val_continuous" if "val_continuous" in rec["sha256"] else "val_predictions"
        val = folder / (record.CONTINUOUS_FILES["val_continuous"] if key == "val_continuous" else record.VAL_FILE)
        if not val.is_file() or record.sha256_file(val) != rec["sha256"][key]:
            raise HarnessError(f"{val}: missing or not the file recorded in {folder / record.RECORD_FILE}, so no L90")
        definition = bm.load(bench, benchmarks_dir)
        rows = submission.read_csv_zip(val)
        submission.check_ids(definition.ids["val"], rows.ids, str(val))
        fitted.y_val = definition.y("val", rows.ids)
        fitted.p_val = np.asarray(rows.predictions, dtype=float)
        fitted.continuous = key == "val_continuous" and callable(getattr(fitted.estimator, "predict_continuous", None))
        point = folder / record.VAL_FILE  # the reported val predictions: the per-group bound's floor
        if key == "val_continuous":  # else the calibration predictions are the reported ones (group_params)
            if not point.is_file() or record.sha256_file(point) != rec["sha256"]["val_predictions"]:
                raise HarnessError(f"{point}: missing or not the file recorded in {folder / record.RECORD_FILE}, so no L90")
            got = submission.read_csv_zip(point)
            submission.check_ids(rows.ids, got.ids, str(point))
            by_id = dict(zip(got.ids, got.predictions))
            fitted.point_val = np.array([by_id[i] for i in rows.ids], dtype=float)
    except HarnessError as err:
        fitted.problem = str(err)
        return fitted
    _attach_groups(fitted, definition, rows.ids, results_dir)
    return fitted


def _attach_groups(fitted: Fitted, definition, val_ids: list[str], results_dir: Path) -> None:
    """Val labels and cells for the per-group bound; it also needs P(metal) for a new
    structure, so only a model with a metallicity estimate (``metallicity_``) gets one."""
    from harness import group_bound

    groups_file = Path(results_dir).parent / group_bound.GROUPS_FILE.format(benchmark=definition.name)
    if not hasattr(getattr(fitted.estimator, "metallicity_", None), "predict_proba_metal"):
        fitted.group_problem = f"{fitted.name} has no metallicity estimate (P(metal)) to place a structure in its group"
    else:
        try:
            read = group_bound.read_groups_file(groups_file, {"val": val_ids})
        except HarnessError as err:
            fitted.group_problem = str(err)
            return
        if read is None:
            fitted.group_problem = f"{groups_file}: missing (python -m modellib.studies.domain_profile writes it)"
            return
        groups, cells = read
        fitted.val_groups = np.array([groups["val"][G] for G in group_bound.GROUPINGS]).T
        fitted.val_recip = cells["val"]  # the cells the model sees in predict (canonical), as the bound there
