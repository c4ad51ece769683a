"""The benchmark: its description (benchmarks/*.yaml) and its published split."""

from __future__ import annotations

import importlib.resources
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.paths import BENCHMARKS_DIR

DEFAULT_BENCHMARK = "dft_3d_kpoint_length_unit"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    key: str  # JARVIS-Leaderboard result key; the submission file is f"{key}.csv.zip"
    split_package: str
    split_file: str
    dataset: str
    id_key: str
    target: str
    units: str
    metric: str
    published_split_sizes: dict = field(default_factory=dict)

    @property
    def submission_filename(self) -> str:
        return f"{self.key}.csv.zip"

    @property
    def split_path(self) -> Path:
        return Path(str(importlib.resources.files(self.split_package).joinpath(self.split_file)))


def load_spec(name: str = DEFAULT_BENCHMARK) -> BenchmarkSpec:
    path = BENCHMARKS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise HarnessError(f"{path}: no such benchmark description")
    raw = yaml.safe_load(path.read_text())
    try:
        return BenchmarkSpec(**raw)
    except TypeError as err:
        raise HarnessError(f"{path}: {err}") from None


@dataclass(frozen=True)
class Split:
    """The published split as {split: {jid: target}}, plus ids found in several splits."""

    targets: dict[str, dict[str, float]]
    overlaps: dict[str, tuple[str, ...]]  # jid -> the splits it appears in (only when > 1)

    def ids(self, split: str) -> list[str]:
        """Ids of ``split`` in published order. An id in several splits is kept only in
        the last of them (train < val < test), so the test set stays as published and
        nothing evaluated was trained on."""
        later = SPLITS[SPLITS.index(split) + 1:]
        return [i for i in self.targets[split] if not any(s in later for s in self.overlaps.get(i, ()))]


def load_split(spec: BenchmarkSpec) -> Split:
    path = spec.split_path
    try:
        with zipfile.ZipFile(path) as zf:
            raw = json.loads(zf.read(Path(spec.split_file).name.removesuffix(".zip")))
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
    return Split(targets=targets, overlaps=overlaps)
