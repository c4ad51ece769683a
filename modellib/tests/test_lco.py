"""modellib.studies.lco on a small slice of the real subset (300 ids per split, folds none +
alkali): held-out compounds never reach training or calibration, and every reported
number is recomputed here from the per-compound arrays."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from harness import conformal, domain
from modellib.studies import lco
from harness.kpoints import kpoint_count, reciprocal_lengths

LIMIT = 300


@pytest.fixture(scope="module")
def result(task, tmp_path_factory):
    cache = tmp_path_factory.mktemp("lco-cache")
    return lco.run(["none", "alkali"], limit=LIMIT, params={"n_estimators": 100}, cache_dir=cache,
                   metallicity=None, bench=task.benchmark, materials=task.materials)


def test_held_out_ids_never_in_training_or_calibration(result, task):
    it = result["items"]["alkali"]
    held = set(it["ids"].tolist())
    assert held and not held & set(it["train_ids"].tolist()) and not held & set(it["cal_ids"].tolist())
    sliced = {s: task.ids(s)[:LIMIT] for s in ("train", "val", "test")}
    for jid in held:
        assert set(task.materials.at[jid, "atoms"].elements) & lco.ALKALI
    for jid in list(it["train_ids"]) + list(it["cal_ids"]):
        assert not set(task.materials.at[jid, "atoms"].elements) & lco.ALKALI
    # every sliced compound with an alkali metal is held out, from all three splits
    assert held == {i for s in sliced for i in sliced[s] if set(task.materials.at[i, "atoms"].elements) & lco.ALKALI}
    assert set(it["split"].tolist()) == {"train", "val", "test"}
    assert set(it["train_ids"].tolist()) <= set(sliced["train"]) and set(it["cal_ids"].tolist()) <= set(sliced["val"])
    none = result["items"]["none"]
    assert set(none["ids"].tolist()) == set(sliced["test"]) and list(none["train_ids"]) == sliced["train"]


def test_reported_numbers_are_recomputed(result, task):
    for s in result["folds"]:
        it = result["items"][s["fold"]]
        y = np.array([task.benchmark.targets[sp][i] for i, sp in zip(it["ids"], it["split"])])
        assert np.array_equal(y, it["y"])
        assert s["q"] == conformal.conformal_offset(it["cal_y"], it["cal_yhat"])
        L = conformal.upper_bound(it["yhat"], s["q"])
        assert s["coverage_plain"] == pytest.approx(np.mean(y <= L))
        assert s["mae"] == pytest.approx(np.mean(np.abs(y - it["yhat"])))
        f = it["flagged"]
        assert s["n_flagged"] == f.sum() and s["n_in_domain"] == (~f).sum()
        if f.any():
            assert s["coverage_plain_flagged"] == pytest.approx(np.mean(y[f] <= L[f]))
        # k-points from lattices computed here, independently of the definition's lattice.csv
        R = np.array([reciprocal_lengths(task.materials.at[i, "atoms"].lattice_mat) for i in it["ids"]])
        assert np.allclose(R, it["recip"], rtol=1e-12)
        assert s["kpoints_plain"] == pytest.approx(kpoint_count(R, L).mean())
        assert s["kpoints_true"] == pytest.approx(kpoint_count(R, y).mean())
        # the conservative bound: never below L90, its coverage as reported
        Lr = lco.rule_bound(it["yhat"], s["q"], it["tier"], it["factor_nested"])
        assert np.all(Lr >= L) and s["coverage_rule_nested"] == pytest.approx(np.mean(y <= Lr))
        assert np.array_equal(Lr[~f], L[~f])  # in-domain compounds keep L90
        assert s["n_tier_element"] + s["n_tier_other"] == s["n_flagged"]
        # the metal floor of tier 3: the fold's training metals' quantile, from the targets here
        train_y = np.array([task.benchmark.targets["train"][i] for i in it["train_ids"]])
        m = it["metal"]
        metal_train = domain.metal_rule(list(task.materials.loc[it["train_ids"], "formula"])) > 0.5  # metallicity=None
        assert s["metal_floor"] == float(np.quantile(train_y[metal_train], 0.99, method="inverted_cdf"))
        if m.any():
            Lf = np.maximum(Lr, s["metal_floor"])
            assert s["coverage_floor_metal"] == pytest.approx(np.mean(y[m] <= Lf[m]))
            assert s["coverage_floor_metal"] >= s["coverage_rule_nested_metal"]
            assert s["kpoints_floor_metal"] == pytest.approx(kpoint_count(R[m], Lf[m]).mean())
    assert all(result["items"][s["fold"]]["metal"].any() for s in result["folds"])  # the floor was checked


def test_alkali_held_out_are_all_flagged_unseen(result):
    s = next(s for s in result["folds"] if s["fold"] == "alkali")
    assert s["n_flagged"] == s["n_held"] and s["flags"]["unseen_element"] == s["n_held"]


def test_nested_factors_are_chosen_without_the_fold_and_its_compounds(result):
    items = result["items"]
    for s in result["folds"]:
        it = items[s["fold"]]
        others = [items[f] for f in items if f not in ("none", s["fold"])] or [items[f] for f in items if f != "none"]
        assert s["factors_nested"] == [list(lco.choose_rule(others, half=1)), list(lco.choose_rule(others, half=0))]
        for h in (0, 1):
            sel = it["half"] == h
            fe, fo = s["factors_nested"][h]
            assert np.array_equal(it["factor_nested"][sel], np.where(it["tier"][sel] == 1, fe, fo))


def test_choose_factor_is_the_smallest_reaching_the_target():
    y = np.array([30.0] * 9 + [60.0])
    it = {"y": y, "yhat": np.full(10, 25.0), "q": 5.0, "tier": np.full(10, 2), "half": np.zeros(10, int)}
    # L = floor_5(c * 30) must reach 30 for 90 %: c = 1.0; for all 10 (60): c = 2.0
    assert lco.choose_factor([it], (2,), target=0.9, min_n=1) == 1.0
    assert lco.choose_factor([it], (2,), target=1.0, min_n=1) == 2.0
    assert lco.choose_factor([it], (1,), min_n=1) == lco.FACTOR_GRID[-1]  # no compound of the tier: most conservative


def test_report_files_and_cli(result, tmp_path):
    paths = lco.write(result, tmp_path, "test")
    assert [p.name for p in paths] == ["lco.md", "lco.json"]
    js = json.loads((tmp_path / "lco.json").read_text())
    assert not any("seconds" in f for f in js["folds"])  # no wall time: the same file on any machine
    assert [f["fold"] for f in js["folds"]] == ["none", "alkali"] and "items" not in js
    assert "| alkali |" in (tmp_path / "lco.md").read_text()
    out = subprocess.run([sys.executable, "-m", "modellib.studies.lco", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--folds" in out.stdout
