"""The 273 matminer features of the JARVIS-Leaderboard ``matminer_xgboost`` model, fast.

Feature set (as published): 128 structural features from
``SiteStatsFingerprint.from_preset("CoordinationNumber_ward-prb-2017")``,
``SiteStatsFingerprint.from_preset("LocalPropertyDifference_ward-prb-2017")``,
``StructuralHeterogeneity()``, ``MaximumPackingEfficiency()``, ``ChemicalOrdering()``
and 145 compositional features from ``StructureComposition`` of ``Stoichiometry()``,
``ElementProperty.from_preset("magpie")``, ``ValenceOrbital(props=["frac"])``,
``IonProperty(fast=True)``; sites are moved into the unit cell first. Where a stock
featurizer raises, its columns are NaN (matminer's ``ignore_errors=True``).

Engine: stock matminer spends ~3.6 s per structure, mostly re-tessellating the same
structure with 13 A of surrounding atoms and walking neighbor shells in Python. Here each
structure is tessellated once (``structure_voronoi.voronoi_faces``: a smaller, certified
cutoff, or pymatgen's exact point set where that matters) and the five structural
featurizers are evaluated from those faces with numpy, using matminer's own element data
and statistics. The compositional featurizers are matminer's own (they are cheap).
Numbers equal stock matminer's to floating-point rounding (tests/test_structure_features.py).

Cache: every structure is featurized once, ever. Rows are keyed by a hash of the
structure and stored under ``<cache_dir>/features/structure/<set id>/`` (the set id
hashes the feature labels, engine version and matminer/pymatgen versions) in chunk files
written atomically, so an interrupted run keeps its finished chunks and resumes.
Parallelism goes through joblib (any backend, e.g. Dask, via ``joblib.parallel_config``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
import warnings
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from modellib.features.chunk_cache import ChunkCache
from modellib.features.frame_cache import structure_key  # noqa: F401 (re-exported: one hash for every feature cache)

log = logging.getLogger(__name__)

ENGINE_VERSION = 2  # bump when the engine's numbers could change (2: composition memo keyed in element order)
FEATURE_SET = "matminer273"
PREPROCESSING = "jarvis Atoms.pymatgen_converter(); PeriodicSite.to_unit_cell(in_place=True) for every site"

# Column groups: which stock featurizer produced which columns (a failure NaNs one group).
GROUPS = ("cn", "lpd", "sh", "mpe", "co", "stoich", "magpie", "valence", "ion")
GROUP_NAMES = {
    "cn": "SiteStatsFingerprint(CoordinationNumber_ward-prb-2017)",
    "lpd": "SiteStatsFingerprint(LocalPropertyDifference_ward-prb-2017)",
    "sh": "StructuralHeterogeneity",
    "mpe": "MaximumPackingEfficiency",
    "co": "ChemicalOrdering",
    "stoich": "StructureComposition(Stoichiometry)",
    "magpie": "StructureComposition(ElementProperty magpie)",
    "valence": "StructureComposition(ValenceOrbital frac)",
    "ion": "StructureComposition(IonProperty fast)",
}
# Which tessellation produced a row (stored with the row, reported by featurize_structures).
PATHS = ("fast", "exact", "voronoi-failed", "stock-fallback")


def stock_featurizers() -> dict:
    """Fresh instances of the published featurizers, by group, in column order."""
    from matminer.featurizers.composition import ElementProperty, IonProperty, Stoichiometry, ValenceOrbital
    from matminer.featurizers.structure import (
        ChemicalOrdering,
        MaximumPackingEfficiency,
        SiteStatsFingerprint,
        StructuralHeterogeneity,
        StructureComposition,
    )

    return {
        "cn": SiteStatsFingerprint.from_preset("CoordinationNumber_ward-prb-2017"),
        "lpd": SiteStatsFingerprint.from_preset("LocalPropertyDifference_ward-prb-2017"),
        "sh": StructuralHeterogeneity(),
        "mpe": MaximumPackingEfficiency(),
        "co": ChemicalOrdering(),
        "stoich": StructureComposition(Stoichiometry()),
        "magpie": StructureComposition(ElementProperty.from_preset("magpie")),
        "valence": StructureComposition(ValenceOrbital(props=["frac"])),
        "ion": StructureComposition(IonProperty(fast=True)),
    }


@lru_cache(maxsize=1)
def _layout() -> tuple[list[str], dict[str, slice]]:
    """(feature labels, column slice per group). Needs the nine matminer featurizers
    (≈ 3.8 s to build), so it runs on first use, not at import."""
    labels, slices = [], {}
    for g, f in stock_featurizers().items():
        lab = f.feature_labels()
        slices[g] = slice(len(labels), len(labels) + len(lab))
        labels += lab
    return labels, slices


_LAZY = {
    "FEATURE_LABELS": lambda: _layout()[0],
    "GROUP_SLICES": lambda: _layout()[1],
    "N_FEATURES": lambda: len(_layout()[0]),  # 273
    "STRUCTURAL_LABELS": lambda: _layout()[0][: _layout()[1]["co"].stop],  # 128
    "COMPOSITION_LABELS": lambda: _layout()[0][_layout()[1]["stoich"].start :],  # 145
}


def __getattr__(name):  # module constants computed on first access (PEP 562)
    if name in _LAZY:
        return _LAZY[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def to_structure(atoms):
    """The structure the featurizers see: pymatgen, every site moved into the cell."""
    s = atoms.pymatgen_converter()
    for site in s.sites:
        site.to_unit_cell(in_place=True)
    return s


# --------------------------------------------------------------------------- reference


def stock_featurize(atoms) -> np.ndarray:
    """Stock matminer, one structure, as the published pipeline runs it (per-featurizer
    ``featurize_wrapper`` with ``ignore_errors=True``). The reference for tests/benchmarks."""
    s = to_structure(atoms)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in stock_featurizers().values():
            out += list(f.featurize_wrapper((s,), return_errors=False, ignore_errors=True))
    return np.array(out, dtype=float)


# --------------------------------------------------------------------------- engine

_state: dict = {}


def _engine_state() -> dict:
    """Per-process: the stock featurizers (element data, labels) and memo tables."""
    if not _state:
        f = stock_featurizers()
        lpd = f["lpd"].site_featurizer
        _state.update(featurizers=f, lpd=lpd, props={}, comp_memo={})
    return _state


def _site_stats(values: np.ndarray) -> np.ndarray:
    """SiteStatsFingerprint's minimum, maximum, range, mean, avg_dev over sites of each
    column of ``values`` (n_sites, k) -> (k * 5,), PropertyStats' formulas vectorized."""
    v = np.asarray(values, dtype=float).reshape(len(values), -1)
    lo, hi, mean = v.min(axis=0), v.max(axis=0), v.mean(axis=0)
    avg_dev = np.abs(v - mean).mean(axis=0)
    return np.column_stack([lo, hi, hi - lo, mean, avg_dev]).ravel()


