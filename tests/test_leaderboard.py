"""leaderboard.csv and the README tables: recomputed from files, current, honest."""

import json
import shutil

import pytest

from harness import benchmark as bm
from harness import leaderboard, paths
from harness.errors import HarnessError
from harness.metrics import regression_metrics
from harness.submission import read_csv_zip

ROOT = paths.REPO_ROOT


def _refs():
    ref = paths.default_reference_dir()
    if not ref.is_dir():
        pytest.skip("published contributions not available offline here")
    return ref


def _board(boards, name):
    return next(b for b in boards if b.benchmark.name == name)


@pytest.fixture()
def copy_out(tmp_path):
    """A scratch output root holding copies of the committed benchmarks/, submissions/, results/."""
    out = tmp_path / "out"
    for d in ("benchmarks", "submissions", "results"):
        shutil.copytree(ROOT / d, out / d)
    return out


def test_committed_leaderboard_and_readme_are_current():
    current, boards, _ = leaderboard.rebuild(ROOT, _refs(), paths.models_dir(), check=True)
    assert {b.benchmark.name for b in boards} == {bm.OFFICIAL, bm.SUBSET}
    assert current, "run `python -m harness leaderboard` and commit leaderboard.csv + README.md"


def test_a_trade_off_plot_missing_a_model_is_stale(copy_out, tmp_path):
    """The trade-off plot carries a digest of the predictions it draws: a model added to
    the board (its curve absent from the committed plot) makes `--check` fail, naming the
    plot, although leaderboard.csv and the README tables were rebuilt."""
    models = tmp_path / "models"
    for name in ("train_median", "rf_composition"):
        shutil.copytree(paths.models_dir() / name, models / name)
    shutil.copy(ROOT / "README.md", copy_out / "README.md")
    leaderboard.rebuild(copy_out, None, models)  # the plot of two models
    plot = copy_out / "results" / leaderboard.tradeoff_plot_name(bm.SUBSET)
    assert leaderboard.rebuild(copy_out, None, models, check=True)[0]
    shutil.copytree(paths.models_dir() / "kspace_gbm", models / "kspace_gbm")
    before = plot.read_bytes()
    leaderboard.rebuild(copy_out, None, models)  # csv/README gain kspace_gbm, and so does the plot
    assert plot.read_bytes() != before
    plot.write_bytes(before)  # a contributor who committed csv + README but not the plot
    current, _, notes = leaderboard.rebuild(copy_out, None, models, check=True)
    assert not current and any(n.startswith(f"results/{plot.name}: stale") for n in notes)


def test_rows_are_recomputed_and_ignore_self_reported_numbers(copy_out):
    subset = bm.load(bm.SUBSET, copy_out / "benchmarks")
    subs = copy_out / "submissions"
    name = next(p.name for p in sorted(subs.glob("*")) if (p / subset.submission_filename).is_file())
    meta_path = subs / name / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["mae"] = 0.001  # a self-reported score must not matter
    meta_path.write_text(json.dumps(meta))
    boards, _ = leaderboard.build(copy_out / "benchmarks", subs, copy_out / "results", None, paths.models_dir())
    row = next(r for r in _board(boards, bm.SUBSET).rows if r.model == name)
    sub = read_csv_zip(subs / name / subset.submission_filename)
    truth = [subset.targets["test"][i] for i in sub.ids]
    assert row.metrics == pytest.approx(regression_metrics(truth, sub.predictions))
    assert row.metrics["mae"] > 1.0


def test_a_file_that_differs_from_its_run_record_is_refused(copy_out):
    """Every submission is checked against the sha256 in its run record."""
    subset = bm.load(bm.SUBSET, copy_out / "benchmarks")
    f = copy_out / "submissions" / "train_median" / subset.submission_filename
    rows = read_csv_zip(f)
    from harness import submission

    submission.write_csv_zip(f, rows.ids, rows.targets, [p + 1.0 for p in rows.predictions])
    with pytest.raises(HarnessError, match=r"does not match sha256\.test_predictions in .*run\.json"):
        leaderboard.build(copy_out / "benchmarks", copy_out / "submissions", copy_out / "results", None,
                          paths.models_dir())


def test_a_submission_without_a_model_folder_is_skipped_with_a_note(copy_out, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(paths.models_dir() / "train_median", models / "train_median")
    boards, notes = leaderboard.build(copy_out / "benchmarks", copy_out / "submissions", copy_out / "results", None,
                                      models)
    assert {r.model for b in boards for r in b.rows} == {"train_median"}
    assert any("kspace_gbm" in n and "no model folder" in n and "not ranked" in n for n in notes)


def test_reference_rows_on_the_same_test_ids():
    boards, _ = leaderboard.build(ROOT / "benchmarks", paths.submissions_dir(), paths.results_dir(), _refs(),
                                  paths.models_dir())
    for board in boards:
        rows = board.rows
        refs = {r.model: r for r in rows if r.kind == "reference"}
        assert len(refs) == 12
        assert {r.n_test for r in rows} == {len(board.benchmark.ids["test"])}
        assert [r.metrics["mae"] for r in rows] == sorted(r.metrics["mae"] for r in rows)
        assert all(r.ci[0] <= r.metrics["mae"] <= r.ci[1] for r in rows)


def test_published_references_rescored_on_the_subset_test_ids():
    """The published best, re-scored on the 1,708 subset test ids (../shared/data/README.md)."""
    boards, _ = leaderboard.build(ROOT / "benchmarks", paths.submissions_dir(), paths.results_dir(), _refs(),
                                  paths.models_dir())
    sub = _board(boards, bm.SUBSET)
    refs = {r.model: r for r in sub.rows if r.kind == "reference"}
    assert len(sub.benchmark.ids["test"]) == 1708 and {r.n_test for r in refs.values()} == {1708}
    assert refs["matminer_xgboost (published)"].metrics["mae"] == pytest.approx(5.79, abs=0.01)
    assert refs["cfid_chem (published)"].metrics["mae"] == pytest.approx(8.07, abs=0.01)


def test_missing_reference_dir_is_a_note_not_a_failure(tmp_path):
    boards, notes = leaderboard.build(ROOT / "benchmarks", paths.submissions_dir(), paths.results_dir(),
                                      tmp_path / "absent", paths.models_dir())
    assert all(r.kind != "reference" for b in boards for r in b.rows)
    assert any("reference rows skipped" in n for n in notes)


def test_worst_group_is_the_lowest_covered_group_of_enough_materials():
    import numpy as np

    from harness.leaderboard import worst_group

    y = np.array([10.0] * 40 + [50.0] * 40 + [90.0] * 5)
    bound = np.array([20.0] * 40 + [45.0] * 20 + [60.0] * 20 + [50.0] * 5)  # group b: half covered; c: none (n=5)
    groups = {"metal": ["a"] * 40 + ["b"] * 40 + ["c"] * 5, "size": ["s"] * 85}
    assert worst_group(y, bound, groups) == ("metal=b", 0.5)  # c has too few materials to count
    assert worst_group(y, bound, groups, min_n=5) == ("metal=c", 0.0)


def test_committed_leaderboard_reports_a_worst_group_for_every_calibrated_row():
    import csv

    from harness import benchmark as bm
    from harness.paths import REPO_ROOT

    rows = [r for r in csv.DictReader(open(REPO_ROOT / "leaderboard.csv")) if r["benchmark"] == bm.SUBSET]
    ours = [r for r in rows if r["kind"] != "reference"]
    assert ours and all(r["l90_worst_group"] and float(r["l90_worst_group_coverage"]) <= float(r["l90_coverage"])
                        for r in ours)
