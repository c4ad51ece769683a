"""Our submission files are read by upstream jarvis_leaderboard code with the same MAE."""

import shutil

import pytest
from jarvis_leaderboard.rebuild import get_metric_value

from harness.benchmark import load_spec
from harness.leaderboard import score_file
from harness.paths import SUBMISSIONS_DIR

SUBMITTED = sorted(p for p in SUBMISSIONS_DIR.glob("*") if (p / load_spec().submission_filename).is_file())


@pytest.mark.parametrize("folder", SUBMITTED, ids=lambda p: p.name)
def test_upstream_get_metric_value_agrees(folder, task, tmp_path):
    spec = load_spec()
    # Upstream derives names from the path: copy to contributions/<name>/ like the real repo.
    dest = tmp_path / "contributions" / folder.name
    shutil.copytree(folder, dest)
    upstream = get_metric_value(csv_path=str(dest / spec.submission_filename))
    ours, n = score_file(dest / spec.submission_filename, task.split, task.ids("test"), exact=True)
    assert upstream["metric"] == "mae" and upstream["num_entries"] == n
    assert upstream["res"] == pytest.approx(round(ours["mae"], 4), abs=1e-4)
    assert upstream["model_name"] == folder.name