def _element_props(symbols: list[str]) -> np.ndarray:
    """LocalPropertyDifference's Magpie properties for these elements (n, 22)."""
    st = _engine_state()
    lpd, cache = st["lpd"], st["props"]
    rows = []
    for sym in symbols:
        if sym not in cache:
            from pymatgen.core import Element

            el = Element(sym)
            cache[sym] = np.array([lpd.data_source.get_elemental_property(el, p) for p in lpd.properties], dtype=float)
        rows.append(cache[sym])
    return np.array(rows)


class _EdgeIndex:
    """Lookup of a face weight by (site, neighbor site, neighbor image) label."""

    def __init__(self, src, nidx, nimg, w, n_sites):
        self.n = n_sites
        self.keys = self._pack(src, nidx, nimg)
        order = np.argsort(self.keys, kind="stable")
        self.keys, self.w = self.keys[order], w[order]

    def _pack(self, src, dst, img):
        img = np.asarray(img, dtype=np.int64) + 2048  # images stay far below 2048 (cutoff 13 A)
        return (((src * self.n + dst) << 36) | (img[:, 0] << 24) | (img[:, 1] << 12) | img[:, 2]).astype(np.int64)

    def get(self, src, dst, img) -> np.ndarray:
        """Weight of that face, 0 where there is none."""
        if len(self.keys) == 0 or len(src) == 0:
            return np.zeros(len(src))
        k = self._pack(src, dst, img)
        pos = np.minimum(np.searchsorted(self.keys, k), len(self.keys) - 1)
        return np.where(self.keys[pos] == k, self.w[pos], 0.0)


