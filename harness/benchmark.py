"""Frozen benchmark definitions: ``benchmarks/<name>/``, written once by
``python -m harness benchmark freeze`` and never by ``run``.

A definition folder holds

* ``benchmark.yaml``: what the benchmark is (key, target, metric, sizes), the sha256 of
  its id lists (``ids_sha256``), the structure store it was frozen against (``store``:
  file name + sha256, or null when any store holding the ids will do) and the sha256 of
  ``lattice.csv`` (null when not yet recorded);
* ``train.csv``, ``val.csv``, ``test.csv``: ``id,target`` in published order;
* ``lattice.csv``: ``id,b1,b2,b3``, the reciprocal lattice lengths (1/Å, no 2π) of the
  val and test ids, so the leaderboard counts k-points without loading structures and
  every machine counts the same (no BLAS last-bit drift).

Every reader checks the hashes; a changed id list or lattice is a one-line error. This
module imports no jarvis-tools, pymatgen or model code (the leaderboard job uses it).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from harness import atomic
from harness.errors import HarnessError, one_line

SPLITS = ("train", "val", "test")
SPEC_FILE = "benchmark.yaml"
LATTICE_FILE = "lattice.csv"
# The official JARVIS-Leaderboard benchmark and the offline subset (O/N compounds).
OFFICIAL = "dft_3d_kpoint_length_unit"
SUBSET = "dft_3d_on_subset_kpoint_length_unit"
# Written by `run --scratch` into its own output root, never into the repository.
SCRATCH = "scratch_kpoint_length_unit"


def _fmt(x: float) -> str:
    return format(float(x), ".10g")


def ids_csv(ids: list[str], targets: dict[str, float]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "target"])
    for i in ids:
        w.writerow([i, _fmt(targets[i])])
    return buf.getvalue().encode()


def lattice_csv(recip: dict[str, list[float]]) -> bytes:
    # repr() round-trips floats exactly: the file is the single source of these numbers.
    lines = ["id,b1,b2,b3"] + [f"{i},{','.join(repr(float(x)) for x in b)}" for i, b in recip.items()]
    return ("\n".join(lines) + "\n").encode()


def ids_hash(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for s in SPLITS:
        h.update(f"{s}\n".encode())
        h.update(files[s])
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Benchmark:
    """One benchmark definition. ``ids[split]`` in published order; ``targets[split]``
    {id: truth}; ``recip`` {id: (3,) array} for val+test ids, or None."""

    name: str
    spec: dict
    ids: dict[str, list[str]]
    targets: dict[str, dict[str, float]]
    recip: dict[str, np.ndarray] | None = field(default=None, repr=False)
    path: Path | None = None

    @property
    def key(self) -> str:
        return self.spec["key"]

    @property
    def submission_filename(self) -> str:
        return f"{self.key}.csv.zip"

    @property
    def definition_sha256(self) -> str:
        return self.spec["ids_sha256"]

    @property
    def store(self) -> dict | None:
        return self.spec.get("store")

    @property
    def frozen(self) -> bool:
        return bool(self.spec.get("frozen", True))

    @cached_property
    def id_sets(self) -> dict[str, frozenset]:
        return {s: frozenset(self.ids[s]) for s in SPLITS}

    def y(self, split: str, ids: list[str] | None = None) -> np.ndarray:
        t = self.targets[split]
        return np.array([t[i] for i in (self.ids[split] if ids is None else ids)], dtype=float)

    def counts(self) -> dict[str, int]:
        return {s: len(self.ids[s]) for s in SPLITS}

    def counts_text(self) -> str:
        full = self.spec.get("published_sizes") or {}
        return ", ".join(f"{s} {len(self.ids[s]):,}" + (f" / {full[s]:,}" if s in full else "") for s in SPLITS)

    def contains(self, other: "Benchmark") -> bool:
        """Every id of ``other`` is in the same split here: a submission for this benchmark
        can be scored on ``other`` too."""
        return all(other.id_sets[s] <= self.id_sets[s] for s in SPLITS)

    def store_problem(self, store_ids, store_sha256: str) -> str | None:
        """Why a structure store cannot produce this benchmark's submissions, or None."""
        if self.store is not None and self.store.get("sha256") != store_sha256:
            return (f"{self.name}: frozen against the store with sha256 {self.store['sha256'][:12]}…, "
                    f"this one is {store_sha256[:12]}…")
        have = set(store_ids)
        missing = {s: sum(i not in have for i in self.ids[s]) for s in SPLITS}
        if any(missing.values()):
            return f"{self.name}: the store lacks " + ", ".join(
                f"{missing[s]:,} of {len(self.ids[s]):,} {s}" for s in SPLITS if missing[s]) + " ids"
        return None


