"""The frozen benchmark definitions (benchmarks/<name>/): what they hold, that they match
their sources, and that any edit of a frozen id list is caught by `leaderboard --check`."""

from __future__ import annotations

import shutil

import pytest

from harness import benchmark as bm
from harness import freeze, paths
from harness.cli import main
from harness.errors import HarnessError
from harness.split import load_split

# The definitions as frozen on 2026-11-25. A change here means the benchmark changed:
# freeze a new one under a new name instead.
PINNED = {
    bm.OFFICIAL: "31ab16292f69",
    bm.SUBSET: "8ffb4efd9701",
}


@pytest.fixture(scope="module")
def defs():
    return {d.name: d for d in bm.load_all(paths.REPO_ROOT / "benchmarks")}


def test_both_definitions_are_frozen_and_pinned(defs):
    assert set(defs) == {bm.OFFICIAL, bm.SUBSET}
    for name, prefix in PINNED.items():
        assert defs[name].definition_sha256.startswith(prefix), name


def test_official_definition_is_the_package_split(defs):
    split = load_split()
    off = defs[bm.OFFICIAL]
    for s in bm.SPLITS:
        assert off.ids[s] == split.ids(s)
        assert off.targets[s] == {i: split.targets[s][i] for i in split.ids(s)}
    # 44,313 / 5,540 / 5,539 as published; JVASP-96735 (in all three) kept in test only.
    assert off.spec["published_sizes"] == {"train": 44313, "val": 5540, "test": 5539}
    assert off.counts() == {"train": 44312, "val": 5539, "test": 5539}
    assert "JVASP-96735" in off.id_sets["test"] and "JVASP-96735" not in off.id_sets["train"] | off.id_sets["val"]
    assert off.key == "AI-SinglePropertyPrediction-kpoint_length_unit-dft_3d-test-mae"
    assert off.store is None  # any store holding the ids will do (online: the full release)


def test_subset_is_inside_the_official_split_with_the_same_truth(defs):
    off, sub = defs[bm.OFFICIAL], defs[bm.SUBSET]
    assert off.contains(sub) and not sub.contains(off)
    assert sub.counts() == {"train": 13626, "val": 1767, "test": 1708}
    for s in bm.SPLITS:
        assert all(sub.targets[s][i] == off.targets[s][i] for i in sub.ids[s])
        order = [i for i in off.ids[s] if i in sub.id_sets[s]]
        assert sub.ids[s] == order  # published order kept
    assert sub.store["sha256"] == "f60b159e2818c4eb333778714a59225b62d80ae5b560ffe20167047597f72db2"
    assert set(sub.recip) == sub.id_sets["val"] | sub.id_sets["test"]


def test_subset_lattice_equals_jarvis_reciprocal_lengths(defs, task):
    """The frozen |b_i| are jarvis' own to the last bits and give jarvis' meshes. Not bit
    for bit: jarvis' norm is a BLAS dot, whose rounding is the CPU's (the file was frozen
    on an Intel Xeon; an AMD EPYC differs by 1 ulp in 40 of 300 cells, none of them in a mesh)."""
    import numpy as np

    from harness.kpoints import GRID, mesh, reciprocal_lengths

    sub = defs[bm.SUBSET]
    ids = sub.ids["test"][:300]
    frozen = np.array([sub.recip[i] for i in ids])
    here = np.array([reciprocal_lengths(task.materials.at[i, "atoms"].lattice_mat) for i in ids])
    assert np.allclose(frozen, here, rtol=4 * np.finfo(float).eps, atol=0)
    for L in np.arange(GRID, 205.0, GRID):
        assert np.array_equal(mesh(frozen, L), mesh(here, L)), L


def _copy_root(tmp_path):
    root = tmp_path / "out"
    shutil.copytree(paths.REPO_ROOT / "benchmarks", root / "benchmarks")
    return root


@pytest.mark.parametrize("edit", ["change_target", "drop_id", "swap_split"])
def test_editing_a_frozen_id_list_is_an_error(tmp_path, edit):
    root = _copy_root(tmp_path)
    folder = root / "benchmarks" / bm.SUBSET
    test_csv = folder / "test.csv"
    lines = test_csv.read_text().splitlines()
    if edit == "change_target":
        jid, t = lines[1].split(",")
        lines[1] = f"{jid},{float(t) + 5:g}"
        test_csv.write_text("\n".join(lines) + "\n")
    elif edit == "drop_id":  # shrinking the test set, and fixing up sizes in the yaml
        test_csv.write_text("\n".join(lines[:-1]) + "\n")
        spec = (folder / "benchmark.yaml").read_text().replace("test: 1708", "test: 1707")
        (folder / "benchmark.yaml").write_text(spec)
    else:
        val_csv = folder / "val.csv"
        vl = val_csv.read_text().splitlines()
        lines[1], vl[1] = vl[1], lines[1]
        test_csv.write_text("\n".join(lines) + "\n")
        val_csv.write_text("\n".join(vl) + "\n")
    with pytest.raises(HarnessError, match="ids_sha256|sizes"):
        bm.load(bm.SUBSET, root / "benchmarks")