def _chemical_ordering(src, nidx, nimg, w, elem_idx, fracs, n) -> list[float]:
    """ChemicalOrdering (shells 1, 2, 3) from the filtered, weighted faces.

    matminer walks every non-backtracking path with VoronoiNN._get_nn_shell_info in
    Python (O(n F^3) dicts). Here the per-element sums are computed over paths of length
    <= 2 plus per-site totals, subtracting the (label-identical) revisits that
    _get_nn_shell_info excludes: a node (site, image) already on the path."""
    n_el = len(fracs)
    onehot = np.eye(n_el)
    # R[x]: per-element weight of all faces of site x (no exclusion)
    R = np.zeros((n, n_el))
    np.add.at(R, (src, elem_idx[nidx]), w)
    lookup = _EdgeIndex(src, nidx, nimg, w, n)
    zero = np.zeros((len(src), 3), dtype=np.int64)
    # shell 1: steps from (i, 0) to a = (a, img1), excluding a == (i, 0)
    ok1 = ~((nidx == src) & (nimg == 0).all(axis=1))
    e1 = np.nonzero(ok1)[0]
    S1 = np.zeros((n, n_el))
    np.add.at(S1, (src[e1], elem_idx[nidx[e1]]), w[e1])
    # shell 2: a -> b, b not in {(i, 0), a}
    i1, a1, img1, w1 = src[e1], nidx[e1], nimg[e1], w[e1]
    ex_i = lookup.get(a1, i1, -img1)  # b == (i, 0)
    ex_a = lookup.get(a1, a1, zero[: len(e1)])  # b == a
    per = R[a1] - ex_i[:, None] * onehot[elem_idx[i1]] - ex_a[:, None] * onehot[elem_idx[a1]]
    S2 = np.zeros((n, n_el))
    np.add.at(S2, i1, w1[:, None] * per)
    # shell 3: enumerate valid 2-paths i -> a -> b, then b -> c with c not in {(i,0), a, b}
    starts = np.searchsorted(src, np.arange(n))
    deg = np.bincount(src, minlength=n)
    cnt = deg[a1]
    p1 = np.repeat(np.arange(len(e1)), cnt)
    e2 = np.repeat(starts[a1], cnt) + np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    i_, a_, imga = i1[p1], a1[p1], img1[p1]
    b_, imgb = nidx[e2], imga + nimg[e2]
    bad_b = ((b_ == i_) & (imgb == 0).all(axis=1)) | ((b_ == a_) & (imgb == imga).all(axis=1))
    keep = ~bad_b
    i_, a_, imga, b_, imgb = i_[keep], a_[keep], imga[keep], b_[keep], imgb[keep]
    w12 = w1[p1][keep] * w[e2][keep]
    cx_i = lookup.get(b_, i_, -imgb)  # c == (i, 0)
    cx_a = lookup.get(b_, a_, imga - imgb)  # c == a
    cx_b = lookup.get(b_, b_, np.zeros_like(imgb))  # c == b
    per3 = R[b_] - cx_i[:, None] * onehot[elem_idx[i_]] - cx_a[:, None] * onehot[elem_idx[a_]] - cx_b[:, None] * onehot[elem_idx[b_]]
    S3 = np.zeros((n, n_el))
    np.add.at(S3, i_, w12[:, None] * per3)
    out = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for S in (S1, S2, S3):
            total = S.sum(axis=1, keepdims=True)
            ordering = 1 - S / total / fracs
            out.append(float(np.abs(ordering).mean()))
    return out


