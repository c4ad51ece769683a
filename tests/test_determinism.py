"""Two consecutive runs write byte-identical submissions, results and leaderboard.csv.
Dates and timings stay out of the compared files: metadata.json keeps its date and time
while the predictions are unchanged; measured times live in results/<name>/timings.json.
(Across processes, test_interrupt.py compares a resumed run with a clean one.)"""

from __future__ import annotations

import json
import time

import pytest

from harness import cli
from harness.task import Task
from helpers_slice import PER_ATOM_COUNT, SUBMISSION, copy_repo_model, redirect_outputs, tree_bytes, write_model

ARGS = ["run", "--all", "--limit", "80", "--profile", "cpu", "--n-jobs", "2"]


@pytest.fixture()
def scratch(task, tmp_path, monkeypatch):
    monkeypatch.setattr(Task, "load", classmethod(lambda cls, *a, **k: task))
    monkeypatch.setenv("KSPACING_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KSPACING_REFERENCE_DIR", str(tmp_path / "no-references"))
    redirect_outputs(monkeypatch, tmp_path / "out")
    models = tmp_path / "models"
    copy_repo_model(models, "train_median")
    write_model(models, "t_per_atom", PER_ATOM_COUNT)
    return tmp_path / "out", models


def run(models, capsys) -> None:
    rc = cli.main([*ARGS, "--models-dir", str(models)])
    cap = capsys.readouterr()
    assert rc == 0, cap.out + cap.err


def compared(out):
    return tree_bytes(out, skip=lambda rel: rel.endswith("timings.json"))


def test_two_runs_are_byte_identical(scratch, capsys):
    out, models = scratch
    copy_repo_model(models, "rf_composition")  # a real, randomised (seeded) model
    run(models, capsys)
    first = compared(out)
    assert {f"submissions/{m}/{n}" for m in ("train_median", "rf_composition", "t_per_atom")
            for n in (SUBMISSION, "metadata.json", "run.sh")} <= set(first)
    assert "leaderboard.csv" in first and "README.md" in first
    assert all((out / "results" / m / "timings.json").is_file() for m in ("train_median", "rf_composition", "t_per_atom"))
    time.sleep(1.1)  # a later second: any timestamp in a compared file would show
    run(models, capsys)
    second = compared(out)
    assert sorted(first) == sorted(second)
    assert [k for k in first if first[k] != second[k]] == []
    assert cli.main(["leaderboard", "--check"]) == 0


def test_date_and_time_are_kept_only_while_predictions_are_unchanged(scratch, capsys):
    out, models = scratch
    run(models, capsys)
    meta_path = out / "submissions" / "t_per_atom" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    assert meta["date_submitted"] == time.strftime("%m-%d-%Y")
    meta.update(date_submitted="01-02-2000", time_taken_seconds={SUBMISSION: 123.0})
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    run(models, capsys)
    kept = json.loads(meta_path.read_text())
    assert kept["date_submitted"] == "01-02-2000" and kept["time_taken_seconds"] == {SUBMISSION: 123.0}
    # New predictions are a new submission: date and time are measured again.
    code = models / "t_per_atom" / "model.py"
    code.write_text(code.read_text().replace("self.default_ = float(np.mean(y))", "self.default_ = float(np.mean(y)) + 1.0")
                    .replace("return np.array([self.table_", "return 0.5 + np.array([self.table_"))
    before = (out / "submissions" / "t_per_atom" / SUBMISSION).read_bytes()
    run(models, capsys)
    assert (out / "submissions" / "t_per_atom" / SUBMISSION).read_bytes() != before
    fresh = json.loads(meta_path.read_text())
    assert fresh["date_submitted"] == time.strftime("%m-%d-%Y") and fresh["time_taken_seconds"] != {SUBMISSION: 123.0}
