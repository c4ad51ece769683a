"""Broken model folders: each fails with a one-line message naming its file and the
fault (each model trains in its own process; the parent prints the child's message),
the other models still run and are ranked, and the run exits non-zero listing the
failed models by name. Runs on a small real slice (`--scratch DIR --limit N`)."""

from __future__ import annotations

import re

import pytest

from harness import benchmark as bm
from harness import cli, paths, record, registry
from helpers_slice import (PER_ATOM_COUNT, SUBMISSION, redirect_outputs, run_cli, scratch_cache, scratch_env,
                           write_model)

LIMIT = "40"

PREDICT = 'return np.array([self.table_.get(a.num_atoms, self.default_) for a in X["atoms"]])'
assert PREDICT in PER_ATOM_COUNT


def with_predict(expr: str) -> str:
    return PER_ATOM_COUNT.replace(PREDICT, f"return {expr}")


# name -> (model.py, model.yaml overrides or None for "no model.yaml", expected message after the path)
BROKEN = {
    "t_bad_meta": (PER_ATOM_COUNT, {"kind": "superstar"},
                   r"t_bad_meta/model\.yaml: kind: 'superstar' is not one of \['model', 'baseline'\]"),
    "t_no_yaml": (PER_ATOM_COUNT, None, r"t_no_yaml/model\.yaml: \(file\): missing"),
    "t_bad_yaml": (PER_ATOM_COUNT, "name: [unclosed", r"t_bad_yaml/model\.yaml: \(file\): not valid YAML"),
    "t_import_error": ("import not_a_real_package_xyz\n", {},
                       r"t_import_error/model\.py: import failed \(ModuleNotFoundError: No module named 'not_a_real_package_xyz'\)"),
    "t_syntax_error": ("def make_model(ctx) return 1\n", {}, r"t_syntax_error/model\.py: import failed \(SyntaxError: "),
    "t_exit_on_import": ("import sys\nsys.exit(4)\n", {}, r"t_exit_on_import/model\.py: import failed \(SystemExit: 4\)"),
    "t_no_make_model": ("X = 1\n", {}, r"t_no_make_model/model\.py: make_model: not defined"),
    "t_not_estimator": ("def make_model(ctx):\n    return 42\n", {},
                        r"t_not_estimator/model\.py: make_model returned int, which lacks fit/predict"),
    "t_fit_raises": (PER_ATOM_COUNT.replace("    def fit(self, X, y):\n",
                                            "    def fit(self, X, y):\n        raise ValueError('singular\\nmatrix')\n"), {},
                     r"t_fit_raises/model\.py: ValueError: singular matrix \(at model\.py:6\)"),
    "t_fit_exits": (PER_ATOM_COUNT.replace("    def fit(self, X, y):\n",
                                           "    def fit(self, X, y):\n        import sys; sys.exit(3)\n"), {},
                    r"t_fit_exits/model\.py: SystemExit: 3 \(at model\.py:6\)"),
    "t_wrong_count": (with_predict("np.array([1.0, 2.0, 3.0])"), {}, r"t_wrong_count/model\.py: predict returned 3 values for 40 val materials"),
    "t_nan": (with_predict("np.full(len(X), np.nan)"), {},
              r"t_nan/model\.py: val predictions: 40 non-finite value\(s\), first at id JVASP-"),
    "t_strings": (with_predict("['x'] * len(X)"), {}, r"t_strings/model\.py: ValueError: could not convert string to float: 'x'"),
    "t_none": (with_predict("None"), {}, r"t_none/model\.py: predict returned None \(it must return one number per row"),
    # sorted by material id: scored by position, it would be silently misaligned
    "t_reordered": (with_predict("__import__('pandas').Series(30.0 + np.arange(len(X)), index=X.index).sort_index(ascending=False)"),
                    {}, r"t_reordered/model\.py: predict returned a Series whose index is X's ids in another order"),
    "t_misspelt_needs": (PER_ATOM_COUNT, {"needs": ["t_goood"]},
                         r"t_misspelt_needs/model\.yaml: needs: no model folder \S+/t_goood/ \(known: "),
}
GOOD = ("t_good", "t_median")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    write_model(d, "t_good", PER_ATOM_COUNT, run_order=1)
    write_model(d, "t_median", "from sklearn.dummy import DummyRegressor\n\ndef make_model(ctx):\n"
                "    return DummyRegressor(strategy='median')\n", kind="baseline", run_order=0)
    for name, (code, meta, _) in BROKEN.items():
        folder = write_model(d, name, code, **(meta if isinstance(meta, dict) else {}))
        if meta is None:
            (folder / "model.yaml").unlink()
        elif isinstance(meta, str):
            (folder / "model.yaml").write_text(meta)
    return d


def check_failures(rc: int, out: str, err: str) -> None:
    assert rc == 1, err
    text = out + err
    for name, (_, _, pattern) in BROKEN.items():
        lines = [ln for ln in text.splitlines() if re.search(pattern, ln)]
        assert lines, f"{name}: no line matching {pattern!r} in\n{text}"
    summary = err.strip().splitlines()[-1]
    assert summary == f"{len(BROKEN)} model(s) failed: {', '.join(sorted(BROKEN))}", summary
    assert "Traceback" not in text
    for name in GOOD:
        assert re.search(rf"^{name}: test MAE \d+\.\d+", out, re.M), out


