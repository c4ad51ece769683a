"""A study's two result files, written the same way by every study: <stem>.md (what
people read, naming the command that made it) and <stem>.json (what tests recompute)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness import atomic


def write(out: Path, stem: str, module: str, argv, res: dict, markdown) -> Path:
    """Write ``out/<stem>.md`` (``markdown(res, command)``) and ``out/<stem>.json``
    atomically; ``argv``: the study's arguments (None: the process's). Returns the .md path."""
    command = f"python -m {module}" + "".join(f" {x}" for x in (argv if argv is not None else sys.argv[1:]))
    atomic.write_text(Path(out) / f"{stem}.md", markdown(res, command))
    atomic.write_text(Path(out) / f"{stem}.json", json.dumps(res, indent=1) + "\n")
    return Path(out) / f"{stem}.md"
