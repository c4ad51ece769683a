"""A warm run reuses a saved fit only while nothing it depended on changed: the second
identical run does not call fit; an edit of the model folder, --retrain or a replaced
submission file refit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from harness import paths

REPO = paths.REPO_ROOT

MODEL = """
import json, os, time
import numpy as np

class M:
    def fit(self, X, y):
        with open(os.environ["WARM_LOG"], "a") as f:
            f.write("fit\\n")
        self.m = float(np.median(y)){extra}
        return self

    def predict(self, X):
        return np.full(len(X), self.m)

def make_model(ctx):
    return M()
"""


def test_warm_run_reuses_only_what_did_not_change(tmp_path, data_dir, cache_root):
    models = tmp_path / "models"
    d = models / "w_model"
    shutil.copytree(REPO / "models" / "train_median", d)
    (d / "model.yaml").write_text((d / "model.yaml").read_text().replace("name: train_median", "name: w_model"))
    (d / "model.py").write_text(MODEL.format(extra=""))
    log = tmp_path / "fits.log"
    env = {**os.environ, paths.MODELS_DIR_ENV: str(models), "WARM_LOG": str(log), paths.CACHE_DIR_ENV: str(cache_root),
           "PYTHONPATH": str(REPO)}
    out = tmp_path / "out"

    def run(*extra):
        proc = subprocess.run([sys.executable, "-m", "harness", "run", "w_model", "--scratch", str(out), "--limit", "30",
                               "--n-jobs", "1", *extra], env=env, capture_output=True, text=True, cwd=REPO, timeout=600)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout, log.read_text().count("fit")

    sub = out / "submissions" / "w_model"
    first, n1 = run()
    files = {p.name: p.read_bytes() for p in sub.glob("*")}
    second, n2 = run()
    assert (n1, n2) == (1, 1) and "inputs unchanged: saved fit reused" in second
    assert {p.name: p.read_bytes() for p in sub.glob("*")} == files  # and the files are the same
    mae = json.loads(json.dumps(first.split("w_model: test MAE ")[1].split(",")[0]))
    assert f"w_model: test MAE {mae}" in second  # recomputed from the file: the same score

    _, n3 = run("--retrain")
    assert n3 == 2
    (d / "model.py").write_text(MODEL.format(extra="  # an edit"))  # code change: refit
    third, n4 = run()
    assert n4 == 3 and "saved fit reused" not in third
    _, n5 = run()
    assert n5 == 3
    victim = next(sub.glob("*.csv.zip"))
    victim.write_bytes(victim.read_bytes() + b"x")  # a damaged committed file: refit and rewrite it
    fourth, n6 = run()
    assert n6 == 4 and "saved fit reused" not in fourth and victim.read_bytes() == files[victim.name]
