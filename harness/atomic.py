"""Atomic file writes: a reader (or a kill -9) never sees a half-written file."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path in the same folder; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_if_changed(path: str | Path, data: bytes | str) -> bool:
    """Write ``data`` unless ``path`` already holds exactly these bytes (then it is left
    untouched: same mtime, clean `git status`). Returns whether it was written."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    path = Path(path)
    if path.is_file() and path.read_bytes() == data:
        return False
    write_bytes(path, data)
    return True
