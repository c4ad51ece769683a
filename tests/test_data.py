"""The data layer on the real offline store: loader, the offline subset it covers, split
anomaly, cache."""

import pytest

from harness import benchmark as bm
from harness import data, paths
from harness.errors import HarnessError
from harness.freeze import DATASET
from harness.split import load_split


def test_split_is_the_published_one():
    split = load_split()
    assert {s: len(split.targets[s]) for s in ("train", "val", "test")} == {"train": 44313, "val": 5540, "test": 5539}
    # k-point lengths are positive multiples of 5 in JARVIS
    assert all(v > 0 and v % 5 == 0 for v in split.targets["test"].values())


def test_split_anomaly_is_detected_and_kept_out_of_train_val():
    split = load_split()
    assert split.overlaps == {"JVASP-96735": ("train", "val", "test")}
    assert "JVASP-96735" not in split.ids("train")
    assert "JVASP-96735" not in split.ids("val")
    assert "JVASP-96735" in split.ids("test")  # test stays as published
    assert len(split.ids("test")) == 5539


def test_subset_is_exactly_the_split_ids_the_store_covers(task):
    """The offline subset = the published split's ids whose structure is in the store
    (same order, same truth), disjoint splits, inside the official definition."""
    split = load_split()
    have = set(task.materials.index)
    for s in bm.SPLITS:
        assert task.ids(s) == [i for i in split.ids(s) if i in have]
        assert task.benchmark.targets[s] == {i: split.targets[s][i] for i in task.ids(s)}
    assert set(task.ids("train")).isdisjoint(task.ids("test"))
    assert set(task.ids("val")).isdisjoint(task.ids("test"))
    assert bm.load(bm.OFFICIAL, paths.benchmarks_dir()).contains(task.benchmark)


def test_offline_counts(task, offline):
    assert len(task.materials) == 17279 and task.provenance["n"] == 17279
    assert task.benchmark.counts() == {"train": 13626, "val": 1767, "test": 1708}
    assert "train 13,626 / 44,313" in task.summary()
    assert task.benchmark.spec["overlaps"] == {"JVASP-96735": ["train", "val", "test"]}


def test_structures_are_real_and_joined_to_targets(task):
    X = task.X("test")
    y = task.y("test")
    assert len(X) == len(y) == len(task.ids("test"))
    atoms = X["atoms"].iloc[0]
    assert atoms.num_atoms > 0 and atoms.volume > 0
    assert X["formula"].iloc[0] == atoms.composition.reduced_formula


def test_a_store_lacking_ids_cannot_serve_the_definition(task):
    from harness.task import Task

    fewer = task.materials.drop(index=task.ids("test")[:3])
    problem = task.benchmark.store_problem(fewer.index, task.provenance["sha256"])
    assert problem and "lacks 3 of" in problem and "test ids" in problem
    with pytest.raises(HarnessError, match=rf"no structure for 3 id\(s\) of {task.benchmark.name}"):
        Task(task.benchmark, fewer, task.provenance)
    other = task.benchmark.store_problem(task.materials.index, "0" * 64)
    assert other and "frozen against the store with sha256" in other


def test_second_load_uses_the_parse_cache(data_dir, cache_root, monkeypatch, task):
    def boom(*a, **k):
        raise AssertionError("re-parsed despite cache")

    monkeypatch.setattr(data, "parse_atoms", boom)
    materials, prov = data.load_materials(DATASET, data_dir, cache_root)
    assert len(materials) == len(task.materials) and prov["sha256"] == task.provenance["sha256"]


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(HarnessError, match="data dir does not exist"):
        data.load_raw("dft_3d_2021", tmp_path / "nope")
