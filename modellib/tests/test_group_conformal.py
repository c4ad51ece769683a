"""modellib.studies.group_conformal on kspace_gbm's committed val/test predictions of the subset
benchmark: plain offsets equal harness.conformal's; each group's offset is that group's
own conformal offset; the max-Mondrian bound covers every group of every grouping on the
calibration set; held-out groups gain coverage over the plain bound."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness import conformal, domain, paths
from modellib.studies import group_conformal as gc
from harness.errors import HarnessError


def _predictions(task, split):
    b = task.benchmark
    if split == "val":
        path = paths.REPO_ROOT / "results" / "kspace_gbm" / b.name / "val_predictions.csv.zip"
    else:
        path = paths.REPO_ROOT / "submissions" / "kspace_gbm" / b.submission_filename
    if not path.is_file():
        pytest.skip(f"{path}: no committed kspace_gbm predictions")
    df = pd.read_csv(path).set_index("id")
    return df.loc[task.ids(split), "prediction"].to_numpy(float)


@pytest.fixture(scope="module")
def data(task):
    out = {}
    for split in ("val", "test"):
        X = task.X(split)
        atoms = list(X["atoms"])
        groups = gc.groups_of([a.num_atoms for a in atoms], [domain.spacegroup_number(a) for a in atoms],
                              domain.metal_rule(list(X["formula"])))  # the composition rule: no model fit in tests
        out[split] = (task.y(split), _predictions(task, split), groups)
    return out


def test_plain_offset_and_bound_equal_harness_conformal(data):
    y, p, g = data["val"]
    off = gc.group_offsets(y, p, g, groupings=())
    assert off["marginal"] == conformal.conformal_offset(y, p)
    yt, pt, gt = data["test"]
    assert np.array_equal(gc.bound(pt, gt, off), conformal.upper_bound(pt, off["marginal"]))
    assert gc.bound(float(pt[0]), gt[0], off) == conformal.upper_bound(pt[:1], off["marginal"])[0]


def test_each_group_offset_is_its_own_conformal_offset(data):
    y, p, g = data["val"]
    off = gc.group_offsets(y, p, g)
    for G in gc.GROUPINGS:
        labels = np.array([x[G] for x in g])
        for lab, q in off["groups"][G].items():
            sel = labels == lab
            if sel.sum() >= 9:  # ⌈(1 − α)/α⌉: a finite conformal bound exists
                assert q == conformal.conformal_offset(y[sel], p[sel]), (G, lab)
            else:
                assert q == off["fallback"][G]
    assert set(off["groups"]["metal"]) == {"metal", "non-metal"}
    assert set(off["groups"]["size"]) == {"small", "large"}
    assert len(off["groups"]["system"]) == 7


def test_every_group_is_covered_on_its_calibration_set(data):
    """The ⌈(n+1)(1−α)⌉-th score bounds ≥ 90 % of its own group, the grid floor keeps
    grid targets covered, and the max over groupings only raises the bound."""
    y, p, g = data["val"]
    off = gc.group_offsets(y, p, g)
    L = gc.bound(p, g, off)
    L_plain = conformal.upper_bound(p, off["marginal"])
    for G in gc.GROUPINGS:
        labels = np.array([x[G] for x in g])
        for lab in set(labels.tolist()):
            sel = labels == lab
            assert np.mean(y[sel] <= L[sel]) >= 0.9, (G, lab)
    for G in gc.GROUPINGS:  # at least each of the material's own Mondrian bounds
        own = conformal.floor_to_grid(p + np.array([off["groups"][G][x[G]] for x in g]))
        assert np.all(L >= own)
    assert np.all(L % 5 == 0) and np.mean(L >= L_plain) > 0.5


def test_held_out_worst_group_improves(data):
    y, p, g = data["val"]
    yt, pt, gt = data["test"]
    plain = gc.evaluate(yt, gc.bound(pt, gt, gc.group_offsets(y, p, g, groupings=())), gt, np.ones((len(yt), 3)))
    grouped = gc.evaluate(yt, gc.bound(pt, gt, gc.group_offsets(y, p, g)), gt, np.ones((len(yt), 3)))
    assert grouped["worst_coverage"] > plain["worst_coverage"]
    assert grouped["coverage"] >= plain["coverage"]


def test_small_groups_fall_back_and_relative_score():
    y = np.array([20.0, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75])
    p = y - 2.0
    g = [{"metal": "metal" if i < 3 else "non-metal"} for i in range(len(y))]
    off = gc.group_offsets(y, p, g, groupings=("metal",))
    assert off["n"]["metal"] == {"metal": 3, "non-metal": 9}
    assert off["groups"]["metal"]["metal"] == off["fallback"]["metal"]  # 3 < 9: no finite bound of its own
    unseen = gc.bound(50.0, {"metal": "unknown"}, off)  # a label without calibration data: the fallback
    assert unseen == float(conformal.floor_to_grid(50.0 + off["fallback"]["metal"]))
    rel = gc.group_offsets(y, p, g, groupings=(), score="relative")
    assert rel["score"] == "relative"
    assert gc.bound(40.0, {}, rel) == float(conformal.floor_to_grid(40.0 * (1 + rel["marginal"])))
    with pytest.raises(HarnessError):
        gc.group_offsets(y[:5], p[:5], g[:5], groupings=())
