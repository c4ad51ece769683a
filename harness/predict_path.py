"""Does a fitted model give, through ``predict``, what the benchmark measured?

``predict`` hands every model the canonical cell of the user's structure
(harness.structure_io.canonical_cell: same crystal, same input, whatever cell it came in),
while the benchmark hands it the store's own cells. A model whose answer depends on the
cell (a structure model fitted on the store's cells) then gets, through ``predict``,
inputs its calibration never saw: its safe length is calibrated on other numbers than it
reports. The runner measures this after every fit on a fixed sample of val materials,
records it in the run record (``predict_path``) and warns; a structure model fixes it by
featurizing the canonical cell itself (modellib.features.physics.canonical_cells, as
kspace_gbm and matminer_xgboost do).
"""

from __future__ import annotations

import numpy as np

N_CHECKED = 200  # val materials, evenly spaced over the split's id order
TOLERANCE = 0.01  # Å: a prediction that moves by less is the same prediction


def check(estimator, X, expected, n: int = N_CHECKED) -> dict:
    """{checked, moved, max_shift} of ``estimator.predict`` on ``n`` rows of ``X`` (evenly
    spaced) given as their canonical cells, against ``expected`` (its predictions on ``X``
    as given); {checked, error} when the model fails on the canonical cells."""
    from harness.structure_io import canonical_cell

    idx = np.unique(np.linspace(0, len(X) - 1, min(n, len(X))).round().astype(int))
    sub = X.iloc[idx]
    try:
        got = np.asarray(estimator.predict(sub.assign(atoms=[canonical_cell(a) for a in sub["atoms"]])), dtype=float).ravel()
        if len(got) != len(idx):
            raise ValueError(f"{len(got)} predictions for {len(idx)} structures")
    except Exception as err:  # contributor models raise anything: report it, never fail the run
        return {"checked": int(len(idx)), "error": f"{type(err).__name__}: {' '.join(str(err).split())}"}
    shift = np.abs(got - np.asarray(expected, dtype=float)[idx])
    shift = np.where(np.isfinite(shift), shift, np.inf)
    return {"checked": int(len(idx)), "moved": int((shift > TOLERANCE).sum()), "max_shift": round(float(shift.max()), 3)}


def warning(name: str, result: dict | None) -> str | None:
    """One line for the run's log when predict would not reproduce the benchmark, else None."""
    if not result:
        return None
    if "error" in result:
        return (f"{name}: predict hands the model canonical cells, and it failed on them ({result['error']}); "
                "predict will report that failure for user structures")
    if result["moved"] == 0:
        return None
    return (f"{name}: {result['moved']} of {result['checked']} val predictions move (up to {result['max_shift']:g} Å) "
            "when the same crystals come as the canonical cells predict hands the model, so its safe length in "
            "predict is calibrated on other inputs: featurize the canonical cell in fit and predict "
            "(modellib.features.physics.canonical_cells)")
