"""Contributor workflow and CI: the GitHub workflows parse and run the expected commands
with the expected permissions, .ci/run runs the same test command, the reference rows CI
fetches are the ones used here, and `harness new-model` scaffolds a valid folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest
import yaml

from harness import cli, paths, registry
from harness.errors import HarnessError
from harness.scaffold import new_model

ROOT = paths.REPO_ROOT
WORKFLOWS = ROOT / ".github" / "workflows"
SUMS = ROOT / ".github" / "reference-contributions.sha256"
FETCH = ROOT / ".github" / "scripts" / "fetch-references.sh"


def load(name: str) -> dict:
    wf = yaml.safe_load((WORKFLOWS / name).read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as True
    return wf


def runs(job: dict) -> list[str]:
    return [" ".join(step["run"].split()) for step in job["steps"] if "run" in step]


def test_ci_runs_tests_validate_and_leaderboard_check_on_pull_requests():
    wf = load("ci.yml")
    assert set(wf["on"]) == {"pull_request"}
    assert wf["permissions"] == {"contents": "read"}
    (job,) = wf["jobs"].values()
    assert "permissions" not in job
    cmds = runs(job)
    assert "make test" in cmds
    assert ".venv/bin/python -m harness validate" in cmds
    assert ".venv/bin/python -m harness leaderboard --check" in cmds
    assert cmds.index("make test") < cmds.index(".venv/bin/python -m harness validate")
    assert any(c.startswith(".github/scripts/fetch-references.sh") for c in cmds)
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False


def test_leaderboard_workflow_rebuilds_and_commits_only_on_push_to_main():
    wf = load("leaderboard.yml")
    assert wf["on"] == {"push": {"branches": ["main"]}}
    assert wf["permissions"] == {"contents": "read"}
    (job,) = wf["jobs"].values()
    assert job["permissions"] == {"contents": "write"}
    assert "refs/heads/main" in job["if"]
    cmds = runs(job)
    # Only what the leaderboard needs is installed (no jarvis-tools, no model stack; see
    # test_run_records.py for the import check), then the rebuild runs.
    install = "python -m pip install -r requirements-leaderboard.txt"
    assert install in cmds and "python -m harness leaderboard" in cmds
    assert cmds.index(install) < cmds.index("python -m harness leaderboard")
    reqs = [ln.split("==")[0].strip().lower() for ln in (ROOT / "requirements-leaderboard.txt").read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]
    assert sorted(reqs) == ["matplotlib", "numpy", "pyyaml", "scipy"]  # scipy: the per-group bound's LPs
    commit = next(c for c in cmds if "git commit" in c)
    assert "git add -- leaderboard.csv README.md results/" in commit and "git push origin HEAD:main" in commit
    assert "git diff --cached --quiet" in commit  # commit only if changed
    assert not any("harness run" in c or "pytest" in c or "make test" in c for c in cmds)  # no contributor code here


def test_no_workflow_runs_pull_request_code_with_write_access():
    for f in WORKFLOWS.glob("*.y*ml"):
        code = "\n".join(ln for ln in f.read_text().splitlines() if not ln.lstrip().startswith("#"))
        assert "pull_request_target" not in code, f
        wf = load(f.name)
        assert "pull_request_target" not in wf["on"]
        if "pull_request" in wf["on"]:
            assert wf["permissions"] == {"contents": "read"}
            assert all(j.get("permissions", {}).get("contents", "read") == "read" for j in wf["jobs"].values())
        for job in wf["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    assert "@" in step["uses"], step  # every action pinned to a version


def test_ci_run_uses_the_same_test_command_as_the_workflow():
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "make test" in [ln.strip() for ln in script]
    makefile = (ROOT / "Makefile").read_text()
    test_recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "python -m pytest" in test_recipe


def test_fetched_references_are_the_local_ones():
    """CI's reference rows are scored from exactly the files the development machines use."""
    lines = [ln.split(None, 1) for ln in SUMS.read_text().splitlines() if ln.strip()]
    assert len({path.split("/")[0] for _, path in lines}) == 12
    ref = paths.default_reference_dir()
    if not ref.is_dir():
        pytest.skip("published contributions not available here")
    for digest, path in lines:
        assert hashlib.sha256((ref / path).read_bytes()).hexdigest() == digest, path
    spec_file = "AI-SinglePropertyPrediction-kpoint_length_unit-dft_3d-test-mae.csv.zip"
    local = sorted(f"{p.parent.name}/{p.name}" for p in ref.glob(f"*/{spec_file}"))
    assert local == sorted(p for _, p in lines if p.endswith(spec_file))


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_fetch_script_against_a_local_upstream(tmp_path):
    """The fetch script, pointed at a local git repo laid out like upstream (+ an extra folder)."""
    ref = paths.default_reference_dir()
    if not ref.is_dir():
        pytest.skip("published contributions not available here")
    up = tmp_path / "upstream"
    shutil.copytree(ref, up / "jarvis_leaderboard" / "contributions")
    (up / "jarvis_leaderboard" / "contributions" / "unrelated_model").mkdir()
    (up / "jarvis_leaderboard" / "contributions" / "unrelated_model" / "x.csv.zip").write_bytes(b"x")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-C", str(up)]
    subprocess.run(["git", "init", "-q", str(up)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "upstream"], check=True)
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "JARVIS_LEADERBOARD_GIT": str(up), "JARVIS_LEADERBOARD_COMMIT": commit}
    dest = tmp_path / "dest"
    proc = subprocess.run(["bash", str(FETCH), str(dest)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "12 models" in proc.stdout and not (dest / "unrelated_model").exists()
    # A tampered file fails the checksum step.
    victim = up / "jarvis_leaderboard" / "contributions" / "cfid" / "metadata.json"
    victim.chmod(0o644)
    victim.write_text("{}")
    subprocess.run([*git, "commit", "-qam", "tamper"], check=True)
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    proc = subprocess.run(["bash", str(FETCH), str(tmp_path / "dest2")], env={**env, "JARVIS_LEADERBOARD_COMMIT": commit},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "cfid/metadata.json: FAILED" in proc.stdout + proc.stderr


# --- harness new-model -----------------------------------------------------------------------


def test_new_model_scaffolds_a_valid_folder(tmp_path):
    path = new_model("my_model2", tmp_path / "models")
    assert path == tmp_path / "models" / "my_model2"
    folder = registry.read_folder(path)
    assert folder.name == "my_model2" and folder.meta["name"] == "my_model2"
    assert callable(folder.load_module().make_model)
    assert (path / "model.py").read_text() == (ROOT / "models" / "_template" / "model.py").read_text()
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["my_model2"]  # no temp leftovers


def test_validate_refuses_the_templates_placeholders(tmp_path, capsys, monkeypatch):
    """A scaffolded folder runs as it is, but `validate` (CI) names every metadata value
    still equal to the template's placeholder; the repository's own folders have none."""
    monkeypatch.setenv("KSPACING_OUTPUT_DIR", str(tmp_path / "out"))  # no submissions to check
    models = tmp_path / "models"
    path = new_model("fresh_one", models)
    assert cli.main(["validate", "--models-dir", str(models)]) == 1
    err = capsys.readouterr().err
    assert "fresh_one/model.yaml: authors[0].name: still the template's placeholder 'Your Name'" in err
    assert "authors[0].email: still the template's placeholder 'you@example.org'" in err
    text = (path / "model.yaml").read_text()
    for old, new in (("Your Name", "Ada Lovelace"), ("you@example.org", "ada@example.com"), ("your-team", "ada"),
                     ("what you trained on", "laptop"), ("One or two sentences: what the model is and what it learns from.",
                                                         "Ridge on cell statistics."),
                     ("what the inputs are (e.g. matminer Magpie composition features)", "volume per atom")):
        text = text.replace(old, new)
    (path / "model.yaml").write_text(text)
    assert cli.main(["validate", "--models-dir", str(models)]) == 0, capsys.readouterr().err
    from harness.scaffold import placeholder_problems

    assert placeholder_problems(registry.discover(paths.MODELS_DIR)[0]) == []


@pytest.mark.parametrize("name", ["My_Model", "my-model", "_private", "9 lives", "", "a/b", "../escape", "ünï", ".hidden"])
def test_new_model_refuses_invalid_names(tmp_path, name):
    with pytest.raises(HarnessError) as err:
        new_model(name, tmp_path / "models")
    msg = str(err.value)
    assert "\n" not in msg and f"invalid model name {name!r}" in msg
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []


def test_new_model_refuses_existing_folders_and_leaves_them_alone(tmp_path, capsys):
    models = tmp_path / "models"
    (models / "taken").mkdir(parents=True)
    (models / "taken" / "model.py").write_text("# mine\n")
    rc = cli.main(["new-model", "taken", "--models-dir", str(models)])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"error: {models / 'taken'}: already exists; pick another name (an existing folder is never touched)\n"
    assert [p.name for p in (models / "taken").iterdir()] == ["model.py"]
    assert (models / "taken" / "model.py").read_text() == "# mine\n"
    assert cli.main(["new-model", "fresh_one", "--models-dir", str(models)]) == 0
    assert "created " in capsys.readouterr().out
    assert cli.main(["validate", "--models-dir", str(models)]) == 1  # 'taken' lacks model.yaml
    assert "taken/model.yaml: (file): missing" in capsys.readouterr().err


def test_the_real_models_folder_has_no_name_collisions_with_the_template():
    assert not (paths.MODELS_DIR / "your_model_name").exists()
    with pytest.raises(HarnessError, match="already exists"):
        new_model("train_median", paths.MODELS_DIR)  # refused before anything is written


def test_contributing_guide_names_the_commands():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for cmd in ("python -m harness new-model", "python -m harness run", "python -m harness validate",
                "python -m harness leaderboard --check", "make test", "submissions/"):
        assert cmd in text, cmd