def _max_packing(s) -> float | None:
    """MaximumPackingEfficiency: each site's largest sphere is half its nearest-neighbor
    distance (the nearest atom always shares a Voronoi face, the closest one), so no
    tessellation is needed. None when atoms coincide (stock's outcome then depends on
    qhull; the caller runs stock)."""
    n = len(s)
    r = max(4.0, 2.0 * (s.volume / n) ** (1 / 3))
    while True:
        ci, _pi, _off, d = s.get_neighbor_list(r)
        dmin = np.full(n, np.inf)
        np.minimum.at(dmin, ci, d)
        if np.isfinite(dmin).all():
            break
        r *= 2
    if dmin.min() < 1e-4:
        return None
    max_r = dmin / 2
    return 4.0 / 3.0 * np.pi * np.power(max_r, 3).sum() / s.volume


def _structural(s, out: np.ndarray) -> str:
    """Fill the 128 structural columns of ``out``; return the tessellation path."""
    from modellib.features.structure_voronoi import VoronoiFailure, voronoi_faces

    sl = _layout()[1]
    n = len(s)
    mpe = _max_packing(s)
    if mpe is None:
        out[sl["mpe"]] = _stock_group(s, "mpe")
    else:
        out[sl["mpe"]] = mpe
    try:
        faces = voronoi_faces(s)
    except VoronoiFailure:
        for g in ("cn", "lpd", "sh", "co"):
            out[sl[g]] = np.nan
        return "voronoi-failed"

    # VoronoiNN._extract_nn_info: weight = area / largest area of the cell, keep weight > 0
    maxa = np.zeros(n)
    np.maximum.at(maxa, faces.src, faces.area)
    keep = faces.area > 0 * maxa[faces.src]
    src, nidx, nimg = faces.src[keep], faces.nidx[keep], faces.nimg[keep]
    w = faces.area[keep] / maxa[src]
    sw = np.bincount(src, w, minlength=n)

    # CoordinationNumber(use_weights="effective"): (sum w)^2 / sum w^2
    cn = sw**2 / np.bincount(src, w**2, minlength=n)
    out[sl["cn"]] = _site_stats(cn)

    # LocalPropertyDifference: sum_n w_n |p_n - p_0| / sum_n w_n, per property
    symbols = [site.specie.symbol for site in s]
    P = _element_props(symbols)
    num = np.zeros((n, P.shape[1]))
    np.add.at(num, src, w[:, None] * np.abs(P[nidx] - P[src]))
    lpd = num / sw[:, None]
    out[sl["lpd"]] = _site_stats(lpd)

    # StructuralHeterogeneity
    from matminer.featurizers.utils.stats import PropertyStats

    lengths = 2 * faces.face_dist[keep]
    mean_bond = np.bincount(src, w * lengths, minlength=n) / sw
    bond_var = np.bincount(src, w * np.abs(lengths - mean_bond[src]), minlength=n) / sw / mean_bond
    mean_bond = mean_bond / mean_bond.mean()
    feats = [PropertyStats.avg_dev(mean_bond), mean_bond.max(), mean_bond.min()]
    feats += list(_site_stats(bond_var))
    cell_vol = np.bincount(src, faces.volume[keep], minlength=n)
    feats.append(PropertyStats.avg_dev(cell_vol) / np.mean(cell_vol))
    out[sl["sh"]] = feats

    # ChemicalOrdering
    comp = s.composition
    if len(comp) == 1:
        out[sl["co"]] = [0, 0, 0]
    else:
        elems, fracs = zip(*comp.element_composition.fractional_composition.items())
        pos = {e.symbol: k for k, e in enumerate(elems)}
        elem_idx = np.array([pos[sym] for sym in symbols])
        out[sl["co"]] = _chemical_ordering(src, nidx, nimg, w, elem_idx, np.array(fracs), n)
    return faces.path


