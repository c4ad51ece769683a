"""Featurization follows joblib's active backend (the mechanism behind
``harness run --dask-scheduler``), and a cluster that cannot be used is a one-line
error before any work. Only the local path is tested: no Dask cluster runs here."""

from __future__ import annotations

import importlib.util

import joblib
import numpy as np

from harness import cli
from modellib.features import structure as sf


def test_featurization_runs_on_the_active_joblib_backend(task, tmp_path, monkeypatch):
    X = task.materials.iloc[:6]
    local = sf.featurize_structures(X, tmp_path / "local", n_jobs=1, batch_size=2, progress=False)

    seen = []
    real = sf._featurize_batch

    def spy(batch):  # records which joblib backend ran each batch
        from joblib.parallel import get_active_backend

        seen.append(type(get_active_backend()[0]).__name__)
        return real(batch)

    monkeypatch.setattr(sf, "_featurize_batch", spy)
    # threading runs in this process, so the spy sees each call; dask is the same hook
    with joblib.parallel_config(backend="threading"):
        threaded = sf.featurize_structures(X, tmp_path / "threaded", n_jobs=2, batch_size=2, progress=False)
    assert seen and set(seen) == {"ThreadingBackend"} and len(seen) == 3
    assert np.array_equal(local.to_numpy(), threaded.to_numpy(), equal_nan=True)


def test_unusable_dask_scheduler_is_one_line_error_before_loading_data(capsys, monkeypatch):
    def no_load(*a, **k):
        raise AssertionError("data loaded before the scheduler was checked")

    monkeypatch.setattr("harness.data.load_materials", no_load)
    monkeypatch.setattr(cli, "_load_store", no_load)
    rc = cli.main(["run", "train_median", "--dask-scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("error: --dask-scheduler tcp://127.0.0.1:9: ")
    if importlib.util.find_spec("distributed") is None:
        assert "dask.distributed is not installed" in err[0]
    else:
        assert "cannot connect" in err[0]
