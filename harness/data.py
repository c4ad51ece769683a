"""Structures for the split: loaded with jarvis-tools' own figshare loader, parsed
into jarvis ``Atoms``, joined to the split, and cached so a second run does not re-parse."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import zipfile
import zlib
from pathlib import Path

import pandas as pd
from jarvis.core.atoms import Atoms
from jarvis.core.utils import get_cache_dir
from jarvis.db import figshare
from tqdm.auto import tqdm

from harness import atomic
from harness.record import sha256_file
from harness.errors import HarnessError

# Bump when the parsed-cache layout changes.
PARSE_CACHE_VERSION = 1


def _store_file(dataset: str, store_dir: Path) -> Path:
    js_tag = figshare.get_db_info()[dataset][1]
    return Path(store_dir) / f"{js_tag}.zip"


def load_raw(dataset: str, store_dir: Path | None) -> tuple[list[dict], Path]:
    """Entries of ``dataset`` via ``jarvis.db.figshare.data`` (downloads when the store
    lacks the file and we are online). Returns the entries and the zip they came from."""
    if store_dir is not None:
        store_dir = Path(store_dir)
        if not store_dir.is_dir():
            raise HarnessError(f"{store_dir}: data dir does not exist")
    else:
        store_dir = Path(get_cache_dir("jarvis_data"))  # jarvis-tools' own default
    path = _store_file(dataset, store_dir)
    try:
        # figshare.data prints banners; keep our own output readable.
        with contextlib.redirect_stdout(io.StringIO()):
            entries = figshare.data(dataset, store_dir=str(store_dir))
    except (zipfile.BadZipFile, zlib.error, json.JSONDecodeError, UnicodeDecodeError, KeyError, EOFError) as err:
        raise HarnessError(f"{path}: corrupt dataset file ({type(err).__name__}: {err})") from None
    except OSError as err:  # includes requests' ConnectionError when offline
        raise HarnessError(f"{path}: cannot load dataset {dataset!r} ({err})") from None
    if not isinstance(entries, list):
        raise HarnessError(f"{path}: expected a JSON list of entries")
    return entries, path


def parse_atoms(entries: list[dict], source: Path) -> pd.DataFrame:
    rows, index = [], []
    for i, e in enumerate(tqdm(entries, desc="parse structures", unit="struct", leave=False)):
        try:
            jid = str(e["jid"])
            atoms = Atoms.from_dict(e["atoms"])
        except (KeyError, TypeError, ValueError) as err:
            raise HarnessError(f"{source}: entry {i}: cannot parse structure ({err})") from None
        index.append(jid)
        rows.append({"formula": e.get("formula") or atoms.composition.reduced_formula, "atoms": atoms})
    return pd.DataFrame(rows, index=pd.Index(index, name="jid"))


def load_materials(dataset: str, store_dir: Path | None, cache_dir: Path) -> tuple[pd.DataFrame, dict]:
    """All structures of the store as a DataFrame (index jid; formula, atoms) and
    provenance {dataset, file, sha256, n}: the sha256 is what frozen definitions pin. Parsed once per file content, then cached."""
    entries = None
    if store_dir is not None and _store_file(dataset, store_dir).is_file():
        path = _store_file(dataset, store_dir)
    else:
        entries, path = load_raw(dataset, store_dir)
    sha = sha256_file(path)
    cache = Path(cache_dir) / "parsed" / f"{dataset}-{sha[:16]}-v{PARSE_CACHE_VERSION}.pkl"
    if cache.is_file():
        try:
            with open(cache, "rb") as f:
                materials = pickle.load(f)
        except Exception:  # a damaged cache is rebuilt, never trusted
            materials = None
        if isinstance(materials, pd.DataFrame):
            return materials, {"dataset": dataset, "file": path.name, "sha256": sha, "n": len(materials)}
    if entries is None:
        entries, path = load_raw(dataset, store_dir)
    materials = parse_atoms(entries, path)
    if materials.index.has_duplicates:
        dup = materials.index[materials.index.duplicated()][0]
        raise HarnessError(f"{path}: duplicate jid {dup}")
    with atomic.atomic_path(cache) as tmp, open(tmp, "wb") as f:
        pickle.dump(materials, f, protocol=pickle.HIGHEST_PROTOCOL)
    return materials, {"dataset": dataset, "file": path.name, "sha256": sha, "n": len(materials)}
