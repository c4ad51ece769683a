"""Safe k-length L90: the conformal offset, the grid flooring, jarvis-identical meshes
from results/lattice.json, and the leaderboard's L90 columns and plot."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jarvis.core.kpoints import Kpoints3D

from harness import conformal, kpoints, leaderboard, paths, submission
from harness.errors import HarnessError
from harness.runner import write_coverage

# ------------------------------------------------------------------ calibration


def test_offset_is_the_finite_sample_order_statistic():
    rng = np.random.default_rng(0)
    for n in (9, 10, 19, 100, 1767):
        s = rng.normal(size=n)
        k = math.ceil((n + 1) * 0.9)
        assert conformal.conformal_offset(s, np.zeros(n)) == np.sort(s)[k - 1]


def test_ties_on_the_grid_give_the_right_step():
    # The val set of train_median: 1,592 of 1,767 true lengths <= 50, the prediction 25.
    # k = ceil(1768 * 0.9) = 1592 -> offset 25 exactly (np.quantile(k/n, "higher") gives 30).
    y = np.array([20.0] * 1000 + [50.0] * 592 + [55.0] * 175)
    yhat = np.full(len(y), 25.0)
    assert conformal.conformal_offset(y, yhat) == 25.0
    assert np.quantile(y - yhat, 1592 / 1767, method="higher") == 30.0  # why we index the order statistic


def test_too_few_calibration_points_is_an_error():
    with pytest.raises(HarnessError, match="cannot give a 90% bound"):
        conformal.conformal_offset(np.ones(8), np.zeros(8))
    assert conformal.conformal_offset(np.arange(9.0), np.zeros(9)) == 8.0


def test_marginal_coverage_holds_on_exchangeable_data():
    rng = np.random.default_rng(1)
    cov = []
    for _ in range(2000):
        y = 5 * np.round(rng.gamma(4, 8, size=60) / 5)  # on the grid, with ties
        yhat = y + rng.normal(0, 6, size=60)
        q = conformal.conformal_offset(y[:50], yhat[:50])
        cov.append(np.mean(y[50:] <= conformal.upper_bound(yhat[50:], q)))
    assert 0.895 <= np.mean(cov) <= 0.96  # >= 1 - alpha (up to MC noise); ties push it up


@given(st.floats(min_value=0.0, max_value=400.0, allow_nan=False) | st.sampled_from([5 * i + d for i in range(1, 40) for d in (0.0, -1e-13, 1e-13)]),
       st.integers(min_value=1, max_value=60))
@settings(max_examples=500, deadline=None)
def test_flooring_to_the_grid_never_changes_which_grid_lengths_are_covered(L, k):
    f = float(conformal.floor_to_grid(L))
    y = 5.0 * k
    assert f % 5 == 0 and f >= 5
    if L >= 5:
        assert (y <= L) == (y <= f)
        assert L - 5 < f <= L
    else:  # never below one grid step (a safe bound is never 0)
        assert f == 5.0


def test_fixed_length_is_an_actual_train_length():
    y = np.array([10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60.0])
    assert conformal.fixed_length(y) == 55.0
    assert conformal.fixed_length(np.r_[np.full(90, 20.0), np.full(10, 50.0)]) == 20.0


# ------------------------------------------------------------------ meshes


def _slice(task, n):
    covered = {s: ids[:n] for s, ids in task.coverage.covered.items()}
    return dataclasses.replace(task, coverage=dataclasses.replace(task.coverage, covered=covered))


def test_meshes_from_lattice_json_equal_jarvis_automatic_length_mesh(task, tmp_path):
    small = _slice(task, 250)
    kpoints.write_lattice(small, tmp_path)
    lat = kpoints.read_lattice(tmp_path)
    assert lat["train_ids"] == small.ids("train")
    rng = np.random.default_rng(0)
    lengths = [5.0, 10.0, 25.0, 50.0, 85.0, 150.0, *rng.uniform(3, 160, size=6)]
    checked = 0
    for split in ("val", "test"):
        assert list(lat[split]) == small.ids(split)
        for jid in small.ids(split):
            lm = small.materials.at[jid, "atoms"].lattice_mat
            for L in lengths:
                want = Kpoints3D().automatic_length_mesh(lattice_mat=lm, length=L).kpts[0]
                assert kpoints.mesh(lat[split][jid], L).tolist() == [int(n) for n in want], (jid, L)
                checked += 1
    # vectorised form (the leaderboard's): all materials at once, per-material lengths
    b = np.array(list(lat["test"].values()))
    L = rng.uniform(5, 100, size=len(b))
    want = [np.prod(Kpoints3D().automatic_length_mesh(lattice_mat=small.materials.at[j, "atoms"].lattice_mat,
                                                       length=float(x)).kpts[0]) for j, x in zip(lat["test"], L)]
    assert kpoints.kpoint_count(b, L).tolist() == want
    assert checked == 500 * len(lengths)
    # rewriting the same content leaves the file untouched (byte-stable results/)
    before = (tmp_path / kpoints.LATTICE_FILE).stat().st_mtime_ns
    kpoints.write_lattice(small, tmp_path)
    assert (tmp_path / kpoints.LATTICE_FILE).stat().st_mtime_ns == before


# ------------------------------------------------------------------ leaderboard


@pytest.fixture(scope="module")
def board(task, tmp_path_factory):
    """A scratch results/ + submissions/ with a constant train-median model and a
    noisy-oracle model, on the full covered ids (real truth, real lattices)."""
    from harness.benchmark import load_spec

    spec = load_spec()
    root = tmp_path_factory.mktemp("board")
    results, subs = root / "results", root / "submissions"
    write_coverage(task, results)
    med = float(np.median(task.y("train")))
    rng = np.random.default_rng(0)
    preds = {"const_median": {s: np.full(len(task.ids(s)), med) for s in ("val", "test")},
             "noisy_oracle": {s: task.y(s) + rng.normal(0, 4, len(task.ids(s))) for s in ("val", "test")}}
    for name, p in preds.items():
        submission.write_csv_zip(subs / name / spec.submission_filename, task.ids("test"), task.y("test"), p["test"])
        # The file's own target column is a lie: L90 must use the split's truth.
        submission.write_csv_zip(results / name / "val_predictions.csv.zip", task.ids("val"),
                                 np.zeros(len(task.ids("val"))), p["val"])
    readme = root / "README.md"
    readme.write_text(f"# x\n\n{leaderboard.README_START}\n{leaderboard.README_END}\n")
    dirs = dict(leaderboard_csv=root / "leaderboard.csv", readme=readme, submissions_dir=subs, results_dir=results)
    return spec, task, root, dirs, preds


def test_leaderboard_l90_columns_are_recomputed_from_truth(board):
    from harness.benchmark import load_split

    spec, task, root, dirs, preds = board
    split = load_split(spec)
    current, rows, notes = leaderboard.rebuild(spec, split, paths.default_reference_dir(), **dirs)
    assert not [n for n in notes if "L90" in n]
    by = {r.model: r for r in rows}
    fixed = conformal.fixed_length(task.y("train"))
    lat = kpoints.read_lattice(dirs["results_dir"])
    recip = np.array([lat["test"][i] for i in task.ids("test")])
    for name, p in preds.items():
        s = by[name].safety
        q = conformal.conformal_offset(task.y("val"), p["val"])
        L = conformal.upper_bound(p["test"], q)
        assert s.offset == pytest.approx(q)
        assert s.coverage == pytest.approx(np.mean(task.y("test") <= L))
        assert s.kpoints_mean == pytest.approx(kpoints.kpoint_count(recip, L).mean())
        assert s.kpoints_fixed == pytest.approx(kpoints.kpoint_count(recip, fixed).mean())
        assert 0.86 <= s.coverage <= 0.95
    # a constant model's L90 is a fixed length calibrated on val: here the train P90
    if fixed == 50.0 and len(task.ids("test")) == 1708:
        assert by["const_median"].safety.kpoints_mean == pytest.approx(by["const_median"].safety.kpoints_fixed)
    assert by["noisy_oracle"].safety.saved_pct > 20
    for r in rows:
        if r.kind == "reference":
            assert r.safety is None
    text = dirs["leaderboard_csv"].read_text()
    header = text.splitlines()[0].split(",")
    assert header[-4:] == leaderboard.SAFETY_COLUMNS
    assert any(line.endswith(",,,,") for line in text.splitlines()) or not paths.default_reference_dir().is_dir()
    md = dirs["readme"].read_text()
    assert "| L90 cov | k-pts | saved |" in md and f"fixed length {fixed:g} Å (train P90)" in md


def test_leaderboard_with_l90_is_byte_reproducible(board):
    from harness.benchmark import load_split

    spec, task, root, dirs, _ = board
    split = load_split(spec)
    ref = paths.default_reference_dir()
    leaderboard.rebuild(spec, split, ref, **dirs)
    plot = dirs["results_dir"] / leaderboard.TRADEOFF_PLOT
    first = [dirs["leaderboard_csv"].read_bytes(), dirs["readme"].read_bytes(), plot.read_bytes()]
    plot.unlink()
    current, _, _ = leaderboard.rebuild(spec, split, ref, **dirs)
    assert current
    assert [dirs["leaderboard_csv"].read_bytes(), dirs["readme"].read_bytes(), plot.read_bytes()] == first
    assert first[2][:8] == b"\x89PNG\r\n\x1a\n"
    current, _, _ = leaderboard.rebuild(spec, split, ref, check=True, **dirs)
    assert current


def test_without_lattice_json_the_l90_columns_are_empty_with_a_note(board, tmp_path):
    import shutil

    from harness.benchmark import load_split

    spec, task, root, dirs, _ = board
    results = tmp_path / "results"
    shutil.copytree(dirs["results_dir"], results)
    (results / kpoints.LATTICE_FILE).unlink()
    rows, notes = leaderboard.build_rows(spec, load_split(spec), submissions_dir=dirs["submissions_dir"],
                                         reference_dir=None, results_dir=results)
    assert all(r.safety is None for r in rows)
    assert any("lattice.json missing" in n for n in notes)
