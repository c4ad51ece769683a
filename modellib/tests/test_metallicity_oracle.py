"""modellib.studies.metallicity_oracle: the committed oracle diagnostic is current (its
P(metal) row recomputes from kspace_gbm's committed predictions at harness.group_bound's
constants) and its oracle covers every val material."""

from __future__ import annotations

import json

import pytest

from harness import benchmark as bm
from harness import group_bound as gb
from harness import paths
from modellib.studies import group_bound_choice as gbc
from modellib.studies import metallicity_oracle as mo

STUDY = paths.REPO_ROOT / "results" / "kspace_gbm" / "metallicity_oracle.json"


def test_oracle_covers_every_val_material_and_has_both_classes():
    gaps = mo.oracle_gaps()
    ids = bm.load(bm.SUBSET, paths.benchmarks_dir()).ids["val"]
    assert all(i in gaps for i in ids)
    metal = [gaps[i] <= 0 for i in ids]
    assert 0.1 < sum(metal) / len(metal) < 0.9


def test_committed_study_is_current():
    if not STUDY.is_file():
        pytest.fail(f"{STUDY}: missing (run `python -m modellib.studies.metallicity_oracle`)")
    res = json.loads(STUDY.read_text())
    b = res["bound"]
    assert b["point"] == {**gb.HYPER, "slack": gb.GROUP_SLACK}
    again = gbc.halvings(gbc.inputs()["val"], b["point"], b["n_rep"])
    assert again["kpoints"] == pytest.approx(b["rows"]["P(metal) > 0.5"]["kpoints"], rel=1e-12)
    m = res["model"]
    assert m["n_val"] == len(bm.load(bm.SUBSET, paths.benchmarks_dir()).ids["val"])
    assert (paths.REPO_ROOT / "results" / "kspace_gbm" / "metallicity_oracle.md").read_text() == mo.markdown(
        res, "python -m modellib.studies.metallicity_oracle")