def _read_ids(path: Path) -> tuple[list[str], dict[str, float], bytes]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise HarnessError(f"{path}: cannot read ({err.strerror or err})") from None
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8", errors="replace"))))
    if not rows or rows[0] != ["id", "target"]:
        raise HarnessError(f"{path}: header must be id,target")
    ids, targets = [], {}
    for n, row in enumerate(rows[1:], start=2):
        try:
            jid, t = row[0], float(row[1])
        except (IndexError, ValueError):
            raise HarnessError(f"{path}: line {n}: expected id,number") from None
        if jid in targets:
            raise HarnessError(f"{path}: line {n}: duplicate id {jid}")
        if not math.isfinite(t):
            raise HarnessError(f"{path}: line {n}: target must be finite")
        ids.append(jid)
        targets[jid] = t
    return ids, targets, raw


def _read_lattice(path: Path) -> tuple[dict[str, np.ndarray], bytes]:
    raw = path.read_bytes()
    return _parse_lattice(raw, path), raw


def _parse_lattice(raw: bytes, path) -> dict[str, np.ndarray]:
    out = {}
    for n, line in enumerate(raw.decode().splitlines()[1:], start=2):
        parts = line.split(",")
        try:
            b = np.array([float(x) for x in parts[1:]], dtype=float)
        except ValueError:
            raise HarnessError(f"{path}: line {n}: expected id,b1,b2,b3") from None
        if b.shape != (3,) or not np.all(np.isfinite(b)) or np.any(b <= 0):
            raise HarnessError(f"{path}: line {n}: expected three positive lengths")
        out[parts[0]] = b
    return out


def load(name: str, root: Path) -> Benchmark:
    """The definition ``root/name/``, every hash checked."""
    folder = Path(root) / name
    spec_path = folder / SPEC_FILE
    if not spec_path.is_file():
        raise HarnessError(f"{spec_path}: no such benchmark definition "
                           f"(freeze one with `python -m harness benchmark freeze {name}`)")
    try:
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise HarnessError(f"{spec_path}: not valid YAML ({one_line(err)})") from None
    need = ("name", "key", "target", "metric", "ids_sha256", "sizes")
    if not isinstance(spec, dict) or any(k not in spec for k in need):
        raise HarnessError(f"{spec_path}: must be a mapping with {', '.join(need)}")
    if spec["name"] != name:
        raise HarnessError(f"{spec_path}: name: {spec['name']!r} must equal the folder name {name!r}")
    ids, targets, raw = {}, {}, {}
    for s in SPLITS:
        ids[s], targets[s], raw[s] = _read_ids(folder / f"{s}.csv")
        if len(ids[s]) != spec["sizes"].get(s):
            raise HarnessError(f"{folder / f'{s}.csv'}: {len(ids[s]):,} ids, {SPEC_FILE} says sizes.{s} = {spec['sizes'].get(s)}")
    if ids_hash(raw) != spec["ids_sha256"]:
        raise HarnessError(f"{folder}: the id lists do not match ids_sha256 in {SPEC_FILE}: a frozen definition "
                           "was edited (freeze a new benchmark under a new name instead)")
    recip = None
    lat = spec.get("lattice")
    if lat:
        path = folder / LATTICE_FILE
        if not path.is_file():
            raise HarnessError(f"{path}: missing ({SPEC_FILE} records lattice.sha256)")
        recip, lraw = _read_lattice(path)
        if sha256_bytes(lraw) != lat.get("sha256"):
            raise HarnessError(f"{path}: does not match lattice.sha256 in {SPEC_FILE}")
        if set(recip) != set(ids["val"]) | set(ids["test"]):
            raise HarnessError(f"{path}: must hold exactly the val and test ids")
    return Benchmark(name=name, spec=spec, ids=ids, targets=targets, recip=recip, path=folder)


def names(root: Path) -> list[str]:
    return sorted(p.name for p in Path(root).glob("*") if (p / SPEC_FILE).is_file())


def names_by_size(root: Path) -> list[str]:
    """Definition names, largest test set first, reading only benchmark.yaml (cheap)."""
    sizes = {}
    for n in names(root):
        try:
            spec = yaml.safe_load((Path(root) / n / SPEC_FILE).read_text(encoding="utf-8"))
            sizes[n] = int(spec["sizes"]["test"])
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
            sizes[n] = 0
    return sorted(sizes, key=lambda n: (-sizes[n], n))


def load_all(root: Path) -> list[Benchmark]:
    """Every definition under ``root``, largest test set first (the order ``run`` tries them)."""
    out = [load(n, root) for n in names(root)]
    return sorted(out, key=lambda b: (-len(b.ids["test"]), b.name))


