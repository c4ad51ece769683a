"""Every kind of bad submission file gets a one-line error naming the file and the fault.

Data-free (synthetic ids; the split ships with jarvis-leaderboard), so it also runs on
the public CI runner. The CLI checks at the end show that a bad file (or one that is not
what its run record says, or sits in no model's folder) makes `validate` and
`leaderboard` exit non-zero without writing anything."""

from __future__ import annotations

import io
import re
import struct
import zipfile

import pytest

from harness import benchmark as bm
from harness import cli, freeze, record, submission
from harness.errors import HarnessError
from helpers_slice import PER_ATOM_COUNT, SUBMISSION, redirect_outputs, write_model

MEMBER = SUBMISSION.removesuffix(".zip")
IDS = [f"JVASP-{i}" for i in range(1, 21)]
TARGETS = [float(10 + 5 * (i % 7)) for i in range(20)]
PREDS = [t + 0.25 for t in TARGETS]


def good_csv() -> str:
    return submission.csv_bytes(IDS, TARGETS, PREDS).decode()


def zipped(text: str | bytes, member: str = MEMBER) -> bytes:
    return submission.zip_bytes(member, text.encode() if isinstance(text, str) else text)


def with_line(n: int, line: str | None) -> bytes:
    """The valid CSV with line ``n`` (0 = header) replaced (None: removed), zipped."""
    lines = good_csv().splitlines()
    if line is None:
        del lines[n]
    else:
        lines[n] = line
    return zipped("\n".join(lines) + "\n")


def raw_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def patch_headers(data: bytes, local_off: int, central_off: int, fmt: str, value: int) -> bytes:
    """Overwrite one field in both the local and the central header of a one-member zip."""
    b = bytearray(data)
    lo, co = b.find(b"PK\x03\x04"), b.find(b"PK\x01\x02")
    struct.pack_into(fmt, b, lo + local_off, value)
    struct.pack_into(fmt, b, co + central_off, value)
    return bytes(b)


def lying_size() -> bytes:  # header claims 100 bytes, the data inflates to far more
    return patch_headers(zipped(good_csv()), 22, 24, "<I", 100)


def encrypted() -> bytes:  # general-purpose flag bit 0
    return patch_headers(zipped(good_csv()), 6, 8, "<H", 0x1)


def unknown_method() -> bytes:
    return patch_headers(zipped(good_csv()), 8, 10, "<H", 99)


def flipped_crc() -> bytes:
    return patch_headers(zipped(good_csv()), 14, 16, "<I", 0xDEADBEEF)


