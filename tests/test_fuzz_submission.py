"""Fuzzing the submission reader with random corruptions of a valid file.

Properties (0 tracebacks in all of them: any exception is a HarnessError whose message
is one line starting with the file's path):
- file-level corruptions (byte flips, truncation, inserted/appended bytes of the zip):
  rejected, or accepted with exactly the original id -> (target, prediction) content;
- structured CSV corruptions (row deletion/duplication/swap, cell replacement, header
  replacement; re-zipped as a well-formed file): rejected, or accepted with exactly the
  content an independent oracle predicts (a numeric cell replaced by something Python's
  float() reads as a finite number is a valid edit, not a corruption, as long as a
  prediction stays physical: 0 < L <= 1000 Å);
- arbitrary CSV bytes: rejected or accepted, never anything else.
Data-free: runs on the public CI runner too."""

from __future__ import annotations

import csv
import io
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import submission
from harness.errors import HarnessError
from helpers_slice import SUBMISSION

MEMBER = SUBMISSION.removesuffix(".zip")
IDS = [f"JVASP-{i}" for i in (1002, 1174, 1183, 1186, 1195, 1198, 1201, 1294, 1312, 1327, 1372, 1393, 1408, 1411, 14615)]
TARGETS = [float(10 + 5 * (k % 9)) for k in range(len(IDS))]
PREDS = [round(t * 1.07 - 0.3, 4) for t in TARGETS]
GOOD_CSV = submission.csv_bytes(IDS, TARGETS, PREDS)
GOOD_ZIP = submission.zip_bytes(MEMBER, GOOD_CSV)
GOOD = {i: (t, p) for i, t, p in zip(IDS, TARGETS, PREDS)}

FUZZ = settings(max_examples=400, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

TOKENS = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e400", "", " ", "abc", "1,5", "1.5.2",
                     "0x10", "1_0", " 12 ", "１２", "None", "null", "\"", "\n", "\r\n", "JVASP-1002", "jvasp-1002",
                     "JVASP-1002 ", "id", "\x00", "\ufeff12", "-", "+", "1e", ".5", "5.", "-0", "1e-320"]),
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / SUBMISSION


def check(path, data: bytes):
    """Write ``data`` and validate; returns the accepted content or None when rejected."""
    path.write_bytes(data)
    try:
        rows = submission.validate_file(path, IDS)
    except HarnessError as err:
        msg = str(err)
        assert msg.startswith(f"{path}: ") and "\n" not in msg and "\r" not in msg, msg
        return None
    return {i: (t, p) for i, t, p in zip(rows.ids, rows.targets, rows.predictions)}


# --- file-level corruption -------------------------------------------------------------

@st.composite
def file_corruption(draw):
    data = bytearray(GOOD_ZIP)
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "append", "delete"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "insert":
        pos = draw(st.integers(0, len(data)))
        data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    elif kind == "append":
        data += draw(st.binary(min_size=1, max_size=64))
    else:
        pos = draw(st.integers(0, len(data) - 1))
        del data[pos: pos + draw(st.integers(1, 16))]
    return kind, bytes(data)


@FUZZ
@given(file_corruption())
def test_file_corruptions_are_rejected_or_harmless(path, corruption):
    kind, data = corruption
    got = check(path, data)
    assert got is None or got == GOOD, (kind, got)


# --- structured CSV corruption (well-formed zip) ---------------------------------------

def _csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


def _finite(token: str):
    try:
        x = float(token)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


@st.composite
def csv_corruption(draw):
    """(csv bytes, expected content or None when it must be rejected)."""
    header = ["id", "target", "prediction"]
    body = [[i, submission.format_float(t), submission.format_float(p)] for i, t, p in zip(IDS, TARGETS, PREDS)]
    kind = draw(st.sampled_from(["delete", "duplicate", "swap", "cell", "header"]))
    n = len(body)
    if kind == "delete":
        del body[draw(st.integers(0, n - 1))]
        return kind, _csv([header] + body), None
    if kind == "duplicate":
        k = draw(st.integers(0, n - 1))
        body.insert(draw(st.integers(0, n)), list(body[k]))
        return kind, _csv([header] + body), None
    if kind == "swap":  # reordering rows is not a corruption
        a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        body[a], body[b] = body[b], body[a]
        return kind, _csv([header] + body), dict(GOOD)
    token = draw(TOKENS)
    if kind == "header":
        col = draw(st.integers(0, 2))
        expect = dict(GOOD) if token.strip() == header[col] and "\x00" not in token else None
        header[col] = token
        return kind, _csv([header] + body), expect
    r, col = draw(st.integers(0, n - 1)), draw(st.integers(0, 2))
    jid = body[r][0]
    body[r][col] = token
    expect = None
    if "\x00" not in token:
        if col == 0:
            expect = dict(GOOD) if token.strip() == jid else None
        elif _finite(token) is not None and (col == 1 or 0.0 < _finite(token) <= submission.MAX_LENGTH):
            t, p = GOOD[jid]
            expect = {**GOOD, jid: (_finite(token), p) if col == 1 else (t, _finite(token))}
    return kind, _csv([header] + body), expect


@FUZZ
@given(csv_corruption())
def test_csv_corruptions_are_rejected_or_exactly_as_predicted(path, corruption):
    kind, data, expect = corruption
    got = check(path, submission.zip_bytes(MEMBER, data))
    assert got == expect, (kind, data[:200])


# --- arbitrary content --------------------------------------------------------------------

@FUZZ
@given(st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda s: s.encode("utf-8")),
    st.tuples(st.integers(0, len(GOOD_CSV)), st.binary(min_size=1, max_size=20)).map(
        lambda t: GOOD_CSV[: t[0]] + t[1] + GOOD_CSV[t[0]:]),
))
def test_arbitrary_csv_bytes_never_crash(path, data):
    check(path, submission.zip_bytes(MEMBER, data))


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_files_never_crash(path, data):
    got = check(path, data)
    assert got is None  # random bytes are never a valid zip holding these ids
