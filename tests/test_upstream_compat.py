"""Our submission files are read by upstream jarvis_leaderboard code with the same MAE.

Upstream scores a file by the benchmark its name gives (only the official one exists
there; the offline subset is ours and `harness export` refuses it): a subset file is
therefore handed to upstream as the same rows written under the official key, which is
what a run on the official benchmark writes."""

import shutil

import numpy as np
import pytest
from jarvis_leaderboard.rebuild import get_metric_value

from harness import benchmark as bm
from harness import paths, submission
from harness.leaderboard import read_submission
from harness.metrics import regression_metrics

DEFINITIONS = bm.load_all(paths.REPO_ROOT / "benchmarks")
OFFICIAL = next(d for d in DEFINITIONS if d.name == bm.OFFICIAL)
SUBMITTED = sorted((p, d) for d in DEFINITIONS for p in (paths.REPO_ROOT / "submissions").glob("*")
                   if (p / d.submission_filename).is_file())


@pytest.mark.parametrize("folder, definition", SUBMITTED, ids=lambda x: x.name)
def test_upstream_get_metric_value_agrees(folder, definition, tmp_path):
    assert OFFICIAL.contains(definition)
    # Upstream derives names from the path: copy to contributions/<name>/ like the real repo.
    dest = tmp_path / "contributions" / folder.name
    shutil.copytree(folder, dest)
    path = dest / OFFICIAL.submission_filename
    if definition is not OFFICIAL:
        rows = submission.read_csv_zip(dest / definition.submission_filename)
        (dest / definition.submission_filename).unlink()
        submission.write_csv_zip(path, rows.ids, rows.targets, rows.predictions)
    upstream = get_metric_value(csv_path=str(path))
    pred = read_submission(path, definition)
    ids = definition.ids["test"]
    ours = regression_metrics(definition.y("test"), np.array([pred[i] for i in ids]))
    assert upstream["metric"] == "mae" and upstream["num_entries"] == len(ids)
    assert upstream["res"] == pytest.approx(round(ours["mae"], 4), abs=1e-4)
    assert upstream["model_name"] == folder.name
