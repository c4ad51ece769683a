"""Submission files: exact upstream layout, byte-reproducible, wrong ids rejected by name."""

import re
import zipfile

import numpy as np
import pytest

from harness import leaderboard, record, submission
from harness.errors import HarnessError
from harness.leaderboard import read_submission
from helpers_slice import SUBSET_SUBMISSION as KEY


@pytest.fixture()
def valid(tmp_path, task):
    ids, y = task.ids("test"), task.y("test")
    path = tmp_path / "sub" / KEY
    submission.write_csv_zip(path, ids, y, y + 1.0)
    return path, ids, y


def test_layout_is_what_jarvis_leaderboard_expects(valid):
    path, ids, y = valid
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == [KEY.removesuffix(".zip")]
        head = zf.read(zf.namelist()[0]).decode().splitlines()[:2]
    assert head[0] == "id,target,prediction"
    assert head[1].split(",")[0] == ids[0]
    rows = submission.read_csv_zip(path)
    assert rows.ids == ids and np.allclose(rows.predictions, y + 1.0) and np.allclose(rows.targets, y)


def test_same_content_gives_same_bytes_and_no_rewrite(valid):
    path, ids, y = valid
    before = path.read_bytes()
    assert submission.write_csv_zip(path, ids, y, y + 1.0) is False
    assert path.read_bytes() == before


def test_score_is_recomputed_from_truth_not_the_target_column(task, tmp_path):
    # A submitter lying in the target column cannot change the score.
    b = task.benchmark
    ids, y = task.ids("test"), task.y("test")
    subs, results = tmp_path / "submissions", tmp_path / "results"
    for name, targets in (("honest", y), ("liar", y + 1.0)):
        test_file = subs / name / KEY
        val_file = record.results_folder(results, name, b.name) / record.VAL_FILE
        submission.write_csv_zip(test_file, ids, targets, y + 1.0)
        submission.write_csv_zip(val_file, task.ids("val"), task.y("val"), task.y("val") + 1.0)
        record.write(val_file.parent / record.RECORD_FILE, {
            "model": name, "counts": b.counts(), "calibration": {},
            "benchmark": {"name": b.name, "key": b.key, "definition_sha256": b.definition_sha256},
            "sha256": {"test_predictions": record.sha256_file(test_file),
                       "val_predictions": record.sha256_file(val_file), "artifact": None}})
    board, _ = leaderboard.build_board(b, {b.name: b}, subs, results, None, None)
    by = {r.model: r for r in board.rows}
    assert by["honest"].n_test == len(ids)
    assert by["honest"].metrics["mae"] == pytest.approx(1.0) and by["liar"].metrics == by["honest"].metrics


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda i, p: (i[1:], p[1:]), "1 missing id(s): JVASP-"),
        (lambda i, p: (i + ["JVASP-0"], p + [5.0]), "1 extra id(s): JVASP-0"),
        (lambda i, p: (i + [i[0]], p + [p[0]]), "1 duplicate id(s): "),
    ],
    ids=["missing", "extra", "duplicate"],
)
def test_wrong_ids_are_named(valid, task, tmp_path, mutate, message):
    path, ids, y = valid
    new_ids, preds = mutate(list(ids), list(y))
    bad = tmp_path / "bad" / KEY
    submission.write_csv_zip(bad, new_ids, preds, preds)
    with pytest.raises(HarnessError, match=re.escape(message)) as err:
        read_submission(bad, task.benchmark)
    assert str(err.value).startswith(str(bad))
    with pytest.raises(HarnessError, match=re.escape(message.split(":")[0])):
        task.check_predictions("test", new_ids, preds)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "abc", ""])
def test_non_finite_or_non_numeric_prediction_rejected(valid, tmp_path, value):
    path, ids, y = valid
    text = zipfile.ZipFile(path).read(KEY.removesuffix(".zip")).decode().splitlines()
    parts = text[5].split(",")
    parts[2] = value
    text[5] = ",".join(parts)
    bad = tmp_path / "nan" / KEY
    bad.parent.mkdir()
    bad.write_bytes(submission.zip_bytes(KEY.removesuffix(".zip"), ("\n".join(text) + "\n").encode()))
    with pytest.raises(HarnessError, match=rf"{bad}: line 6.*prediction"):
        submission.read_csv_zip(bad)


def test_nan_from_a_model_is_rejected_by_the_task(task):
    ids = task.ids("test")
    preds = np.full(len(ids), 30.0)
    preds[3] = np.nan
    with pytest.raises(HarnessError, match=f"1 non-finite value.*{ids[3]}"):
        task.check_predictions("test", ids, preds)


@pytest.mark.parametrize("value", [0.0, -5.0, 1000.5, 1e6])
def test_non_physical_prediction_from_a_model_is_rejected_by_the_task(task, value):
    ids = task.ids("val")
    preds = np.full(len(ids), 30.0)
    preds[7] = value
    with pytest.raises(HarnessError, match=rf"^val predictions: id {ids[7]}: prediction .* outside the physical range"):
        task.check_predictions("val", ids, preds)
    preds[7] = 1000.0  # the upper bound itself is allowed
    assert task.check_predictions("val", ids, preds)[7] == 1000.0
