"""The data layer on the real offline store: loader, coverage, split anomaly, cache."""

import pytest

from harness import data
from harness.benchmark import load_spec, load_split
from harness.errors import HarnessError


def test_split_is_the_published_one():
    split = load_split(load_spec())
    assert {s: len(split.targets[s]) for s in ("train", "val", "test")} == {"train": 44313, "val": 5540, "test": 5539}
    # k-point lengths are positive multiples of 5 in JARVIS
    assert all(v > 0 and v % 5 == 0 for v in split.targets["test"].values())


def test_split_anomaly_is_detected_and_kept_out_of_train_val():
    split = load_split(load_spec())
    assert split.overlaps == {"JVASP-96735": ("train", "val", "test")}
    assert "JVASP-96735" not in split.ids("train")
    assert "JVASP-96735" not in split.ids("val")
    assert "JVASP-96735" in split.ids("test")  # test stays as published
    assert len(split.ids("test")) == 5539


def test_loader_and_coverage_counts(task, offline):
    counts = task.coverage.counts()
    assert all(counts[s]["covered"] <= counts[s]["total"] for s in counts)
    assert set(task.ids("train")).isdisjoint(task.ids("test"))
    assert set(task.ids("val")).isdisjoint(task.ids("test"))
    if offline:
        assert len(task.materials) == 17279
        assert counts == {"train": {"covered": 13626, "total": 44313}, "val": {"covered": 1767, "total": 5540},
                          "test": {"covered": 1708, "total": 5539}}
        assert "train 13,626 / 44,313" in task.coverage.summary()
        assert "JVASP-96735" in task.coverage.summary()


def test_structures_are_real_and_joined_to_targets(task):
    X = task.X("test")
    y = task.y("test")
    assert len(X) == len(y) == len(task.ids("test"))
    atoms = X["atoms"].iloc[0]
    assert atoms.num_atoms > 0 and atoms.volume > 0
    assert X["formula"].iloc[0] == atoms.composition.reduced_formula


def test_second_load_uses_the_parse_cache(data_dir, cache_root, monkeypatch, task):
    def boom(*a, **k):
        raise AssertionError("re-parsed despite cache")

    monkeypatch.setattr(data, "parse_atoms", boom)
    materials, prov = data.load_materials(load_spec(), data_dir, cache_root)
    assert len(materials) == len(task.materials)


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(HarnessError, match="data dir does not exist"):
        data.load_raw("dft_3d_2021", tmp_path / "nope")
