"""A feature table cached in one pickle file: rows keyed by a string, each key computed
once, ever; new rows are appended with an atomic rewrite (a kill never leaves half a file)."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from harness import atomic



def structure_key(atoms) -> str:
    """Content hash of a jarvis ``Atoms`` (lattice, fractional coordinates, elements): the
    row key of every structure feature cache."""
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(atoms.lattice_mat, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(atoms.frac_coords, dtype=np.float64).tobytes())
    h.update("|".join(map(str, atoms.elements)).encode())
    return h.hexdigest()


def cached_rows(path: Path | None, keys: list[str], compute: Callable[[list[str]], pd.DataFrame]) -> pd.DataFrame:
    """The rows of ``keys`` (same order, repeats allowed). Keys missing from the file at
    ``path`` are computed by ``compute(missing keys) -> DataFrame indexed by them``.
    ``path`` None: no cache, everything is computed. A cache that cannot be written
    (read-only, full disk) is used as it is; the new rows are returned, not stored."""
    if path is None:
        return compute(list(dict.fromkeys(keys))).loc[list(keys)]
    cached = pd.DataFrame()
    if path.is_file():
        try:
            cached = pd.read_pickle(path)
        except Exception:  # a damaged cache is rebuilt, never trusted
            cached = pd.DataFrame()
    have = set(cached.index)
    todo = [k for k in dict.fromkeys(keys) if k not in have]
    if todo:
        new = compute(todo)
        cached = pd.concat([cached, new]) if len(cached) else new
        try:
            with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
                pickle.dump(cached, fh, protocol=pickle.HIGHEST_PROTOCOL)
        except OSError:  # a read-only or full cache: the rows are still returned, just not kept
            pass
    return cached.loc[list(keys)]


class UserCacheDir:
    """Mixin for estimators with a ``cache_dir`` parameter. A fitted model carries no path:
    the training cache stays out of the pickle, and after loading, features are cached in
    the user's cache ($KSPACING_CACHE_DIR), resolved when predict runs (an unwritable
    cache is skipped by ``cached_rows``)."""

    def __getstate__(self):
        state = super().__getstate__()
        state["cache_dir"] = None
        return state

    def _cache_dir(self):
        from harness import paths

        return self.cache_dir if self.cache_dir is not None else paths.cache_dir()