def test_leaderboard_check_fails_when_a_frozen_list_changes(tmp_path, monkeypatch, capsys):
    """The committed tree passes `leaderboard --check`; the same tree with one edited id fails."""
    root = tmp_path / "repo"
    for part in ("benchmarks", "submissions", "results"):
        shutil.copytree(paths.REPO_ROOT / part, root / part)
    for f in ("README.md", "leaderboard.csv"):
        shutil.copyfile(paths.REPO_ROOT / f, root / f)
    monkeypatch.setenv(paths.OUTPUT_DIR_ENV, str(root))
    monkeypatch.setenv(paths.MODELS_DIR_ENV, str(paths.REPO_ROOT / "models"))
    assert main(["leaderboard", "--check"]) == 0
    test_csv = root / "benchmarks" / bm.SUBSET / "test.csv"
    lines = test_csv.read_text().splitlines()
    test_csv.write_text("\n".join([lines[0], lines[1].replace("JVASP-", "JVASP-9")] + lines[2:]) + "\n")
    assert main(["leaderboard", "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and bm.SUBSET in err and "ids_sha256" in err


def test_freeze_is_idempotent_and_never_rewrites_a_different_definition(tmp_path):
    split = load_split()
    root = tmp_path / "benchmarks"
    files = freeze.official_files(split, None)
    assert bm.write(root, bm.OFFICIAL, files) == "written"
    assert bm.write(root, bm.OFFICIAL, files) == "unchanged"
    # The committed official definition is exactly what freezing gives today.
    for name, data in files.items():
        assert (paths.REPO_ROOT / "benchmarks" / bm.OFFICIAL / name).read_bytes() == data, name
    changed = dict(files)
    changed["benchmark.yaml"] = files["benchmark.yaml"].replace(b"metric: mae", b"metric: rmse")
    with pytest.raises(HarnessError, match="never rewritten"):
        bm.write(root, bm.OFFICIAL, changed)


def test_recording_the_lattice_later_is_the_one_allowed_change(tmp_path, defs):
    """Frozen offline without lattice, the official definition may get its lattice where
    the full store exists; its id lists stay byte for byte."""
    sub = defs[bm.SUBSET]
    ids = {s: sub.ids[s][:5] for s in bm.SPLITS}
    spec = {k: v for k, v in sub.spec.items() if k not in ("lattice", "ids_sha256", "sizes", "name")}
    root = tmp_path / "benchmarks"
    bm.write(root, "tiny", bm.definition_files("tiny", spec, ids, sub.targets, None))
    recip = {i: list(sub.recip[i]) for i in ids["val"] + ids["test"]}
    assert bm.write(root, "tiny", bm.definition_files("tiny", spec, ids, sub.targets, recip)) == "written"
    assert bm.load("tiny", root).recip is not None
    ids2 = {**ids, "test": ids["test"][:4]}
    with pytest.raises(HarnessError, match="never rewritten"):
        bm.write(root, "tiny", bm.definition_files("tiny", spec, ids2, sub.targets, None))


def test_refreezing_on_another_cpu_keeps_the_frozen_lattice(tmp_path, defs):
    """A refreeze whose |b_i| differ from the frozen ones by last-bit rounding (another
    CPU's BLAS dot in jarvis' norm) is the same definition: `freeze` says unchanged and keeps
    the frozen bits. A lattice that moves a mesh, or any other change, is still refused."""
    import numpy as np

    sub = defs[bm.SUBSET]
    ids = {s: sub.ids[s][:40] for s in bm.SPLITS}
    spec = {k: v for k, v in sub.spec.items() if k not in ("lattice", "ids_sha256", "sizes", "name")}
    recip = {i: np.asarray(sub.recip[i], dtype=float) for i in ids["val"] + ids["test"]}
    root = tmp_path / "benchmarks"
    bm.write(root, "tiny", bm.definition_files("tiny", spec, ids, sub.targets, recip))
    frozen = (root / "tiny" / bm.LATTICE_FILE).read_bytes()

    def refreeze(change):
        other = {i: change(k, b) for k, (i, b) in enumerate(recip.items())}
        return bm.write(root, "tiny", bm.definition_files("tiny", spec, ids, sub.targets, other))

    # one ulp up or down in every third cell, as an AMD EPYC recomputes an Intel Xeon's file
    ulp = lambda k, b: np.nextafter(b, np.inf if k % 2 else 0.0) if k % 3 == 0 else b  # noqa: E731
    assert refreeze(ulp).startswith("unchanged (lattice within rounding")
    assert (root / "tiny" / bm.LATTICE_FILE).read_bytes() == frozen
    assert bm.load("tiny", root).recip is not None  # still reads, hash checked
    with pytest.raises(HarnessError, match="never rewritten"):  # 1e-3 relative: a real change of cell
        refreeze(lambda k, b: b * (1 + 1e-3) if k == 0 else b)
    with pytest.raises(HarnessError, match="never rewritten"):  # an edited target with the same lattice
        edited = {**sub.targets, "test": {**sub.targets["test"], ids["test"][0]: 999.0}}
        bm.write(root, "tiny", bm.definition_files("tiny", spec, ids, edited, {i: list(b) for i, b in recip.items()}))