def _stock_group(s, group: str) -> list[float]:
    f = _engine_state()["featurizers"][group]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(f.featurize_wrapper((s,), return_errors=False, ignore_errors=True))


def _composition(s, out: np.ndarray) -> None:
    """The 145 compositional columns: matminer's featurizers, memoized per composition."""
    st = _engine_state()
    comp = s.composition
    # Keyed in the composition's own element order: matminer's sums run in that order,
    # so a sorted key would hand out another structure's rounding (worker-history dependent).
    key = tuple((el.symbol, amt) for el, amt in comp.items())
    row = st["comp_memo"].get(key)
    if row is None:
        vals = []
        for g in ("stoich", "magpie", "valence", "ion"):
            vals += _stock_group(s, g)
        row = np.array(vals, dtype=float)
        if len(st["comp_memo"]) > 50_000:
            st["comp_memo"].clear()
        st["comp_memo"][key] = row
    out[_layout()[1]["stoich"].start :] = row


def featurize_structure(atoms) -> tuple[np.ndarray, str]:
    """Our engine, one structure, no cache: (273 features, tessellation path)."""
    s = to_structure(atoms)
    out = np.full(len(_layout()[0]), np.nan)
    _composition(s, out)
    try:
        with np.errstate(all="ignore"):
            path = _structural(s, out)
    except Exception as err:  # an engine bug must not cost a run: stock is always right
        log.warning("structure engine failed on %s (%s: %s); using stock matminer", atoms.composition.reduced_formula, type(err).__name__, err)
        out[: _layout()[1]["co"].stop] = stock_featurize(atoms)[: _layout()[1]["co"].stop]
        path = "stock-fallback"
    return out, path


def _featurize_batch(items: list) -> tuple[list[str], np.ndarray, list[str], float]:
    """joblib task: [(key, atoms)] -> (keys, features, paths, seconds)."""
    t0 = time.perf_counter()
    X = np.empty((len(items), len(_layout()[0])))
    paths = []
    for r, (_key, atoms) in enumerate(items):
        X[r], p = featurize_structure(atoms)
        paths.append(p)
    return [k for k, _ in items], X, paths, time.perf_counter() - t0


# --------------------------------------------------------------------------- cache


def feature_set_id() -> str:
    import matminer

    from harness import numeric_env
    import pymatgen.core

    spec = {
        "set": FEATURE_SET,
        "labels": _layout()[0],
        "engine": ENGINE_VERSION,
        "preprocessing": PREPROCESSING,
        "matminer": matminer.__version__,
        "pymatgen": pymatgen.core.__version__,
        "numeric_env": numeric_env.tag(),
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return f"{FEATURE_SET}-v{ENGINE_VERSION}-{digest}"


def feature_cache_dir(cache_dir: Path | None = None) -> Path:
    from harness.paths import cache_dir as default_cache_dir

    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return base / "features" / "structure" / feature_set_id()


class FeatureCache(ChunkCache):
    """The structure feature rows (273 columns) of one feature set."""

    def __init__(self, directory: Path):
        super().__init__(directory, width=len(_layout()[0]))


# --------------------------------------------------------------------------- public API


def _run_batches(batches: list, n_jobs: int):
    """Results of ``_featurize_batch`` as they complete, on joblib's active backend."""
    from joblib import Parallel, delayed

    try:
        par = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=1)
    except ValueError:  # a backend that cannot stream results (e.g. multiprocessing)
        par = None
    if par is not None:
        yield from par(delayed(_featurize_batch)(b) for b in batches)
        return
    with Parallel(n_jobs=n_jobs, batch_size=1) as par:
        for i in range(0, len(batches), 32):
            yield from par(delayed(_featurize_batch)(b) for b in batches[i : i + 32])


