"""A feature table in chunk files: rows keyed by a string, appended by several processes
at once without locks (each chunk is written atomically under a unique name), merged
when there are many. The structure features' cache (modellib.features.structure)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np

from harness import atomic


class ChunkCache:
    """Rows of ``width`` floats by key, in chunk files ``chunk-*.npz`` (atomic writes),
    each with a short text tag per row. Several processes may add chunks at once; a key
    found twice is the same row."""

    def __init__(self, directory: Path, width: int):
        self.dir = Path(directory)
        self.width = width

    def _files(self) -> list[Path]:
        return sorted(self.dir.glob("chunk-*.npz")) if self.dir.is_dir() else []

    def load(self, wanted: set[str] | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        rows, paths = {}, {}
        for f in self._files():
            try:
                with np.load(f, allow_pickle=False) as z:
                    keys, X, p = z["keys"], z["X"], z["paths"]
            except (OSError, ValueError, KeyError, EOFError):
                continue  # vanished (compacted by another process) or unreadable: recompute
            if X.shape != (len(keys), self.width):
                continue
            for k, x, pp in zip(keys.tolist(), X, p.tolist(), strict=True):
                if wanted is None or k in wanted:
                    rows[k], paths[k] = x, pp
        return rows, paths

    def write(self, keys: list[str], X: np.ndarray, paths: list[str]) -> Path:
        name = f"chunk-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}-{len(keys)}.npz"
        target = self.dir / name
        with atomic.atomic_path(target) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, keys=np.array(keys, dtype="U40"), X=np.asarray(X, dtype=np.float64), paths=np.array(paths, dtype="U16"))
        return target

    def compact(self, max_files: int = 64) -> None:
        """Merge chunks into one file when there are many (readers tolerate the swap)."""
        files = self._files()
        if len(files) <= max_files:
            return
        rows, paths = {}, {}
        merged = []
        for f in files:
            try:
                with np.load(f, allow_pickle=False) as z:
                    for k, x, p in zip(z["keys"].tolist(), z["X"], z["paths"].tolist(), strict=True):
                        rows[k], paths[k] = x, p
                merged.append(f)
            except (OSError, ValueError, KeyError, EOFError):
                continue
        keys = list(rows)
        self.write(keys, np.array([rows[k] for k in keys]), [paths[k] for k in keys])
        for f in merged:
            f.unlink(missing_ok=True)
