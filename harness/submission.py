"""JARVIS-Leaderboard submission files: writing them byte-reproducibly and reading
them back defensively (a submission is untrusted input)."""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from harness import atomic
from harness.errors import HarnessError, one_line

COLUMNS = ["id", "target", "prediction"]
# A kpoint submission CSV is ~200 kB for the full test set; anything far larger is hostile.
MAX_UNCOMPRESSED_BYTES = 20 * 1024 * 1024
MAX_ID_CHARS = 64  # JARVIS ids look like JVASP-1002
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamp: same content -> same bytes
# A k-point length must be positive; JARVIS' converged lengths are 10-190 Å and its
# convergence loop stops far below 1,000 Å (L = 1,000 Å on a 2 Å cell is a 500³ mesh).
# Anything outside (0, MAX_LENGTH] is a bug, and would print nonsense in README.md.
MAX_LENGTH = 1000.0


def physical_problem(ids, predictions, where: str) -> str | None:
    """``where: ...`` naming the first prediction outside (0, MAX_LENGTH] Å, or None."""
    for i, p in zip(ids, predictions):
        if not (0.0 < p <= MAX_LENGTH):
            return f"{where}: id {i}: prediction {p:g} Å is outside the physical range (0, {MAX_LENGTH:g}] Å"
    return None


def format_float(x: float) -> str:
    return format(float(x), ".10g")


def csv_bytes(ids, targets, predictions) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for i, t, p in zip(ids, targets, predictions):
        w.writerow([i, format_float(t), format_float(p)])
    return buf.getvalue().encode("utf-8")


