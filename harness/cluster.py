"""Run the joblib-parallel work of a harness run (structure featurization, scikit-learn
forests) on a Dask cluster, through joblib's own ``dask`` backend: no model or feature
code changes, only ``--dask-scheduler ADDRESS`` on the command line.

dask and distributed are pinned in requirements.txt; tests run a local cluster. A real
cluster's workers need the same environment (the workers import ``harness``)."""

from __future__ import annotations

import contextlib
import sys

from harness.errors import HarnessError, one_line


@contextlib.contextmanager
def joblib_backend(dask_scheduler: str | None, timeout_s: float = 30.0):
    """Inside: joblib.Parallel runs on the Dask cluster at ``dask_scheduler``
    (e.g. ``tcp://10.0.0.5:8786``); with None, nothing changes (local processes)."""
    if not dask_scheduler:
        yield None
        return
    try:
        import joblib
        from dask.distributed import Client
    except ImportError:
        raise HarnessError(f"--dask-scheduler {dask_scheduler}: dask.distributed is not installed "
                           "(pip install 'dask[distributed]' here and on the workers)") from None
    try:
        client = Client(dask_scheduler, timeout=timeout_s)
    except (OSError, TimeoutError, ValueError) as err:
        raise HarnessError(f"--dask-scheduler {dask_scheduler}: cannot connect ({one_line(err)})") from None
    try:
        cores = sum(client.ncores().values())
        print(f"joblib backend: dask scheduler {dask_scheduler} ({len(client.ncores())} workers, {cores} threads)",
              file=sys.stderr, flush=True)
        # n_jobs of each joblib.Parallel is ignored by the dask backend: it uses the cluster
        with joblib.parallel_config(backend="dask"):
            yield client
    finally:
        client.close()
