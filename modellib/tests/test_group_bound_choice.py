"""modellib.studies.group_bound_choice: the rule sees val only and picks the fewest
k-points among admissible points; the committed study is current (its inputs are
kspace_gbm's committed predictions, its choice is harness.group_bound's constants, its
val row and its test figures recompute exactly)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness import group_bound as gb
from harness import paths, record
from modellib.studies import group_bound_choice as gbc

STUDY = paths.REPO_ROOT / "results" / "lco" / "group_bound.json"


def _row(cov, worst, k):
    return {"point": {}, "val": {"coverage": cov, "worst_coverage": worst, "kpoints": k}}


def test_rule_takes_the_cheapest_admissible_point_else_the_best_worst_group():
    rows = [_row(0.90, 0.895, 1100), _row(0.90, 0.885, 900), _row(0.92, 0.93, 800), _row(0.905, 0.90, 1050)]
    assert gbc.choose(rows) == 3  # 1 misses a group, 2 over-covers overall
    assert gbc.choose([_row(0.88, 0.85, 700), _row(0.95, 0.87, 900)]) == 1


@pytest.fixture(scope="module")
def study():
    if not STUDY.is_file():
        pytest.fail(f"{STUDY}: missing (run `python -m modellib.studies.group_bound_choice`)")
    return json.loads(STUDY.read_text())


@pytest.fixture(scope="module")
def data():
    return gbc.inputs()


def test_committed_study_is_current(study, data):
    rec = record.read(paths.REPO_ROOT / "results" / gbc.MODEL / study["benchmark"] / record.RECORD_FILE)
    assert study["inputs_sha256"] == {k: rec["sha256"][k] for k in ("val_continuous", "test_continuous")}
    assert study["chosen"] == {**gb.HYPER, "slack": gb.GROUP_SLACK}, "harness.group_bound's constants are not the study's choice"
    assert study["grid"] == {k: list(v) for k, v in gbc.GRID.items()}
    chosen = [r for r in study["rows"] if r["point"] == study["chosen"]]
    assert len(chosen) == 1 and gbc.admissible(chosen[0]["val"])
    # The chosen val row recomputes (same halvings), and the test figures come from the core's own fit/bound.
    again = gbc.halvings(data["val"], study["chosen"], study["n_rep"])
    assert again["kpoints"] == pytest.approx(chosen[0]["val"]["kpoints"], rel=1e-12)
    assert again["worst_coverage"] == pytest.approx(chosen[0]["val"]["worst_coverage"], abs=1e-12)
    v, t = data["val"], data["test"]
    L = gb.bound(t["yhat"], t["recip"], t["lab"],
                 gb.fit(v["y"], v["yhat"], v["recip"], v["lab"], alpha=gbc.ALPHA, point_cal=v["point"]), point=t["point"])
    got = gbc.measure(t["y"], L, t["count_recip"], t["lab"])
    for key in ("coverage", "worst_coverage", "kpoints"):
        assert got[key] == pytest.approx(study["test"][key], rel=1e-12), key
    # The hindsight floor recomputes too, and is below the val-calibrated bound's test cost.
    best = study["hindsight"]["best"]
    hp = {k: best["point"][k] for k in gb.HYPER}
    [again] = gbc._hindsight_one(t, hp, [best["point"]["level"]])
    assert again["kpoints"] == pytest.approx(best["kpoints"], rel=1e-12)
    assert best["kpoints"] < study["test"]["kpoints"]


def test_committed_plot_is_the_committed_study_drawn(study, tmp_path):
    """results/lco/group_bound.png is drawn from group_bound.json: its Source chunk is the
    digest of the data drawn (pixels may differ by a bit between processes), and a redraw in
    one process gives identical bytes (written once)."""
    from PIL import Image

    assert Image.open(STUDY.with_suffix(".png")).text["Source"] == gbc.plot_source(study)
    assert gbc.plot(study, tmp_path / "a.png") and gbc.plot(study, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert not gbc.plot(study, tmp_path / "a.png")  # unchanged: not rewritten
    changed = json.loads(json.dumps(study))
    changed["test"]["coverage"] += 0.01
    assert gbc.plot_source(changed) != gbc.plot_source(study)


def test_hindsight_floor_meets_the_targets_and_nothing_cheaper_does(data, monkeypatch):
    monkeypatch.setattr(gbc, "GRID", {"scale": (2.0, 4.0), "power": (0.2,), "metal_scale": (3.0,), "slack": (0.01,)})
    t = data["test"]
    taus = (0.875, 0.885, 0.895, 0.905)
    h = gbc.hindsight(t, n_jobs=1, taus=taus)
    assert h["n_points"] == 2 * len(taus)
    rows = [r for hp in ({"scale": 2.0, "power": 0.2, "metal_scale": 3.0}, {"scale": 4.0, "power": 0.2, "metal_scale": 3.0})
            for r in gbc._hindsight_one(t, hp, taus)]
    meets = [0.89 <= r["coverage"] <= 0.91 and r["worst_coverage"] >= 0.88 for r in rows]
    assert h["n_meeting"] == sum(meets) > 0
    b = h["best"]
    assert 0.89 <= b["coverage"] <= 0.91 and b["worst_coverage"] >= 0.88
    assert all(r["kpoints"] >= b["kpoints"] for r, ok in zip(rows, meets) if ok)


def test_bootstrap_brackets_the_point_estimate(data):
    v, t = data["val"], data["test"]
    L = gb.bound(t["yhat"], t["recip"], t["lab"],
                 gb.fit(v["y"], v["yhat"], v["recip"], v["lab"], alpha=gbc.ALPHA, point_cal=v["point"]), point=t["point"])
    m = gbc.measure(t["y"], L, t["count_recip"], t["lab"])
    b = gbc.bootstrap(t["y"], L, t["count_recip"], t["lab"], n_boot=200)
    assert b["coverage"][0] < m["coverage"] < b["coverage"][1]
    assert b["kpoints"][0] < m["kpoints"] < b["kpoints"][1]
    assert 0.0 <= b["every_group_at_floor"] <= 1.0
    # A bound that covers everything meets the floor in every resample.
    top = np.full(len(L), gb.LENGTHS[-1])
    assert gbc.bootstrap(t["y"], top, t["recip"], t["lab"], n_boot=20)["every_group_at_floor"] == 1.0


def test_study_files_are_the_same_with_any_n_jobs(tmp_path, monkeypatch):
    monkeypatch.setattr(gbc, "GRID", {"scale": (3.0, 4.0), "power": (0.2,), "metal_scale": (1.5,), "slack": (0.01,)})
    for n_jobs in (1, 2):
        assert gbc.main(["--n-rep", "2", "--n-jobs", str(n_jobs), "--out", str(tmp_path / str(n_jobs))]) == 0
    assert (tmp_path / "1" / "group_bound.png").read_bytes() == (tmp_path / "2" / "group_bound.png").read_bytes()
    for name in ("group_bound.md", "group_bound.json"):
        one, two = ((tmp_path / d / name).read_text() for d in ("1", "2"))
        assert one == two.replace(f"--n-jobs 2 --out {tmp_path / '2'}", f"--n-jobs 1 --out {tmp_path / '1'}"), name
    res = json.loads((tmp_path / "1" / "group_bound.json").read_text())
    assert len(res["rows"]) == 2 and res["chosen"] in [r["point"] for r in res["rows"]]
