"""Safe k-length L90: the conformal offset, the grid flooring, jarvis-identical meshes
from the definition's lattice.csv, and the leaderboard's L90 columns and plot."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jarvis.core.kpoints import Kpoints3D

from harness import benchmark as bm
from harness import conformal, freeze, kpoints, leaderboard, paths, record, submission
from harness.errors import HarnessError

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


def test_meshes_from_lattice_csv_equal_jarvis_automatic_length_mesh(task):
    recip = task.benchmark.recip
    assert recip is not None and set(recip) == set(task.ids("val")) | set(task.ids("test"))
    rng = np.random.default_rng(0)
    lengths = [5.0, 10.0, 25.0, 50.0, 85.0, 150.0, *rng.uniform(3, 160, size=6)]
    checked = 0
    for split in ("val", "test"):
        for jid in task.ids(split)[:250]:
            lm = task.materials.at[jid, "atoms"].lattice_mat
            for L in lengths:
                want = Kpoints3D().automatic_length_mesh(lattice_mat=lm, length=L).kpts[0]
                assert kpoints.mesh(recip[jid], L).tolist() == [int(n) for n in want], (jid, L)
                checked += 1
    # vectorised form (the leaderboard's): all materials at once, per-material lengths
    ids = task.ids("test")[:250]
    b = np.array([recip[i] for i in ids])
    L = rng.uniform(5, 100, size=len(b))
    want = [np.prod(Kpoints3D().automatic_length_mesh(lattice_mat=task.materials.at[j, "atoms"].lattice_mat,
                                                       length=float(x)).kpts[0]) for j, x in zip(ids, L)]
    assert kpoints.kpoint_count(b, L).tolist() == want
    assert checked == 500 * len(lengths)


def test_lattice_csv_round_trips_and_rewriting_it_leaves_the_file_untouched(task, tmp_path):
    """The lattice is computed once (freeze) and read back bit-identically; writing the
    same definition again changes nothing (byte-stable benchmarks/)."""
    ids = {s: task.ids(s)[:40] for s in bm.SPLITS}
    recip = freeze.reciprocal_table(task.materials, ids["val"] + ids["test"])
    files = bm.definition_files("t_small", {**task.benchmark.spec, "frozen": False}, ids, task.benchmark.targets, recip)
    assert bm.write(tmp_path, "t_small", files) == "written"
    small = bm.load("t_small", tmp_path)
    assert {i: list(b) for i, b in small.recip.items()} == recip
    # the committed file holds the same numbers, to the CPU's rounding of jarvis' BLAS norm
    # (tests/test_benchmark_definitions.py checks that no mesh depends on it)
    assert all(np.allclose(task.benchmark.recip[i], recip[i], rtol=4 * np.finfo(float).eps, atol=0) for i in recip)
    lat = tmp_path / "t_small" / bm.LATTICE_FILE
    before = lat.stat().st_mtime_ns
    assert bm.write(tmp_path, "t_small", files) == "unchanged"
    assert lat.stat().st_mtime_ns == before


# ------------------------------------------------------------------ leaderboard


def _record(name: str, b: bm.Benchmark, test_file, val_file) -> dict:
    return {"record_version": record.RECORD_VERSION, "model": name,
            "benchmark": {"name": b.name, "key": b.key, "definition_sha256": b.definition_sha256},
            "counts": b.counts(), "calibration": {},
            "sha256": {"test_predictions": record.sha256_file(test_file),
                       "val_predictions": record.sha256_file(val_file), "artifact": None}}


@pytest.fixture(scope="module")
def board(task, tmp_path_factory):
    """A scratch output root (both definitions, submissions/, results/ with run records)
    with a constant train-median model and a noisy-oracle model on the offline subset
    (real truth, real lattices)."""
    b = task.benchmark
    root = tmp_path_factory.mktemp("board")
    for name in (bm.OFFICIAL, b.name):
        shutil.copytree(paths.REPO_ROOT / "benchmarks" / name, root / "benchmarks" / name)
    results, subs = root / "results", root / "submissions"
    med = float(np.median(task.y("train")))
    rng = np.random.default_rng(0)
    preds = {"const_median": {s: np.full(len(task.ids(s)), med) for s in ("val", "test")},
             "noisy_oracle": {s: np.clip(task.y(s) + rng.normal(0, 4, len(task.ids(s))), 1, None) for s in ("val", "test")}}
    for name, p in preds.items():
        test_file = subs / name / b.submission_filename
        val_file = record.results_folder(results, name, b.name) / record.VAL_FILE
        submission.write_csv_zip(test_file, task.ids("test"), task.y("test"), p["test"])
        # The file's own target column is a lie: L90 must use the definition's truth.
        submission.write_csv_zip(val_file, task.ids("val"), np.zeros(len(task.ids("val"))), p["val"])
        record.write(val_file.parent / record.RECORD_FILE, _record(name, b, test_file, val_file))
    (root / "README.md").write_text(f"# x\n\n{leaderboard.README_START}\n{leaderboard.README_END}\n")
    return task, root, preds


def _rows(boards, name=bm.SUBSET):
    return next(x for x in boards if x.benchmark.name == name).rows


def test_leaderboard_l90_columns_are_recomputed_from_truth(board):
    task, root, preds = board
    current, boards, notes = leaderboard.rebuild(root, paths.default_reference_dir(), None)
    assert not [n for n in notes if "L90" in n and bm.SUBSET in n]
    rows = _rows(boards)
    by = {r.model: r for r in rows}
    fixed = conformal.fixed_length(task.y("train"))
    recip = np.array([task.benchmark.recip[i] for i in task.ids("test")])
    for name, p in preds.items():
        s = by[name].safety
        q = conformal.conformal_offset(task.y("val"), p["val"])
        L = conformal.upper_bound(p["test"], q)
        assert s.offset == pytest.approx(q)
        assert s.coverage == pytest.approx(np.mean(task.y("test") <= L))
        assert s.kpoints_mean == pytest.approx(kpoints.kpoint_count(recip, L).mean())
        assert s.kpoints_fixed == pytest.approx(kpoints.kpoint_count(recip, fixed).mean())
        assert 0.86 <= s.coverage <= 0.95
    # a constant model's L90 is a fixed length calibrated on val: on this definition, the train P90
    assert fixed == 50.0
    assert by["const_median"].safety.kpoints_mean == pytest.approx(by["const_median"].safety.kpoints_fixed)
    assert by["noisy_oracle"].safety.saved_pct > 20
    for r in rows:
        if r.kind == "reference":
            assert r.safety is None
    text = (root / "leaderboard.csv").read_text()
    header = text.splitlines()[0].split(",")
    assert header[-len(leaderboard.SAFETY_COLUMNS):] == leaderboard.SAFETY_COLUMNS
    assert any(line.endswith(",,,,,,") for line in text.splitlines()) or not paths.default_reference_dir().is_dir()
    md = (root / "README.md").read_text()
    assert "| L90 cov | worst group | k-pts | saved |" in md and f"fixed length {fixed:g} Å (train P90)" in md


def test_leaderboard_with_l90_is_byte_reproducible(board):
    task, root, _ = board
    ref = paths.default_reference_dir()
    leaderboard.rebuild(root, ref, None)
    plot = root / "results" / leaderboard.tradeoff_plot_name(bm.SUBSET)
    files = [root / "leaderboard.csv", root / "README.md", plot]
    first = [f.read_bytes() for f in files]
    plot.unlink()
    current, _, _ = leaderboard.rebuild(root, ref, None)
    assert current
    assert [f.read_bytes() for f in files] == first
    assert first[2][:8] == b"\x89PNG\r\n\x1a\n"
    current, _, _ = leaderboard.rebuild(root, ref, None, check=True)
    assert current


def test_without_lattice_the_l90_columns_are_empty_with_a_note(board, tmp_path):
    """A definition frozen without lattice.csv (the official one, offline): same ids and
    definition hash, so the runs still count; only the L90 columns are empty."""
    task, root, _ = board
    b = task.benchmark
    defs = tmp_path / "benchmarks"
    files = bm.definition_files(b.name, b.spec, b.ids, b.targets, None)
    bm.write(defs, b.name, files)
    bare = bm.load(b.name, defs)
    assert bare.recip is None and bare.definition_sha256 == b.definition_sha256
    boards, notes = leaderboard.build(defs, root / "submissions", root / "results", None)
    rows = _rows(boards)
    assert {r.model for r in rows} == {"const_median", "noisy_oracle"}
    assert all(r.safety is None for r in rows)
    assert any(b.name in n and "L90 columns empty" in n for n in notes)
