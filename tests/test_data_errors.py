"""Bad data: a missing store dir, a corrupt store zip, a broken or overlapping split file.
Each is a one-line error naming the file and the fault, exit code 2, nothing written."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import zipfile

import pytest

from harness import cli, data
from harness.errors import HarnessError
from harness.freeze import DATASET
from harness.split import load_split
from helpers_slice import redirect_outputs, run_cli, write_model

STORE_NAME = "jdft_3d-8-18-2021.json.zip"
MEMBER = STORE_NAME.removesuffix(".zip")


def zipped(member: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, payload)
    return buf.getvalue()


def flipped_real_store(offset: int) -> bytes:
    """The real store with one byte of its compressed stream flipped."""
    real = data._store_file("dft_3d_2021", _real_store_dir())
    with open(real, "rb") as f:
        head = bytearray(f.read(offset + 1))
        rest = f.read()
    head[offset] ^= 0x5A
    return bytes(head) + rest


def _real_store_dir():
    from harness import paths

    d = paths.default_data_dir()
    if d is None or not data._store_file("dft_3d_2021", d).is_file():
        pytest.skip("no local data store (set KSPACING_DATA_DIR)")
    return d


STORES = {
    "garbage": (lambda: b"this is not a zip", r"corrupt dataset file \(BadZipFile: File is not a zip file\)"),
    "empty": (lambda: b"", r"corrupt dataset file \(BadZipFile: File is not a zip file\)"),
    "wrong_member": (lambda: zipped("other.json", b"[]"), r"corrupt dataset file \(KeyError: \"There is no item named"),
    "bad_json": (lambda: zipped(MEMBER, b"[{"), r"corrupt dataset file \(JSONDecodeError: "),
    "not_utf8": (lambda: zipped(MEMBER, b'["\xff"]'), r"corrupt dataset file \(UnicodeDecodeError: "),
    "not_a_list": (lambda: zipped(MEMBER, b"{}"), r"expected a JSON list of entries"),
    "entry_without_atoms": (lambda: zipped(MEMBER, b'[{"jid": "JVASP-1"}]'), r"entry 0: cannot parse structure \('atoms'\)"),
    "deflate_stream_flipped": (lambda: flipped_real_store(100), r"corrupt dataset file \(error: Error -3 while decompressing data"),
    "crc_mismatch": (lambda: flipped_real_store(3_000_000), r"corrupt dataset file \(BadZipFile: Bad CRC-32"),
}


@pytest.mark.parametrize("case", list(STORES))
def test_corrupt_store_is_one_clear_line(case, tmp_path):
    make, pattern = STORES[case]
    store = tmp_path / "store"
    store.mkdir()
    path = store / STORE_NAME
    path.write_bytes(make())
    with pytest.raises(HarnessError) as err:
        data.load_materials(DATASET, store, tmp_path / "cache")
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    assert re.search(pattern, msg), msg
    assert not (tmp_path / "cache").exists()  # nothing cached from a bad file


def test_offline_download_failure_is_one_clear_line(tmp_path, monkeypatch):
    """An existing but empty store dir makes jarvis-tools download; offline that fails cleanly."""
    import requests

    def offline(*a, **k):
        raise requests.exceptions.ConnectionError("Failed to resolve 'figshare.com'")

    monkeypatch.setattr(requests, "get", offline)
    with pytest.raises(HarnessError, match=rf"^{re.escape(str(tmp_path / STORE_NAME))}: cannot load dataset 'dft_3d_2021' "
                       r"\(Failed to resolve 'figshare.com'\)$"):
        data.load_raw("dft_3d_2021", tmp_path)


# --- through the CLI: exit 2, one line, nothing written ------------------------------------


@pytest.fixture()
def scratch(tmp_path, monkeypatch):
    models = tmp_path / "models"
    write_model(models, "t_model", "def make_model(ctx):\n    raise AssertionError('must not be reached')\n")
    redirect_outputs(monkeypatch, tmp_path / "out")
    monkeypatch.setenv("KSPACING_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path, models


@pytest.mark.parametrize("case", ["missing_dir", "garbage", "not_utf8"])
def test_cli_bad_store_exits_2_and_writes_nothing(case, scratch, capsys):
    tmp_path, models = scratch
    store = tmp_path / "store"
    if case != "missing_dir":
        store.mkdir()
        (store / STORE_NAME).write_bytes(STORES[case][0]())
    rc = cli.main(["run", "--all", "--models-dir", str(models), "--data-dir", str(store)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    expected = f"error: {store}: data dir does not exist" if case == "missing_dir" else f"error: {store / STORE_NAME}: "
    assert err.startswith(expected) and "\n" not in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_cli_subprocess_missing_store(tmp_path):
    models = tmp_path / "models"
    write_model(models, "t_model", "def make_model(ctx):\n    raise AssertionError('must not be reached')\n")
    env = {**os.environ, "KSPACING_OUTPUT_DIR": str(tmp_path / "out"), "KSPACING_CACHE_DIR": str(tmp_path / "cache"),
           "KSPACING_MODELS_DIR": str(models), "KSPACING_DATA_DIR": str(tmp_path / "nowhere")}
    proc = run_cli(["run", "--all"], env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'nowhere'}: data dir does not exist"
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


# --- the split file ------------------------------------------------------------------------


@pytest.fixture()
def split_pkg(tmp_path, monkeypatch):
    """A throwaway package holding a split file; returns (load_split arguments, file path)."""
    pkg = tmp_path / "fake_split_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fake_split_pkg", None)
    return ("fake_split_pkg", "split.json.zip"), pkg / "split.json.zip"


def write_split(path, obj) -> None:
    path.write_bytes(zipped("split.json", json.dumps(obj).encode()))


def test_real_split_overlap_is_reported_and_kept_in_test_only():
    split = load_split()
    assert split.overlaps == {"JVASP-96735": ("train", "val", "test")}
    assert all("JVASP-96735" not in split.ids(s) for s in ("train", "val")) and "JVASP-96735" in split.ids("test")


def test_synthetic_overlaps_are_all_reported(split_pkg):
    args, path = split_pkg
    write_split(path, {"train": {"A": 10, "B": 20, "C": 30}, "val": {"B": 20, "D": 40}, "test": {"C": 30, "E": 50}})
    split = load_split(*args)
    assert split.overlaps == {"B": ("train", "val"), "C": ("train", "test")}
    # Each overlapping id stays only in its last split: B in val, C in test.
    assert split.ids("train") == ["A"] and split.ids("val") == ["B", "D"] and split.ids("test") == ["C", "E"]


@pytest.mark.parametrize("content, pattern", [
    (b"garbage", r"cannot read split file \(File is not a zip file\)"),
    (zipped("other.json", b"{}"), r"cannot read split file \(\"There is no item named 'split.json' in the archive\"\)"),
    (zipped("split.json", b"{oops"), r"cannot read split file \(Expecting property name"),
    (zipped("split.json", b'{"train": {}, "test": {}}'), r"split file lacks val$"),
], ids=["not_zip", "wrong_member", "bad_json", "missing_split"])
def test_broken_split_file_is_one_clear_line(split_pkg, content, pattern):
    args, path = split_pkg
    path.write_bytes(content)
    with pytest.raises(HarnessError) as err:
        load_split(*args)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and re.search(pattern, msg), msg