# (case id, file bytes or a callable writing the file, regex the message must match after "path: ")
CASES = [
    ("missing_id", lambda: with_line(3, None), r"1 missing id\(s\): JVASP-3$"),
    ("extra_id", lambda: zipped(good_csv() + "JVASP-999,10,11\n"), r"1 extra id\(s\): JVASP-999$"),
    ("duplicate_id", lambda: zipped(good_csv() + good_csv().splitlines()[4] + "\n"), r"1 duplicate id\(s\): JVASP-4$"),
    ("nan_prediction", lambda: with_line(2, "JVASP-2,15,nan"), r"line 3 \(id JVASP-2\): prediction is 'nan', must be finite"),
    ("inf_prediction", lambda: with_line(2, "JVASP-2,15,inf"), r"line 3 \(id JVASP-2\): prediction is 'inf', must be finite"),
    ("minus_inf_prediction", lambda: with_line(2, "JVASP-2,15,-Infinity"), r"prediction is '-Infinity', must be finite"),
    ("overflow_prediction", lambda: with_line(2, "JVASP-2,15,1e999"), r"prediction is '1e999', must be finite"),
    ("non_numeric_prediction", lambda: with_line(2, "JVASP-2,15,twelve"), r"line 3: prediction 'twelve' is not a number"),
    ("empty_prediction", lambda: with_line(2, "JVASP-2,15,"), r"line 3: prediction '' is not a number"),
    ("nan_target", lambda: with_line(2, "JVASP-2,NaN,15"), r"line 3 \(id JVASP-2\): target is 'NaN', must be finite"),
    ("wrong_column_name", lambda: with_line(0, "id,target,pred"), r"columns are \['id', 'target', 'pred'\], expected \['id', 'target', 'prediction'\]"),
    ("missing_target_column", lambda: zipped("id,prediction\nJVASP-1,10\n"), r"columns are \['id', 'prediction'\], expected"),
    ("extra_column", lambda: with_line(0, "id,target,prediction,note"), r"columns are \['id', 'target', 'prediction', 'note'\]"),
    ("short_row", lambda: with_line(5, "JVASP-5,15"), r"line 6: expected 3 fields, got 2"),
    ("empty_id", lambda: with_line(5, ",15,16"), r"line 6: empty id"),
    ("id_with_newline", lambda: with_line(5, '"JVASP-5\nX",15,16'), r"line 6: id 'JVASP-5\\nX' is not a JARVIS id"),
    ("empty_file", b"", r"not a zip file \(BadZipFile: File is not a zip file\)"),
    ("plain_csv_not_zipped", good_csv().encode(), r"not a zip file"),
    ("empty_csv_in_zip", lambda: zipped(""), r"CSV is empty$"),
    ("header_only", lambda: zipped("id,target,prediction\n"), r"CSV has a header but no rows$"),
    ("zip_two_members", lambda: raw_zip({MEMBER: good_csv().encode(), "notes.txt": b"hi"}), r"zip must hold exactly one CSV, found 2 members"),
    ("zip_no_members", lambda: raw_zip({}), r"zip must hold exactly one CSV, found 0 members"),
    ("member_parent_path", lambda: zipped(good_csv(), "../" + MEMBER), r"zip member '\.\./.*' must be a bare file name"),
    ("member_absolute_path", lambda: zipped(good_csv(), "/tmp/" + MEMBER), r"zip member '/tmp/.*' must be a bare file name"),
    ("member_in_folder", lambda: zipped(good_csv(), "sub/" + MEMBER), r"zip member 'sub/.*' must be a bare file name"),
    ("member_windows_path", lambda: zipped(good_csv(), "C:\\" + MEMBER), r"must be a bare file name"),
    ("member_wrong_name", lambda: zipped(good_csv(), "predictions.csv"), r"zip member is 'predictions.csv', expected '" + re.escape(MEMBER) + "'"),
    ("zip_bomb", lambda: zipped(b"0" * (submission.MAX_UNCOMPRESSED_BYTES + 1)), r"member uncompressed size \d+ exceeds \d+ bytes"),
    ("zip_lying_size_header", lying_size, r"cannot read zip member \(BadZipFile: Bad CRC-32"),
    ("zip_bad_crc", flipped_crc, r"cannot read zip member \(BadZipFile: Bad CRC-32"),
    ("zip_encrypted_flag", encrypted, r"cannot read zip member \(RuntimeError: File .* is encrypted"),
    ("zip_unknown_compression", unknown_method, r"cannot read zip member \(NotImplementedError: .*compression method"),
    ("zip_truncated", lambda: zipped(good_csv())[:-30], r"not a zip file \(BadZipFile"),
    ("csv_latin1", lambda: zipped(good_csv().replace("JVASP-7,", "JVASP-7é,").encode("latin-1")), r"CSV is not UTF-8 \(byte \d+\)"),
    ("csv_utf16", lambda: zipped(good_csv().encode("utf-16")), r"CSV is not UTF-8 \(byte 0\)"),
    ("csv_nul_bytes", lambda: zipped(good_csv().replace("JVASP-7,", "JVASP-7\x00,")), r"CSV contains NUL bytes"),
    ("csv_huge_field", lambda: with_line(5, "JVASP-5,15," + "1" * 200_000), r"malformed CSV \(field larger than field limit \(131072\)\)"),
]


def write_case(path, make) -> None:
    data = make() if callable(make) else make
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def assert_one_line(err: HarnessError, path) -> str:
    msg = str(err)
    assert "\n" not in msg and "\r" not in msg, msg
    assert msg.startswith(f"{path}: "), msg
    return msg[len(f"{path}: "):]