def check_outputs(out_dir) -> None:
    assert sorted(p.name for p in (out_dir / "submissions").iterdir()) == sorted(GOOD)
    model_results = sorted(p.name for p in (out_dir / "results").iterdir() if p.is_dir())
    assert model_results == sorted(GOOD)  # failed models wrote nothing
    for name in GOOD:
        assert (out_dir / "submissions" / name / SUBMISSION).is_file()
        assert (record.results_folder(out_dir / "results", name, bm.SCRATCH) / record.RECORD_FILE).is_file()
    board = (out_dir / "leaderboard.csv").read_text().splitlines()
    assert len(board) == 1 + len(GOOD) and all(any(f",{n}," in ln for ln in board) for n in GOOD)


@pytest.fixture()
def in_process(task, cache_root, tmp_path, monkeypatch):
    """cli.main in this process (the model processes reuse the session's parsed store),
    outputs in tmp_path/out."""
    monkeypatch.setenv("KSPACING_CACHE_DIR", str(scratch_cache(tmp_path, cache_root)))
    monkeypatch.setenv("KSPACING_REFERENCE_DIR", str(tmp_path / "no-references"))
    redirect_outputs(monkeypatch, tmp_path / "out")
    return tmp_path / "out"


def test_broken_models_fail_alone_and_the_run_exits_nonzero(in_process, models_dir, capsys):
    rc = cli.main(["run", "--all", "--scratch", str(in_process), "--limit", LIMIT, "--n-jobs", "1",
                   "--models-dir", str(models_dir)])
    cap = capsys.readouterr()
    check_failures(rc, cap.out, cap.err)
    check_outputs(in_process)


def test_selected_models_only_report_their_own_failures(in_process, models_dir, capsys):
    args = ["--scratch", str(in_process), "--limit", LIMIT, "--models-dir", str(models_dir)]
    rc = cli.main(["run", "t_good", *args])
    cap = capsys.readouterr()
    assert rc == 0 and "failed" not in cap.err
    rc = cli.main(["run", "t_good", "t_bad_meta", "t_fit_raises", *args])
    cap = capsys.readouterr()
    assert rc == 1
    assert re.search(BROKEN["t_bad_meta"][2], cap.err) and re.search(BROKEN["t_fit_raises"][2], cap.out)
    assert cap.err.strip().splitlines()[-1] == "2 model(s) failed: t_bad_meta, t_fit_raises"
    assert "t_no_yaml" not in cap.err
    rc = cli.main(["run", "nope", *args])
    assert rc == 2 and capsys.readouterr().err.startswith(f"error: no model folder {models_dir.name}/nope/ (known: ")
    (models_dir / "_draft").mkdir(exist_ok=True)  # skipped by --all; named, it is refused, not silently skipped
    rc = cli.main(["run", "_draft", *args])
    assert rc == 2 and capsys.readouterr().err.startswith(f"error: {models_dir.name}/_draft/: folders starting with _ or .")


def test_validate_lists_every_broken_folder(models_dir, capsys, tmp_path, monkeypatch):
    redirect_outputs(monkeypatch, tmp_path / "out")  # no submissions to check
    rc = cli.main(["validate", "--models-dir", str(models_dir)])
    err = capsys.readouterr().err
    assert rc == 1
    for name in ("t_bad_meta", "t_no_yaml", "t_bad_yaml", "t_import_error", "t_syntax_error", "t_exit_on_import", "t_no_make_model",
                 "t_misspelt_needs"):
        assert re.search(BROKEN[name][2], err), (name, err)
    # fit/predict faults only show when training: validate passes those folders
    ok, _ = registry.discover(models_dir)
    assert {"t_fit_raises", "t_wrong_count", "t_good"} <= {m.name for m in ok}


def test_limit_is_refused_on_the_repository_outputs(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv(paths.OUTPUT_DIR_ENV, raising=False)
    rc = cli.main(["run", "--all", "--limit", "5"])
    err = capsys.readouterr().err
    assert rc == 2 and "--limit 5: a slice is not the benchmark" in err and "--scratch DIR" in err
    for bad in (paths.REPO_ROOT, paths.REPO_ROOT / "results"):  # --scratch must leave the committed output alone
        rc = cli.main(["run", "--all", "--scratch", str(bad), "--limit", "5"])
        assert rc == 2 and re.search(r"^error: --scratch \S+: must be a folder outside the", capsys.readouterr().err)
    assert paths.is_repo_output()


def test_end_to_end_in_a_subprocess(task, data_dir, cache_root, models_dir, tmp_path):
    """The real entry point, with the model folders given by $KSPACING_MODELS_DIR."""
    env = scratch_env(tmp_path, data_dir, cache_root, models_dir)
    proc = run_cli(["run", "--all", "--limit", LIMIT, "--n-jobs", "1"], env)
    check_failures(proc.returncode, proc.stdout, proc.stderr)
    check_outputs(tmp_path / "out")
    assert f"training on {bm.SCRATCH}: train 40 / 44,313" in proc.stdout and "SCRATCH output in" in proc.stdout
