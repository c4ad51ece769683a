"""A fitted model as ``predict`` uses it: the estimator saved by ``harness run`` plus its
conformal calibration (val predictions against the benchmark's val truth).

One entry point, ``load_fitted(name)``; predict never opens artifacts or val files itself.
(Interim version: the run-record checks of the benchmark-definition issue land here.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import HarnessError


@dataclass
class Fitted:
    name: str
    estimator: object
    y_val: np.ndarray | None = None  # calibration truth (None: no calibration available)
    p_val: np.ndarray | None = None  # the model's val predictions
    record: dict = field(default_factory=dict)
    problem: str | None = None  # why there is no calibration, when there is none

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


def load_fitted(name: str, cache_dir: Path | None = None, models_dir: Path | None = None,
                results_dir: Path | None = None) -> Fitted:
    from harness import predict

    est = predict.load_model(name, cache_dir, models_dir)
    fitted = Fitted(name, est)
    try:
        from harness import submission
        from harness.benchmark import load_spec, load_split
        from harness import paths

        path = Path(results_dir or paths.RESULTS_DIR) / name / "val_predictions.csv.zip"
        if not path.is_file():
            raise HarnessError(f"{path}: missing, so no L90; run `python -m harness run {name}`")
        rows = submission.read_csv_zip(path)
        truth = load_split(load_spec()).targets["val"]
        fitted.y_val = np.array([truth[i] for i in rows.ids])
        fitted.p_val = np.asarray(rows.predictions, dtype=float)
    except HarnessError as err:
        fitted.problem = str(err)
    return fitted
