"""``harness export NAME DIR``: a JARVIS-Leaderboard contribution folder for one model,
``DIR/kspacingbench_NAME/``, that passes upstream's own checks (metadata fields, an
``@`` in author_email, run.sh, a csv.zip named by an upstream benchmark with every one
of its test ids). Only the official benchmark is exported: the offline subset is not an
upstream benchmark, and a file holding part of its test set is an error there."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from harness import atomic, paths, submission
from harness import benchmark as bm
from harness.errors import HarnessError
from harness.leaderboard import checked_record, read_submission

PREFIX = "kspacingbench_"  # upstream contribution names are global: ours carry the project's prefix
UPSTREAM_METADATA = ("model_name", "project_url", "date_submitted", "author_email", "team_name", "time_taken_seconds",
                     "software_used", "hardware_used", "git_url")


def contribution_name(model: str) -> str:
    return PREFIX + model


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(paths.REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or "main"
    except (OSError, subprocess.SubprocessError):
        return "main"


def run_sh(model: str, filename: str, commit: str, project_url: str) -> str:
    return f"""#!/usr/bin/env bash
# Reproduces {filename} of this folder with kspacing-bench, from any directory
# (e.g. jarvis_leaderboard/contributions/{contribution_name(model)}/).
# Needs: git, python3.11, make, internet (pip, and jarvis-tools' figshare download of dft_3d_2021).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
git clone {project_url} "$work/kspacing-bench"
cd "$work/kspacing-bench"
git checkout {commit}
make venv
.venv/bin/python -m harness run {model}
cp "submissions/{model}/{filename}" "$here/{filename}"
"""


def export(model: str, dest_root: Path, models_dir: Path, benchmark: str | None = None,
           reference_dir: Path | None = None) -> Path:
    benchmark = benchmark or bm.OFFICIAL
    if benchmark != bm.OFFICIAL:
        raise HarnessError(f"--benchmark {benchmark}: not a JARVIS-Leaderboard benchmark; only {bm.OFFICIAL} "
                           "can be exported")
    official = bm.load(bm.OFFICIAL, paths.benchmarks_dir())
    meta_path = Path(models_dir) / model / "model.yaml"
    if not meta_path.is_file():
        raise HarnessError(f"{meta_path}: missing (no model folder {model})")
    meta = yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}
    emails = [a.get("email") for a in meta.get("authors", []) if isinstance(a, dict) and a.get("email")]
    if not emails:
        raise HarnessError(f"{meta_path}: authors[].email: export needs at least one author email (upstream requires it)")
    sub_dir = paths.submissions_dir() / model
    f = sub_dir / official.submission_filename
    if not f.is_file():
        have = sorted(p.name for p in sub_dir.glob("*.csv.zip"))
        raise HarnessError(f"{f}: missing: {model} has no run on the full {bm.OFFICIAL} split "
                           f"({official.counts_text()}); it has {', '.join(have) or 'no submission'} (a covered subset is "
                           "not exportable). Run `python -m harness run " + model + "` where the store holds the full release")
    read_submission(f, official)
    rec, _ = checked_record(paths.results_dir(), model, official, f)
    name = contribution_name(model)
    if reference_dir is None:
        reference_dir = paths.default_reference_dir()
    if reference_dir and (Path(reference_dir) / name).exists():
        raise HarnessError(f"{Path(reference_dir) / name}: an upstream contribution of this name exists")
    dest = Path(dest_root) / name
    if dest.exists():
        raise HarnessError(f"{dest}: exists; export never overwrites (remove it first)")
    old = submission.read_metadata(sub_dir / "metadata.json")
    doc = {k: old.get(k) for k in UPSTREAM_METADATA}
    project_url = old.get("project_url") or meta.get("project_url") or "https://github.com/kspacing-bench/kspacing-bench"
    doc.update({"model_name": name, "author_email": emails[0], "project_url": project_url,
                "git_url": doc.get("git_url") or [project_url],
                "time_taken_seconds": {official.submission_filename: rec.get("total_seconds")},
                "description": " ".join(str(meta.get("description", "")).split()),
                "kspacing_bench": {"model": model, "benchmark_definition_sha256": official.definition_sha256,
                                   "test_predictions_sha256": rec["sha256"]["test_predictions"]}})
    tmp = Path(dest_root) / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(f, tmp / official.submission_filename)
    submission.write_json(tmp / "metadata.json", doc)
    atomic.write_text(tmp / "run.sh", run_sh(model, official.submission_filename, _commit(), project_url))
    (tmp / "run.sh").chmod(0o755)
    tmp.rename(dest)
    return dest
