"""Two consecutive runs write byte-identical benchmarks, submissions, results and
leaderboard.csv. Dates and timings stay out of the changing files: metadata.json keeps
its date and time, and results/<name>/<benchmark>/run.json (seed, n_jobs, fit seconds,
versions) is left as it is, while the predictions are unchanged.
(Across processes, test_interrupt.py compares a resumed run with a clean one.)"""

from __future__ import annotations

import json
import time

import pytest

from harness import benchmark as bm
from harness import cli, record
from helpers_slice import (PER_ATOM_COUNT, SUBMISSION, copy_repo_model, redirect_outputs, scratch_cache, tree_bytes,
                           write_model)


@pytest.fixture()
def scratch(task, cache_root, tmp_path, monkeypatch):
    out, models = tmp_path / "out", tmp_path / "models"
    monkeypatch.setenv("KSPACING_CACHE_DIR", str(scratch_cache(tmp_path, cache_root)))
    monkeypatch.setenv("KSPACING_REFERENCE_DIR", str(tmp_path / "no-references"))
    monkeypatch.setenv("KSPACING_MODELS_DIR", str(models))
    redirect_outputs(monkeypatch, out)
    copy_repo_model(models, "train_median")
    write_model(models, "t_per_atom", PER_ATOM_COUNT)
    return out, models


def run(out, models, capsys, *extra) -> None:
    rc = cli.main(["run", "--all", "--scratch", str(out), "--limit", "80", "--n-jobs", "2", "--parallel", "1",
                   "--models-dir", str(models), *extra])
    cap = capsys.readouterr()
    assert rc == 0, cap.out + cap.err


def run_record(out, name):
    return record.results_folder(out / "results", name, bm.SCRATCH) / record.RECORD_FILE


def test_two_runs_are_byte_identical(scratch, capsys):
    out, models = scratch
    copy_repo_model(models, "rf_composition")  # a real, randomised (seeded) model
    names = ("train_median", "rf_composition", "t_per_atom")
    run(out, models, capsys)
    first = tree_bytes(out)
    assert {f"submissions/{m}/{n}" for m in names for n in (SUBMISSION, "metadata.json", "run.sh")} <= set(first)
    assert {f"results/{m}/{bm.SCRATCH}/{f}" for m in names
            for f in (record.VAL_FILE, record.PARITY_FILE, record.RECORD_FILE)} <= set(first)
    assert "leaderboard.csv" in first and "README.md" in first and f"benchmarks/{bm.SCRATCH}/benchmark.yaml" in first
    stats = {}
    for m in names:
        rec = json.loads(run_record(out, m).read_text())
        assert rec["n_jobs"] == 2 and "fit_seconds" in rec and rec["seed"] == 0
        # predict's path checked after every fit: formula-only models give the benchmark's answer
        assert rec["predict_path"]["checked"] > 0
        if m != "t_per_atom":
            assert rec["predict_path"]["moved"] == 0, rec["predict_path"]
        st = run_record(out, m).stat()
        stats[m] = (st.st_ino, st.st_mtime_ns)
    time.sleep(1.1)  # a later second: any timestamp in a compared file would show
    run(out, models, capsys)
    second = tree_bytes(out)
    assert sorted(first) == sorted(second)
    assert [k for k in first if first[k] != second[k]] == []
    # Same predictions: the run records were not even rewritten (they describe the first run).
    assert {m: (run_record(out, m).stat().st_ino, run_record(out, m).stat().st_mtime_ns) for m in names} == stats
    assert cli.main(["leaderboard", "--check"]) == 0


def test_date_time_and_record_are_kept_only_while_predictions_are_unchanged(scratch, capsys):
    out, models = scratch
    run(out, models, capsys)
    meta_path = out / "submissions" / "t_per_atom" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    assert meta["date_submitted"] == time.strftime("%m-%d-%Y")
    meta.update(date_submitted="01-02-2000", time_taken_seconds={SUBMISSION: 123.0})
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    rec_path = run_record(out, "t_per_atom")
    rec = json.loads(rec_path.read_text())
    rec["fit_seconds"] = 9999.0  # what the first run measured, as far as the rerun can tell
    rec_path.write_text(record.dumps(rec))
    run(out, models, capsys)
    kept = json.loads(meta_path.read_text())
    assert kept["date_submitted"] == "01-02-2000" and kept["time_taken_seconds"] == {SUBMISSION: 123.0}
    assert json.loads(rec_path.read_text())["fit_seconds"] == 9999.0
    # New predictions are a new submission: date, time and record are measured again.
    code = models / "t_per_atom" / "model.py"
    code.write_text(code.read_text().replace("self.default_ = float(np.mean(y))", "self.default_ = float(np.mean(y)) + 1.0")
                    .replace("return np.array([self.table_", "return 0.5 + np.array([self.table_"))
    before = (out / "submissions" / "t_per_atom" / SUBMISSION).read_bytes()
    run(out, models, capsys)
    after = out / "submissions" / "t_per_atom" / SUBMISSION
    assert after.read_bytes() != before
    fresh = json.loads(meta_path.read_text())
    assert fresh["date_submitted"] == time.strftime("%m-%d-%Y") and fresh["time_taken_seconds"] != {SUBMISSION: 123.0}
    new_rec = json.loads(rec_path.read_text())
    assert new_rec["fit_seconds"] != 9999.0 and new_rec["sha256"]["test_predictions"] == record.sha256_file(after)


def test_a_record_from_before_the_predict_path_check_gets_it_on_the_next_fit(scratch, capsys):
    """Same predictions keep the record, except one that lacks a check every run makes now:
    a refit fills in predict_path (and says what that run measured)."""
    out, models = scratch
    run(out, models, capsys)
    rec_path = run_record(out, "t_per_atom")
    rec = json.loads(rec_path.read_text())
    del rec["predict_path"]
    rec["fit_seconds"] = 9999.0
    rec_path.write_text(record.dumps(rec))
    run(out, models, capsys, "--retrain")
    new = json.loads(rec_path.read_text())
    assert new["predict_path"]["checked"] > 0 and new["fit_seconds"] != 9999.0
    assert new["sha256"]["test_predictions"] == rec["sha256"]["test_predictions"]  # the same predictions
