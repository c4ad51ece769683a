"""The model scheduler: processes in parallel, `needs` respected, a failed need stops its
dependants without running them, cycles refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from harness import paths
from harness.errors import HarnessError
from harness.schedule import order

REPO = paths.REPO_ROOT

MODEL = """
import json, os, time
import numpy as np

class M:
    def fit(self, X, y):
        t0 = time.time()
        if {fail!r}:
            raise RuntimeError("planned failure")
        time.sleep({sleep})
        with open(os.path.join(os.environ["SCHED_LOG"], "{name}.json"), "w") as f:
            json.dump({{"start": t0, "end": time.time(), "ppid": os.getppid()}}, f)
        self.m = float(np.median(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.m)

def make_model(ctx):
    return M()
"""


def _model(models, name, sleep=0.0, fail=False, needs=(), after=()):
    d = models / name
    shutil.copytree(REPO / "models" / "train_median", d)
    y = (d / "model.yaml").read_text().replace("name: train_median", f"name: {name}")
    if needs:
        y += f"\nneeds: [{', '.join(needs)}]\n"
    if after:
        y += f"\nafter: [{', '.join(after)}]\n"
    (d / "model.yaml").write_text(y)
    (d / "model.py").write_text(MODEL.format(name=name, sleep=sleep, fail=fail))


@pytest.fixture
def tree(tmp_path, data_dir, cache_root):
    models = tmp_path / "models"
    _model(models, "a_slow", sleep=6)
    _model(models, "b_after_a", needs=["a_slow"])
    _model(models, "c_free", sleep=1)
    _model(models, "d_broken", fail=True)
    _model(models, "e_after_broken", needs=["d_broken"])
    _model(models, "f_after_broken", after=["d_broken"])  # after: runs whatever d_broken's outcome
    log = tmp_path / "log"
    log.mkdir()
    env = {**os.environ, paths.MODELS_DIR_ENV: str(models), "SCHED_LOG": str(log), paths.CACHE_DIR_ENV: str(cache_root),
           "PYTHONPATH": str(REPO)}
    return tmp_path, env, log


def test_parallel_processes_respect_needs_and_failed_needs(tree):
    tmp, env, log = tree
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--all", "--scratch", str(tmp / "out"), "--limit", "40",
                           "--parallel", "2", "--n-jobs", "2"], env=env, capture_output=True, text=True, cwd=REPO,
                          timeout=600)
    assert proc.returncode == 1, proc.stderr
    t = {n: json.loads((log / f"{n}.json").read_text()) for n in ("a_slow", "b_after_a", "c_free")}
    assert t["b_after_a"]["start"] >= t["a_slow"]["end"]  # needs respected
    assert t["c_free"]["start"] < t["a_slow"]["end"]  # two at once
    assert "e_after_broken: FAILED: e_after_broken: not run: it needs d_broken, which failed" in proc.stdout
    assert not (log / "e_after_broken.json").exists()
    # after: starts once d_broken has finished, and runs although it failed
    assert proc.stdout.index("d_broken: FAILED") < proc.stdout.index("== f_after_broken")
    assert "f_after_broken: test MAE" in proc.stdout and (log / "f_after_broken.json").is_file()
    assert proc.stderr.strip().splitlines()[-1] == "2 model(s) failed: d_broken, e_after_broken"
    for n in ("a_slow", "b_after_a", "c_free", "f_after_broken"):
        assert (tmp / "out" / "submissions" / n).is_dir()
        assert (paths.Path(env[paths.CACHE_DIR_ENV]) / "logs" / f"{n}.log").is_file()


def test_unknown_needs_and_cycles_are_refused():
    with pytest.raises(HarnessError, match="cycle a -> b -> a"):
        order(["a", "b"], {"a": ["b"], "b": ["a"]})
    with pytest.raises(HarnessError, match="needs: z is not among"):
        order(["a"], {"a": ["z"]})


def test_models_run_as_tasks_on_a_dask_cluster(tree, monkeypatch):
    """--dask-scheduler: each model is a task; a worker starts the model process (so its
    parent is the worker, here this test process), needs still hold, failures stay alone."""
    distributed = pytest.importorskip("distributed")
    tmp, env, log = tree
    monkeypatch.setenv("SCHED_LOG", str(log))  # the worker (this process) starts the model processes
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                  dashboard_address=None) as cluster:
        proc = subprocess.run([sys.executable, "-m", "harness", "run", "--all", "--scratch", str(tmp / "out"),
                               "--limit", "40", "--n-jobs", "2", "--dask-scheduler", cluster.scheduler_address],
                              env=env, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 1, proc.stderr
    t = {n: json.loads((log / f"{n}.json").read_text()) for n in ("a_slow", "b_after_a", "c_free", "f_after_broken")}
    assert {v["ppid"] for v in t.values()} == {os.getpid()}  # started by a Dask worker, not by `harness run`
    assert t["b_after_a"]["start"] >= t["a_slow"]["end"]
    assert t["c_free"]["start"] < t["a_slow"]["end"]  # the cluster's two workers: two models at once
    assert "e_after_broken: not run: it needs d_broken, which failed" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "2 model(s) failed: d_broken, e_after_broken"
    assert (tmp / "out" / "submissions" / "b_after_a").is_dir()


def test_after_orders_without_propagating_failure_and_cycles_through_it_are_refused():
    with pytest.raises(HarnessError, match="cycle"):
        order(["a", "b"], {"a": ["b"]}, {"b": ["a"]})
    order(["a", "b"], {}, {"a": ["not_in_this_run"]})  # after: on a model not in the run is ignored
