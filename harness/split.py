"""The published split as shipped in the ``jarvis-leaderboard`` package: the source the
official definition is frozen from (``harness benchmark freeze``), nothing else reads it."""

from __future__ import annotations

import importlib.resources
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.benchmark import SPLITS
from harness.errors import HarnessError

SPLIT_PACKAGE = "jarvis_leaderboard"
SPLIT_FILE = "benchmarks/AI/SinglePropertyPrediction/dft_3d_kpoint_length_unit.json.zip"


@dataclass(frozen=True)
class Split:
    """The published split as {split: {jid: target}}, plus ids found in several splits."""

    targets: dict[str, dict[str, float]]
    overlaps: dict[str, tuple[str, ...]]  # jid -> the splits it appears in (only when > 1)
    source: dict

    def ids(self, split: str) -> list[str]:
        """Ids of ``split`` in published order. An id in several splits is kept only in
        the last of them (train < val < test), so the test set stays as published and
        nothing evaluated was trained on."""
        later = SPLITS[SPLITS.index(split) + 1:]
        return [i for i in self.targets[split] if not any(s in later for s in self.overlaps.get(i, ()))]


def split_path(package: str = SPLIT_PACKAGE, file: str = SPLIT_FILE) -> Path:
    return Path(str(importlib.resources.files(package).joinpath(file)))


def load_split(package: str = SPLIT_PACKAGE, file: str = SPLIT_FILE) -> Split:
    path = split_path(package, file)
    try:
        with zipfile.ZipFile(path) as zf:
            raw = json.loads(zf.read(Path(file).name.removesuffix(".zip")))
    except (OSError, zipfile.BadZipFile, KeyError, json.JSONDecodeError) as err:
        raise HarnessError(f"{path}: cannot read split file ({err})") from None
    missing = [s for s in SPLITS if s not in raw]
    if missing:
        raise HarnessError(f"{path}: split file lacks {', '.join(missing)}")
    try:
        targets = {s: {str(k): float(v) for k, v in raw[s].items()} for s in SPLITS}
    except (AttributeError, TypeError, ValueError) as err:
        raise HarnessError(f"{path}: split targets must be {{id: number}} maps ({err})") from None
    seen: dict[str, list[str]] = {}
    for s in SPLITS:
        for jid in targets[s]:
            seen.setdefault(jid, []).append(s)
    overlaps = {jid: tuple(ss) for jid, ss in sorted(seen.items()) if len(ss) > 1}
    try:
        from importlib.metadata import version

        pkg_version = version(package.replace("_", "-"))
    except Exception:
        pkg_version = "unknown"
    return Split(targets=targets, overlaps=overlaps, source={"package": package, "version": pkg_version, "file": file})