def trained_on(root: Path, store_ids, store_sha256: str, where: str) -> Benchmark:
    """The benchmark ``run`` trains on: the largest frozen definition the store (its ids and
    sha256; ``where`` names it in errors) fully covers."""
    defs = load_all(root)
    if not defs:
        raise HarnessError(f"{root}: no frozen benchmark; run `python -m harness benchmark freeze`")
    problems = []
    for d in defs:
        problem = d.store_problem(store_ids, store_sha256)
        if problem is None:
            return d
        problems.append(problem)
    raise HarnessError(f"{where}: covers no frozen benchmark fully ({'; '.join(problems)}); "
                       "train on what it covers with --scratch DIR (nothing goes to the leaderboard)")


def definition_files(name: str, spec: dict, ids: dict[str, list[str]], targets: dict[str, dict[str, float]],
                     recip: dict[str, list[float]] | None) -> dict[str, bytes]:
    """The bytes of every file of a definition (the spec's hashes filled in)."""
    files = {f"{s}.csv": ids_csv(ids[s], targets[s]) for s in SPLITS}
    spec = {**spec, "name": name, "sizes": {s: len(ids[s]) for s in SPLITS},
            "ids_sha256": ids_hash({s: files[f"{s}.csv"] for s in SPLITS})}
    if recip is not None:
        files[LATTICE_FILE] = lattice_csv(recip)
        spec["lattice"] = {"file": LATTICE_FILE, "ids": "val + test", "units": "1/Angstrom, no 2*pi",
                           "sha256": sha256_bytes(files[LATTICE_FILE])}
    else:
        spec["lattice"] = None
    header = (f"# Frozen benchmark definition, written by `python -m harness benchmark freeze {name}`.\n"
              "# Never edit: readers check ids_sha256 and lattice.sha256.\n")
    files[SPEC_FILE] = (header + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)).encode()
    return files


LATTICE_ULPS = 4  # how far a recomputed |b_i| may sit from the frozen one (relative, in machine epsilons)


def _same_lattice_up_to_rounding(folder: Path, old: dict, new: dict, files: dict[str, bytes]) -> bool:
    """Whether a refreeze differs from the frozen definition only by the rounding of its
    reciprocal lengths: the same spec but for lattice.sha256, the same ids in lattice.csv,
    every |b_i| within LATTICE_ULPS, and the same k-point mesh at every grid length.
    jarvis' norm is a BLAS dot whose rounding is the CPU's: an AMD EPYC recomputes 1 ulp
    off in about 1 cell in 8 of a file frozen on an Intel Xeon, and refusing that as "a
    different definition" would make `benchmark freeze` fail on most machines."""
    from harness.kpoints import GRID, mesh

    strip = lambda spec: {**spec, "lattice": {**(spec.get("lattice") or {}), "sha256": None}}  # noqa: E731
    if not (old.get("lattice") and new.get("lattice") and strip(old) == strip(new)):
        return False
    frozen = _parse_lattice((folder / LATTICE_FILE).read_bytes(), folder / LATTICE_FILE)
    here = _parse_lattice(files[LATTICE_FILE], f"{folder / LATTICE_FILE} (recomputed)")
    if list(frozen) != list(here):
        return False
    a, b = np.array(list(frozen.values())), np.array(list(here.values()))
    if not np.allclose(a, b, rtol=LATTICE_ULPS * np.finfo(float).eps, atol=0):
        return False
    return all(np.array_equal(mesh(a, L), mesh(b, L)) for L in np.arange(GRID, 205.0, GRID))


def write(root: Path, name: str, files: dict[str, bytes], overwrite: bool = False) -> str:
    """Write a definition folder. An existing, different frozen definition is refused
    unless ``overwrite`` (scratch benchmarks only). Returns "written" or "unchanged"."""
    folder = Path(root) / name
    if (folder / SPEC_FILE).is_file():
        same = all((folder / f).is_file() and (folder / f).read_bytes() == b for f, b in files.items())
        if same:
            return "unchanged"
        old = yaml.safe_load((folder / SPEC_FILE).read_text(encoding="utf-8")) or {}
        new = yaml.safe_load(files[SPEC_FILE])
        # The one allowed change: recording the lattice of a definition frozen without it
        # (the official split frozen offline, its lattice added where the full store exists).
        same_ids = all((folder / f"{s}.csv").read_bytes() == files[f"{s}.csv"] for s in SPLITS)
        adds_lattice = (old.get("ids_sha256") == new["ids_sha256"] and not old.get("lattice") and new.get("lattice")
                        and same_ids)
        if not overwrite and same_ids and _same_lattice_up_to_rounding(folder, old, new, files):
            return "unchanged (lattice within rounding of this machine's, same meshes; the frozen bits are kept)"
        if not overwrite and not adds_lattice:
            raise HarnessError(f"{folder}: a different definition is already frozen under this name; frozen "
                               "definitions are never rewritten (freeze under a new name)")
    for f, b in files.items():
        atomic.write_bytes(folder / f, b)
    if LATTICE_FILE not in files:
        (folder / LATTICE_FILE).unlink(missing_ok=True)
    return "written"