def zip_bytes(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(member, date_time=_ZIP_EPOCH)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        zf.writestr(info, data)
    return buf.getvalue()


def csv_zip_bytes(filename: str, ids, targets, predictions) -> bytes:
    """The bytes of a .csv.zip named ``filename``: one CSV named like it without .zip."""
    return zip_bytes(filename.removesuffix(".zip"), csv_bytes(ids, targets, predictions))


def write_csv_zip(path: Path, ids, targets, predictions) -> bool:
    """Write ``path`` (csv_zip_bytes). Returns False when the file already held exactly
    these bytes (left untouched)."""
    return atomic.write_if_changed(path, csv_zip_bytes(Path(path).name, ids, targets, predictions))


def write_json(path: Path, obj: dict) -> None:
    atomic.write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@dataclass(frozen=True)
class SubmissionRows:
    ids: list[str]
    targets: list[float]
    predictions: list[float]


def read_csv_zip(path: Path, reference: bool = False) -> SubmissionRows:
    """Parse a submission .csv.zip; any fault -> HarnessError ``path: fault``."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise HarnessError(f"{where}: file not found")
    if path.stat().st_size > MAX_UNCOMPRESSED_BYTES:
        raise HarnessError(f"{where}: file is {path.stat().st_size} bytes, over the {MAX_UNCOMPRESSED_BYTES}-byte limit")
    try:
        zf = zipfile.ZipFile(path)
    # zipfile raises many types on hostile input (BadZipFile, ValueError, struct.error, ...).
    except Exception as err:
        raise HarnessError(f"{where}: not a zip file ({one_line(err, with_type=True)})") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) != 1:
            raise HarnessError(f"{where}: zip must hold exactly one CSV, found {len(infos)} members")
        info = infos[0]
        name = info.filename
        p = PurePosixPath(name.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts or len(p.parts) != 1 or (len(name) > 1 and name[1] == ":"):
            raise HarnessError(f"{where}: zip member {name!r} must be a bare file name")
        expected = path.name.removesuffix(".zip")
        if name != expected:
            raise HarnessError(f"{where}: zip member is {name!r}, expected {expected!r}")
        if info.file_size > MAX_UNCOMPRESSED_BYTES:
            raise HarnessError(f"{where}: member uncompressed size {info.file_size} exceeds {MAX_UNCOMPRESSED_BYTES} bytes")
        try:
            with zf.open(info) as f:
                raw = f.read(MAX_UNCOMPRESSED_BYTES + 1)  # never trust the header's size alone
        # BadZipFile (CRC), zlib.error, RuntimeError (encrypted), NotImplementedError (method), ...
        except Exception as err:
            raise HarnessError(f"{where}: cannot read zip member ({one_line(err, with_type=True)})") from None
        if len(raw) > MAX_UNCOMPRESSED_BYTES:
            raise HarnessError(f"{where}: member decompresses past {MAX_UNCOMPRESSED_BYTES} bytes")
    return parse_csv(raw, where, reference)


# Some published JARVIS-Leaderboard contributions omit the target column; our own
# submissions must carry it (the upstream format), and truth comes from the split anyway.
REFERENCE_COLUMNS = ["id", "prediction"]


def parse_csv(raw: bytes, where: str, reference: bool = False) -> SubmissionRows:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise HarnessError(f"{where}: CSV is not UTF-8 (byte {err.start})") from None
    if not text.strip():
        raise HarnessError(f"{where}: CSV is empty")
    if "\x00" in text:
        raise HarnessError(f"{where}: CSV contains NUL bytes")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise HarnessError(f"{where}: malformed CSV ({err})") from None
    header = [h.strip() for h in rows[0]]
    if header != COLUMNS and not (reference and header == REFERENCE_COLUMNS):
        raise HarnessError(f"{where}: columns are {header}, expected {COLUMNS}")
    value_cols = header[1:]
    ids, targets, preds = [], [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise HarnessError(f"{where}: line {line}: expected {len(header)} fields, got {len(row)}")
        jid = row[0].strip()
        if not jid:
            raise HarnessError(f"{where}: line {line}: empty id")
        if len(jid) > MAX_ID_CHARS or not jid.isprintable() or any(c.isspace() for c in jid):
            raise HarnessError(f"{where}: line {line}: id {jid[:40]!r} is not a JARVIS id (over {MAX_ID_CHARS} "
                               "characters, or whitespace/control characters)")
        vals = [math.nan] if len(value_cols) == 1 else []
        for col, v in zip(value_cols, row[1:]):
            try:
                x = float(v)
            except ValueError:
                raise HarnessError(f"{where}: line {line}: {col} {v[:30]!r} is not a number") from None
            if not math.isfinite(x):
                raise HarnessError(f"{where}: line {line} (id {jid}): {col} is {v.strip()!r}, must be finite")
            vals.append(x)
        ids.append(jid)
        targets.append(vals[0])
        preds.append(vals[1])
    if not ids:
        raise HarnessError(f"{where}: CSV has a header but no rows")
    return SubmissionRows(ids, targets, preds)


def _ids_problem(expected: list[str], got: list[str], where: str) -> str | None:
    exp, seen = set(expected), set()
    dups = sorted({i for i in got if i in seen or seen.add(i)})
    missing = sorted(exp - set(got))
    extra = sorted(set(got) - exp)
    parts = []
    for label, ids in (("missing", missing), ("extra", extra), ("duplicate", dups)):
        if ids:
            shown = ", ".join(ids[:5]) + (f" (+{len(ids) - 5} more)" if len(ids) > 5 else "")
            parts.append(f"{len(ids)} {label} id(s): {shown}")
    return f"{where}: " + "; ".join(parts) if parts else None


def check_ids(expected: list[str], got: list[str], where: str) -> None:
    problem = _ids_problem(expected, got, where)
    if problem:
        raise HarnessError(problem)


def validate_file(path: Path, expected_ids: list[str]) -> SubmissionRows:
    """A submission of ours: parseable, holding exactly ``expected_ids`` (each once), every
    prediction physical."""
    rows = read_csv_zip(path)
    check_ids(expected_ids, rows.ids, str(path))
    problem = physical_problem(rows.ids, rows.predictions, str(path))
    if problem:
        raise HarnessError(problem)
    return rows


def read_metadata(path: Path) -> dict:
    """A JSON object file (metadata.json, run.json): one-line error when missing or malformed."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HarnessError(f"{path}: not valid JSON ({one_line(err, with_type=True)})") from None
    if not isinstance(meta, dict):
        raise HarnessError(f"{path}: must be a JSON object, got {type(meta).__name__}")
    return meta