def test_the_valid_file_passes(tmp_path):
    path = tmp_path / "ok" / SUBMISSION
    write_case(path, zipped(good_csv()))
    rows = submission.validate_file(path, IDS)
    assert rows.ids == IDS and rows.predictions == PREDS


@pytest.mark.parametrize("case,make,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_submission_is_rejected_with_one_line(tmp_path, case, make, pattern):
    path = tmp_path / case / SUBMISSION
    write_case(path, make)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(HarnessError) as err:
        submission.validate_file(path, IDS)
    fault = assert_one_line(err.value, path)
    assert re.search(pattern, fault), fault
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written or extracted


def test_missing_and_oversized_files(tmp_path):
    path = tmp_path / "none" / SUBMISSION
    with pytest.raises(HarnessError) as err:
        submission.validate_file(path, IDS)
    assert assert_one_line(err.value, path) == "file not found"
    big = tmp_path / "big" / SUBMISSION
    big.parent.mkdir()
    with open(big, "wb") as f:  # sparse: no disk cost
        f.truncate(submission.MAX_UNCOMPRESSED_BYTES + 1)
    with pytest.raises(HarnessError) as err:
        submission.validate_file(big, IDS)
    assert re.fullmatch(r"file is \d+ bytes, over the \d+-byte limit", assert_one_line(err.value, big))


def test_many_wrong_ids_are_summarised_on_one_line(tmp_path):
    path = tmp_path / "many" / SUBMISSION
    other = [f"JVASP-{i}" for i in range(100, 130)]
    write_case(path, zipped(submission.csv_bytes(other, [1.0] * 30, [1.0] * 30)))
    with pytest.raises(HarnessError) as err:
        submission.validate_file(path, IDS)
    fault = assert_one_line(err.value, path)
    assert "20 missing id(s): " in fault and "(+15 more)" in fault and "30 extra id(s)" in fault


# --- the CLI: a bad file fails `validate` and `leaderboard`, and nothing is written ----------


def put(out, name: str, ids, truth, preds) -> None:
    """A submission of ``name`` on the scratch definition, with its val file and run record."""
    b = bm.load(bm.SCRATCH, out / "benchmarks")
    test_file = out / "submissions" / name / SUBMISSION
    res = record.results_folder(out / "results", name, b.name)
    submission.write_csv_zip(test_file, ids, truth, preds)
    submission.write_csv_zip(res / record.VAL_FILE, b.ids["val"], b.y("val"), b.y("val"))
    record.write(res / record.RECORD_FILE, {
        "record_version": record.RECORD_VERSION, "model": name, "counts": b.counts(), "calibration": {},
        "benchmark": {"name": b.name, "key": b.key, "definition_sha256": b.definition_sha256},
        "sha256": {"test_predictions": record.sha256_file(test_file),
                   "val_predictions": record.sha256_file(res / record.VAL_FILE), "artifact": None}})


@pytest.fixture()
def scratch_outputs(tmp_path, monkeypatch):
    """A scratch output root: a 20-id definition of real split ids (no lattice), model
    folders good_model and bad_model, each with a submission; bad_model's file has one
    wrong id."""
    from harness.split import load_split

    split = load_split()
    small = {s: split.ids(s)[:20] for s in bm.SPLITS}
    ids = small["test"]
    truth = [split.targets["test"][i] for i in ids]
    out = tmp_path / "out"
    redirect_outputs(monkeypatch, out)
    spec = {**freeze.base_spec(split), "frozen": False, "key": SUBMISSION.removesuffix(".csv.zip"), "store": None,
            "description": "20 ids per split, for a test."}
    bm.write(out / "benchmarks", bm.SCRATCH, bm.definition_files(bm.SCRATCH, spec, small, split.targets, None))
    models = tmp_path / "models"
    monkeypatch.setenv("KSPACING_MODELS_DIR", str(models))
    for name in ("good_model", "bad_model"):
        write_model(models, name, PER_ATOM_COUNT)
        put(out, name, ids, truth, [t + 1 for t in truth])
        submission.write_json(out / "submissions" / name / "metadata.json", {"model_name": name, "kind": "model"})
    bad = out / "submissions" / "bad_model" / SUBMISSION
    good = bad.read_bytes()
    text = zipfile.ZipFile(io.BytesIO(good)).read(MEMBER).decode().replace(f"{ids[3]},", "JVASP-0,", 1)
    bad.write_bytes(zipped(text))
    return out, bad, ids


def _run(argv, capsys):
    rc = cli.main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_validate_names_the_bad_submission(scratch_outputs, capsys):
    out, bad, ids = scratch_outputs
    rc, _, err = _run(["validate"], capsys)
    assert rc == 1
    assert err.strip() == f"{bad}: 1 missing id(s): {ids[3]}; 1 extra id(s): JVASP-0"


def test_cli_validate_rejects_bad_metadata_json(scratch_outputs, capsys):
    out, bad, ids = scratch_outputs
    put(out, "bad_model", ids, [1.0] * 20, [1.0] * 20)
    meta = out / "submissions" / "good_model" / "metadata.json"
    meta.write_text("{not json")
    rc, _, err = _run(["validate"], capsys)
    assert rc == 1
    assert re.fullmatch(rf"{re.escape(str(meta))}: not valid JSON \(JSONDecodeError: .*\)", err.strip())


def _unphysical(out, ids):
    rows = submission.read_csv_zip(out / "submissions" / "good_model" / SUBMISSION)
    put(out, "bad_model", ids, rows.targets, [0.0] + rows.predictions[1:])
    return rf"bad_model/{re.escape(SUBMISSION)}: id {ids[0]}: prediction 0 Å is outside the physical range \(0, 1000\] Å$"


def _off_record(out, ids):
    put(out, "bad_model", ids, [1.0] * 20, [1.0] * 20)
    submission.write_csv_zip(out / "submissions" / "bad_model" / SUBMISSION, ids, [1.0] * 20, [2.0] * 20)
    return rf"bad_model/{re.escape(SUBMISSION)}: does not match sha256\.test_predictions in .*/run\.json"


def _unknown_name(out, ids):
    put(out, "bad_model", ids, [1.0] * 20, [1.0] * 20)
    (out / "submissions" / "bad_model" / "AI-something-else.csv.zip").write_bytes(b"x")
    return r"bad_model/AI-something-else\.csv\.zip: not named by a frozen benchmark key \(known: "


def _orphan(out, ids):
    put(out, "bad_model", ids, [1.0] * 20, [1.0] * 20)
    put(out, "stray_model", ids, [1.0] * 20, [1.0] * 20)
    return r"submissions/stray_model: no model folder models/stray_model/ \(a submission must come from a model folder"


@pytest.mark.parametrize("make", [_unphysical, _off_record, _unknown_name, _orphan],
                         ids=["unphysical", "not_its_record", "unknown_name", "orphan_folder"])
def test_cli_validate_rejects_what_no_run_of_ours_wrote(scratch_outputs, capsys, make):
    out, _, ids = scratch_outputs
    pattern = make(out, ids)
    rc, _, err = _run(["validate"], capsys)
    assert rc == 1
    assert len(err.strip().splitlines()) == 1 and re.search(pattern, err.strip()), err


def test_cli_leaderboard_fails_and_writes_nothing(scratch_outputs, capsys, tmp_path):
    out, bad, ids = scratch_outputs
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    rc, _, err = _run(["leaderboard", "--reference-dir", str(tmp_path / "no-refs")], capsys)
    assert rc == 2
    assert err.strip() == f"error: {bad}: 1 missing id(s): {ids[3]}; 1 extra id(s): JVASP-0"
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # no leaderboard, no README
    # Once the file is fixed (and recorded), the scratch leaderboard builds (README stub with the table).
    put(out, "bad_model", ids, [1.0] * 20, [1.0] * 20)
    rc, stdout, _ = _run(["leaderboard", "--reference-dir", str(tmp_path / "no-refs")], capsys)
    assert rc == 0 and (out / "leaderboard.csv").is_file() and "| good_model |" in (out / "README.md").read_text()
    rc, _, _ = _run(["leaderboard", "--check", "--reference-dir", str(tmp_path / "no-refs")], capsys)
    assert rc == 0