def featurize_structures(
    materials: pd.DataFrame,
    cache_dir: Path | None = None,
    n_jobs: int = 2,
    *,
    batch_size: int = 16,
    flush_every: int = 512,
    progress: bool = True,
    use_cache: bool = True,
) -> pd.DataFrame:
    """The 273 features of every row of ``materials`` (index jid, column ``atoms``).

    Returns a DataFrame (same index, columns FEATURE_LABELS, NaN where a stock featurizer
    fails). Cached rows are read from ``<cache_dir>/features/structure/<set id>/``
    (cache_dir defaults to harness.paths.cache_dir()); the others are computed with joblib
    (``n_jobs`` workers; joblib's active backend, so ``joblib.parallel_config("dask")``
    runs them on a Dask cluster) and appended to the cache every ``flush_every`` rows.
    A summary (``df.attrs["featurize_report"]``) counts cached/computed rows, NaN rows per
    featurizer and tessellation paths."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    atoms_col = materials["atoms"]
    keys = [structure_key(a) for a in atoms_col]
    cache = FeatureCache(feature_cache_dir(cache_dir)) if use_cache else None
    rows, paths = cache.load(set(keys)) if cache is not None else ({}, {})
    n_cached = sum(1 for k in set(keys) if k in rows)
    todo, seen = [], set()
    for k, a in zip(keys, atoms_col, strict=True):
        if k not in rows and k not in seen:
            seen.add(k)
            todo.append((k, a))
    # big structures first: better load balance, honest ETA
    todo.sort(key=lambda ka: -len(ka[1].elements))

    computed_s = 0.0
    if todo:
        batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        pending_k, pending_X, pending_p = [], [], []

        def flush():
            if cache is not None and pending_k:
                cache.write(pending_k, np.vstack(pending_X), pending_p)
            pending_k.clear(), pending_X.clear(), pending_p.clear()

        bar = tqdm(total=len(todo), desc="structure features", unit="struct", disable=not progress, smoothing=0.05)
        try:
            for bkeys, X, bpaths, secs in _run_batches(batches, n_jobs):
                computed_s += secs
                for k, x, p in zip(bkeys, X, bpaths, strict=True):
                    rows[k], paths[k] = x, p
                pending_k.extend(bkeys), pending_X.append(X), pending_p.extend(bpaths)
                if len(pending_k) >= flush_every:
                    flush()
                bar.update(len(bkeys))
        finally:
            flush()  # also on interrupt: finished rows are kept
            bar.close()
        if cache is not None:
            cache.compact()

    X = np.vstack([rows[k] for k in keys]) if keys else np.empty((0, len(_layout()[0])))
    df = pd.DataFrame(X, index=materials.index, columns=_layout()[0])
    wall = time.perf_counter() - t0
    nan_rows = {g: int(np.isnan(X[:, _layout()[1][g]]).any(axis=1).sum()) for g in GROUPS}
    report = {
        "n": len(keys),
        "unique": len(set(keys)),
        "from_cache": n_cached,
        "computed": len(todo),
        "wall_s": round(wall, 2),
        "rate_per_s": round(len(todo) / wall, 2) if todo else None,
        "worker_s_per_structure": round(computed_s / len(todo), 4) if todo else None,
        "nan_rows": {g: c for g, c in nan_rows.items() if c},
        "rows_with_nan": int(np.isnan(X).any(axis=1).sum()),
        "paths": dict(Counter(paths[k] for k in keys)),
        "cache": str(cache.dir) if cache is not None else None,
    }
    df.attrs["featurize_report"] = report
    msg = (
        f"structure features: {report['n']} rows ({n_cached} cached, {len(todo)} computed in {wall:.1f} s); "
        f"{report['rows_with_nan']} rows with NaN features"
        + (" (" + ", ".join(f"{GROUP_NAMES[g]}: {c}" for g, c in report["nan_rows"].items()) + ")" if report["nan_rows"] else "")
    )
    log.info(msg)
    if progress:
        print(msg, file=sys.stderr)
    return df


__all__ = [
    "FeatureCache",
    "feature_cache_dir",
    "featurize_structure",
    "featurize_structures",
    "stock_featurize",
    "structure_key",
    "to_structure",
]
