"""kill -9 in the middle of a run, then rerun: no partial or corrupt file anywhere, the
model resumes from its checkpoint in the cache, and the result equals a clean run's.

Real entry point (`python -m harness run --all --limit N` in a subprocess, its output
root given by $KSPACING_OUTPUT_DIR) on a small real slice, with models, outputs and
caches in scratch folders. Each model trains in a child process of the run: the kill
hits the whole process group, as a job scheduler or a closed terminal does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import pytest

from harness import benchmark as bm
from harness import record, registry, submission
from helpers_slice import REPO_ROOT, SUBMISSION, copy_repo_model, run_cli, scratch_env, tree_bytes, write_model

LIMIT = "60"
EPOCHS = 6

# Trains in epochs, checkpointing each to its private cache dir (ctx.cache_dir) and
# resuming from the checkpoint: what a long-running model is expected to do.
SLOW = f'''
import json
import time
from pathlib import Path

import numpy as np

from harness import atomic

EPOCHS = {EPOCHS}


class Slow:
    def __init__(self, cache_dir):
        self.cache_dir = Path(cache_dir)

    def fit(self, X, y):
        ckpt = self.cache_dir / "checkpoint.json"
        state = json.loads(ckpt.read_text()) if ckpt.is_file() else {{"epoch": 0, "sum": 0.0}}
        if state["epoch"]:
            print(f"resumed from checkpoint at epoch {{state['epoch']}}", flush=True)
        for epoch in range(state["epoch"] + 1, EPOCHS + 1):
            time.sleep(0.5)
            state = {{"epoch": epoch, "sum": state["sum"] + float(np.mean(y))}}
            atomic.write_text(ckpt, json.dumps(state))
        self.mean_ = state["sum"] / EPOCHS
        n = X["atoms"].map(lambda a: a.num_atoms).to_numpy()
        self.slope_ = float(np.polyfit(n, y, 1)[0])
        return self

    def predict(self, X):
        n = X["atoms"].map(lambda a: a.num_atoms).to_numpy()
        return self.mean_ + self.slope_ * (n - 4)


def make_model(ctx):
    return Slow(ctx.cache_dir)
'''


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    copy_repo_model(d, "train_median")  # run_order 90: starts, and finishes, before the kill
    write_model(d, "t_slow", SLOW, run_order=100)
    return d


def checkpoint(root: Path) -> int:
    # A scratch run keeps its model caches under cache/scratch/<output root + definition tag>/.
    for f in (root / "cache" / "scratch").glob("*/models/t_slow/checkpoint.json"):
        try:
            return json.loads(f.read_text())["epoch"]
        except (OSError, ValueError, KeyError):
            return 0
    return 0


def assert_nothing_partial(root: Path, models_dir: Path) -> list[str]:
    """Every file under out/ and cache/ is complete and readable; returns their names."""
    seen = []
    for top in (root / "out", root / "cache"):
        for p in sorted(top.rglob("*")):
            if "parsed" in p.relative_to(top).parts or not p.is_file():
                continue
            rel = str(p.relative_to(root))
            seen.append(rel)
            assert not p.name.endswith(".tmp"), f"partial file left: {rel}"
            if p.name.endswith(".csv.zip"):
                submission.read_csv_zip(p)
            elif p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".png":
                b = p.read_bytes()
                assert b.startswith(b"\x89PNG\r\n\x1a\n") and b[-12:-4] == b"\x00\x00\x00\x00IEND", rel
            elif p.suffix == ".joblib":
                registry.read_folder(models_dir / p.parent.name).load_module()  # class for unpickling
                assert hasattr(joblib.load(p), "predict"), rel
            elif p.name == "run.sh":
                assert p.read_text().endswith("\n"), rel
            elif p.name == bm.SPEC_FILE:
                bm.load(p.parent.name, p.parent.parent)  # every hash checked
    return seen


def comparable(root: Path) -> dict[str, bytes]:
    """Outputs that must not depend on the run: all but measured seconds (metadata.json,
    run.json) and the artifact's hash (the pickled model holds its own cache path)."""
    files = tree_bytes(root / "out")
    for rel in [r for r in files if r.endswith("metadata.json")]:
        meta = json.loads(files[rel])
        meta.pop("time_taken_seconds")
        files[rel] = json.dumps(meta, sort_keys=True).encode()
    for rel in [r for r in files if r.endswith(record.RECORD_FILE)]:
        rec = json.loads(files[rel])
        rec.pop("fit_seconds")
        rec.pop("total_seconds")
        rec["sha256"].pop("artifact")
        files[rel] = json.dumps(rec, sort_keys=True).encode()
    return files


def test_kill_9_then_rerun_resumes_and_matches_a_clean_run(task, data_dir, cache_root, models_dir, tmp_path):
    killed = tmp_path / "killed"
    env = scratch_env(killed, data_dir, cache_root, models_dir)
    args = ["run", "--all", "--limit", LIMIT, "--n-jobs", "1", "--parallel", "1"]  # child output on stdout
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO_ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while checkpoint(killed) < 2:
            assert proc.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "the slow model never reached epoch 2"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its model process
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    at_kill = checkpoint(killed)
    assert 2 <= at_kill < EPOCHS

    # Right after the kill: the first model is complete, the second wrote nothing but its checkpoint.
    files = assert_nothing_partial(killed, models_dir)
    assert f"out/submissions/train_median/{SUBMISSION}" in files
    assert f"out/results/train_median/{bm.SCRATCH}/{record.RECORD_FILE}" in files
    assert not (killed / "out" / "submissions" / "t_slow").exists()
    assert not (killed / "out" / "results" / "t_slow").exists()
    assert not (killed / "out" / "leaderboard.csv").exists()
    # A write interrupted by the kill leaves at most a hidden temp file beside its target
    # (harness/atomic.py); plant one to check that the rerun clears it.
    stale = killed / "out" / "submissions" / "train_median" / ".metadata.json.k1ll3d.tmp"
    stale.write_text('{"model_na')

    rerun = run_cli(args, env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"resumed from checkpoint at epoch {at_kill}" in rerun.stdout
    assert not stale.exists()
    files = assert_nothing_partial(killed, models_dir)
    assert f"out/submissions/t_slow/{SUBMISSION}" in files and "out/leaderboard.csv" in files

    # Same outputs as an uninterrupted run in fresh folders (its own cache, no checkpoint).
    clean = tmp_path / "clean"
    once = run_cli(args, scratch_env(clean, data_dir, cache_root, models_dir))
    assert once.returncode == 0, once.stdout + once.stderr
    assert "resumed" not in once.stdout
    a, b = comparable(killed), comparable(clean)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []
