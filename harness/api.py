"""Python API: converged k-point length, its calibrated safe bound and the k-meshes
they give, for structures in memory or on disk.

    from harness.api import predict_kpoints

    [p] = predict_kpoints(structure)  # pymatgen Structure, ASE Atoms, jarvis Atoms or a POSCAR/CIF path
    p.safe_mesh, p.safe_length        # e.g. (8, 8, 8), 45.0
    p.vasp_kpoints(), p.qe_card(), p.ase_kpts()

The model is one trained by ``python -m harness run NAME`` (nothing is retrained), loaded
through ``harness.fitted.load_fitted``; by default the best-ranked of ours in
leaderboard.csv that has a saved artifact, else ``rf_composition``. The safe length is
a conformal upper bound at level 1 - alpha calibrated on the model's val predictions: per
group (metals / non-metals, small / large cells, each crystal system; ``harness.group_bound``)
for models with a metallicity estimate, else the marginal L90 (``harness.conformal``: ŷ + q̂
floored to the 5 Å grid); out of the training domain never below the conservative rule of
``harness.domain``. Meshes are jarvis'
n_i = max(1, int(L·|b_i| + 0.5)) (``harness.kpoints``), Gamma-centred.

Every structure is checked first (``harness.structure_io.check``): a refused one gets
``error`` (or raises, with ``errors="raise"``); a molecule in a box gets the Γ-only mesh
without a model; ``flags`` name where a structure lies outside the training data.
Heavy imports stay inside functions: importing this module is cheap.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness import structure_io as sio
from harness.errors import HarnessError, one_line

DEFAULT_ALPHA = 0.1
# Structures per estimator.predict call: bounded memory, and a progress line between calls.
BATCH_STRUCTURES = 256
BATCH_ATOMS = 20_000
NOTICE_AFTER_S = 2.0  # a step that runs longer than this prints a progress line on stderr


@dataclass
class KpointPrediction:
    """One structure's result. Lengths in Å; meshes Gamma-centred (n1, n2, n3); counts
    n1·n2·n3 (Python ints, before symmetry reduction). ``safe_*`` is the calibrated
    upper bound (None when the model has no calibration); ``flags``: code -> message,
    where the structure lies outside the training data; ``error``: why it was refused."""

    id: str
    source: str | None = None  # the file it was read from
    block: str | None = None  # its CIF data block, in a multi-block file
    formula: str | None = None
    n_atoms: int | None = None
    model: str | None = None
    alpha: float = DEFAULT_ALPHA
    predicted_length: float | None = None
    safe_length: float | None = None
    mesh: tuple[int, int, int] | None = None
    safe_mesh: tuple[int, int, int] | None = None
    kpoints: int | None = None
    safe_kpoints: int | None = None
    dimensionality: int | None = None  # 3: bulk, predicted; 0: molecule, Γ-only
    flags: dict = field(default_factory=dict)
    domain: dict | None = None  # harness.domain report: in_domain, flags, details (bulk structures)
    bound: str | None = None  # how safe_length was set: "per-group" (harness.group_bound) or "marginal" (L90)
    group: dict | None = None  # its metal / size / system labels, with the per-group bound
    error: str | None = None
    write_error: str | None = None  # its output files could not be written (CLI); the prediction stands
    files: list = field(default_factory=list)  # files written for it (CLI)

    @property
    def ok(self) -> bool:
        return self.error is None

    def mesh_for(self, which: str = "safe") -> tuple[tuple[int, int, int], float | None]:
        """(mesh, length) of the safe (default) or the predicted length."""
        if self.error:
            raise HarnessError(self.error)
        if self.dimensionality == 0:
            return self.mesh, None
        if which == "safe":
            if self.safe_mesh is None:
                raise HarnessError(f"{self.id}: no calibrated safe length ({self.flags.get('uncalibrated', 'no calibration')}); "
                                   f"which='predicted' gives the raw prediction, which can be too short")
            return self.safe_mesh, self.safe_length
        if which == "predicted":
            return self.mesh, self.predicted_length
        raise HarnessError(f"which={which!r}: 'safe' or 'predicted'")

    def vasp_kpoints(self, which: str = "safe") -> str:
        """The text of a VASP KPOINTS file (automatic, Gamma-centred)."""
        from harness import kpoint_outputs

        return kpoint_outputs.render("vasp", self, which)

    def qe_card(self, which: str = "safe") -> str:
        """The Quantum ESPRESSO ``K_POINTS automatic`` card."""
        from harness import kpoint_outputs

        return kpoint_outputs.qe_card(self.mesh_for(which)[0])

    def ase_kpts(self, which: str = "safe") -> dict:
        """``kpts`` for an ASE calculator: ``{"size": [n1, n2, n3], "gamma": True}``."""
        from harness import kpoint_outputs

        return kpoint_outputs.ase_kpts(self.mesh_for(which)[0])

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in ("mesh", "safe_mesh"):
            d[k] = None if d[k] is None else list(d[k])
        d["flags"], d["files"] = dict(self.flags), list(self.files)
        d["domain"] = self.domain
        return d


# ---------------------------------------------------------------- progress


class Progress:
    """Progress lines on stderr for steps that run longer than NOTICE_AFTER_S (and for
    every later step once the run has been going that long)."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream
        self.t0 = self._last = time.monotonic()

    def tick(self, done: int, total: int, what: str) -> None:
        """``what: done of total``, at most every NOTICE_AFTER_S, once the run is that old."""
        now = time.monotonic()
        if self.enabled and now - self.t0 >= NOTICE_AFTER_S and now - self._last >= NOTICE_AFTER_S:
            self._last = now
            self._print(f"{what}: {done:,} of {total:,}")

    def _print(self, text: str) -> None:
        print(f"kspacing: {text}", file=self.stream or sys.stderr, flush=True)

    @contextmanager
    def step(self, what: str):
        if not self.enabled:
            yield
            return
        start = time.monotonic()
        shown = threading.Event()

        def show():
            shown.set()
            self._print(f"{what} ...")

        if start - self.t0 >= NOTICE_AFTER_S:
            show()
            timer = None
        else:
            timer = threading.Timer(NOTICE_AFTER_S, show)
            timer.daemon = True
            timer.start()
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()
            if shown.is_set():
                self._print(f"{what}: done in {time.monotonic() - start:.1f} s")


# ---------------------------------------------------------------- model


def default_model(leaderboard_csv: Path | None = None, cache_dir: Path | None = None,
                  models_dir: Path | None = None, results_dir: Path | None = None) -> str:
    """The model used when none is named: ``harness.fitted.default_model`` (the best-ranked
    of ours in leaderboard.csv with a saved artifact, else rf_composition)."""
    from harness import fitted

    return fitted.default_model(leaderboard_csv, cache_dir=cache_dir, models_dir=models_dir, results_dir=results_dir)


_CACHE_PARAMS = ("cache_dir", "feature_cache_dir")


def _use_current_cache(estimator) -> None:
    """Features of new structures go to the caller's cache ($KSPACING_CACHE_DIR, resolved
    when they are computed; skipped when it cannot be written), never to a path saved in
    an artifact: a model fitted elsewhere must not write into its training cache."""
    for name in _CACHE_PARAMS:
        if getattr(estimator, name, None) is not None:
            setattr(estimator, name, None)


def load_model(name: str | None = None, *, cache_dir: Path | None = None, models_dir: Path | None = None,
               results_dir: Path | None = None, progress: bool = True):
    """The ``harness.fitted.Fitted`` of a model trained by ``harness run NAME`` (default:
    ``default_model()``): ``.estimator``, ``.calibrated``, ``.offset(alpha)``. Pass it as
    ``model=`` to reuse it across calls (loading takes seconds)."""
    from harness import fitted

    name = name or default_model(cache_dir=cache_dir, models_dir=models_dir, results_dir=results_dir)
    with Progress(progress).step(f"loading model {name}"):
        f = fitted.load_fitted(name, cache_dir=cache_dir, models_dir=models_dir, results_dir=results_dir)
    _use_current_cache(f.estimator)
    return f


# ---------------------------------------------------------------- inputs


def _is_single(obj) -> bool:
    return isinstance(obj, (str, Path)) or sio.is_structure(obj)


def _file_ids(sources: list[str]) -> list[str]:
    names = [Path(s).name for s in sources]
    return [n if names.count(n) == 1 else s for n, s in zip(names, sources)]


def collect(structures, ids: list[str] | None = None, max_atoms: int = sio.MAX_ATOMS,
            max_file_bytes: int = sio.MAX_FILE_BYTES, progress: bool = False) -> list[sio.Item]:
    """Read (files) or convert (objects) and check every structure; a refused one is an
    Item with ``error``. A multi-block CIF gives one Item per structure block."""
    if _is_single(structures):
        structures = [structures]
    structures = list(structures)
    if ids is not None and len(ids) != len(structures):
        raise HarnessError(f"{len(ids)} ids for {len(structures)} structures")
    file_pos = [k for k, s in enumerate(structures) if isinstance(s, (str, Path))]
    fids = dict(zip(file_pos, _file_ids([str(structures[k]) for k in file_pos])))
    items: list[sio.Item] = []
    bar = Progress(progress)
    for k, obj in enumerate(structures):
        bar.tick(k, len(structures), "reading and checking structures")
        if isinstance(obj, (str, Path)):
            items += _collect_file(Path(obj), str(ids[k]) if ids else fids[k], max_atoms, max_file_bytes)
            continue
        jid = str(ids[k]) if ids else f"structure{k}"
        it = sio.Item(id=jid)
        try:
            atoms, dim = sio.from_object(obj, jid)
            if dim == 0:
                it.formula, it.n_atoms = sio.molecule_info(obj)
                it.dimensionality = 0
                it.flags["molecule_gamma_only"] = "0D: a non-periodic object (a molecule): the Γ point alone samples it"
            else:
                _check(it, atoms, max_atoms)
        except HarnessError as err:
            it.error = str(err) if str(err).startswith(f"{jid}: ") else f"{jid}: {err}"
        items.append(it)
    return items


def _collect_file(path: Path, fid: str, max_atoms: int, max_file_bytes: int) -> list[sio.Item]:
    try:
        entries = sio.read_file(path, max_file_bytes, max_atoms)
    except HarnessError as err:
        return [sio.Item(id=fid, source=str(path), error=str(err))]
    out = []
    for block, atoms, flags in entries:
        it = sio.Item(id=fid if block is None else f"{fid}#{block}", source=str(path), block=block, flags=dict(flags))
        if isinstance(atoms, HarnessError):
            it.error = str(atoms)
        else:
            try:
                _check(it, atoms, max_atoms)
            except HarnessError as err:
                it.error = str(err)
        out.append(it)
    return out


def _where(it: sio.Item) -> str:
    if it.source is None:
        return it.id
    return it.source if it.block is None else f"{it.source}#{it.block}"


def _check(it: sio.Item, atoms, max_atoms: int) -> None:
    dim, flags = sio.check(atoms, _where(it), max_atoms)
    it.atoms, it.dimensionality = atoms, dim
    it.flags.update(flags)
    it.formula, it.n_atoms = atoms.composition.reduced_formula, int(atoms.num_atoms)


# ---------------------------------------------------------------- predict


def _batches(items: list[sio.Item]) -> list[list[sio.Item]]:
    out, cur, atoms = [], [], 0
    for it in items:
        if cur and (len(cur) >= BATCH_STRUCTURES or atoms + it.n_atoms > BATCH_ATOMS):
            out.append(cur)
            cur, atoms = [], 0
        cur.append(it)
        atoms += it.n_atoms
    if cur:
        out.append(cur)
    return out


def _estimate(estimator, batch: list[sio.Item], name: str, near: bool = False) -> list[float | str]:
    """Predicted lengths of a batch (one estimator.predict call); when that fails, each
    structure alone, so one structure the model cannot handle fails alone. ``near``: of
    the Items' near-symmetry cells (Item.near_cell) instead of their model cells."""
    import numpy as np
    import pandas as pd

    def frame(its):
        # The model sees each crystal's standardized primitive cell: the same crystal gets
        # the same length in whatever cell, orientation or site order it was given.
        cells = [i.near_cell if near else i.model_cell for i in its]
        return pd.DataFrame({"formula": [i.formula for i in its], "atoms": cells},
                            index=pd.Index([i.id for i in its], name="jid"))

    try:
        y = np.asarray(estimator.predict(frame(batch)), dtype=float).ravel()
        if len(y) != len(batch):
            raise ValueError(f"{len(y)} predictions for {len(batch)} structures")
        return [float(v) for v in y]
    except Exception as err:  # contributor models raise anything
        if len(batch) > 1:
            return [r for it in batch for r in _estimate(estimator, [it], name, near)]
        return [f"model {name} failed on this structure ({type(err).__name__}: {one_line(err)})"]


class _Continuous:
    """An estimator's ``predict_continuous`` seen as ``predict`` (for _estimate)."""

    def __init__(self, estimator):
        self.estimator = estimator

    def predict(self, X):
        return self.estimator.predict_continuous(X)


def _p_metal(fitted, items: list) -> list[float] | None:
    """P(metal) of each Item's formula from the model's metallicity estimate (None without one)."""
    met = getattr(fitted.estimator, "metallicity_", None)
    if met is None or not hasattr(met, "predict_proba_metal"):
        return None
    return [float(v) for v in met.predict_proba_metal([it.formula for it in items])]


def _domain_reports(fitted, items: list, p_metal) -> list:
    """harness.domain reports of bulk Items against the training set of ``fitted``'s
    benchmark (results/domain/<benchmark>.json); Nones without a profile. Each on the
    canonical cell the model sees: a supercell of a training crystal is not "more atoms
    than training", and the vacuum gaps do not depend on the cell the user chose."""
    from harness import domain

    path = domain.default_profile_path(getattr(fitted, "benchmark", "") or "")
    if not getattr(fitted, "benchmark", "") or not path.is_file():
        return [None] * len(items)
    profile = domain.load_profile(path)
    return domain.check_many([it.model_cell for it in items], [it.formula for it in items], profile, p_metal=p_metal)


def _group_bound(y: float, cell, p_metal: float, params: dict, point: float) -> tuple[float, dict]:
    """Per-group safe length and labels of one structure, both from ``cell``, the canonical
    cell the model saw (so that they do not depend on the user's choice of cell); its mesh
    is never coarser than that of the recommended length ``point``."""
    from harness import domain, group_bound
    from harness.kpoints import reciprocal_lengths

    [lab] = group_bound.groups_of([cell.num_atoms], [domain.spacegroup_number(cell)], [p_metal])
    L = group_bound.bound([y], [reciprocal_lengths(cell.lattice_mat)], [lab], params, point=[point])
    return float(L[0]), lab


def _safe_length(yb: float, cell, p_metal, rep, offset: float, params, point: float) -> tuple[float, dict | None]:
    """(safe length, per-group labels or None) of one reading (ŷ and the canonical cell it
    came from; ``point`` the recommended length): in domain the per-group bound (or L90
    without per-group calibration), out of domain never below the conservative rule of
    harness.domain (chosen by leave-chemistry-out evaluation, results/lco/lco.md)."""
    from harness import conformal, domain

    L = float(conformal.upper_bound(yb, offset)) if rep is None else float(domain.safe_length(yb, offset, rep))
    if params is None or p_metal is None:
        return L, None
    gL, group = _group_bound(yb, cell, p_metal, params, point)
    return (gL if rep is None or rep.in_domain else max(gL, L)), group


def _near_readings(fitted, items: list[sio.Item], bulk: list[int]) -> dict[int, float | str]:
    """{position in ``bulk``: ŷ (continuous where the bound is calibrated on it) of the
    near-symmetry cell} for the bulk Items that have one (sio.NEAR_SYMPREC)."""
    pos = [n for n, k in enumerate(bulk) if items[k].near_cell is not None]
    if not pos:
        return {}
    view = _Continuous(fitted.estimator) if getattr(fitted, "continuous", False) else fitted.estimator
    got = []
    for batch in _batches([items[bulk[n]] for n in pos]):
        got += _estimate(view, batch, fitted.name, near=True)
    return dict(zip(pos, got))


def _near_note(it: sio.Item, L: float, L_near: float) -> str:
    from harness import domain

    sg, sg_near = domain.spacegroup_number(it.model_cell), domain.spacegroup_number(it.near_cell)
    return (f"within {sio.NEAR_SYMPREC:g} Å of space group {sg_near} ({domain.crystal_system(sg_near)}), which "
            f"{sio.CANONICAL_SYMPREC:g} Å reads as {sg} ({domain.crystal_system(sg)}): the safe length is the larger "
            f"of the two readings ({L:g} and {L_near:g} Å); symmetrize the structure for the ideal crystal's answer")


def predict_items(items: list[sio.Item], fitted=None, alpha: float = DEFAULT_ALPHA,
                  progress: bool = True, per_group: bool = True) -> list[KpointPrediction]:
    """Predictions for checked Items with a loaded ``Fitted`` (needed only when some
    Item is a bulk structure). ``per_group``: the safe length holds per group (metal /
    size / crystal system, harness.group_bound) where the model allows it, else the
    marginal L90."""
    from harness.kpoints import reciprocal_lengths

    if not 0 < alpha < 1:
        raise HarnessError(f"alpha = {alpha}: must be between 0 and 1 (0.1: a 90 % bound)")
    preds = [KpointPrediction(id=it.id, source=it.source, block=it.block, formula=it.formula, n_atoms=it.n_atoms,
                              alpha=alpha, dimensionality=it.dimensionality, flags=dict(it.flags), error=it.error)
             for it in items]
    for p in preds:
        if p.ok and p.dimensionality == 0:
            p.mesh = p.safe_mesh = (1, 1, 1)
            p.kpoints = p.safe_kpoints = 1
    bulk = [k for k, it in enumerate(items) if it.error is None and it.dimensionality == 3]
    if not bulk:
        return preds
    if fitted is None:
        raise HarnessError("no model given for the bulk structures")
    offset, problem = None, None
    if fitted.calibrated:
        try:
            offset = fitted.offset(alpha)
        except HarnessError as err:
            problem = str(err)
    else:
        problem = fitted.problem or f"{fitted.name}: no calibration data"
    bar = Progress(progress)
    batches = _batches([items[k] for k in bulk])
    done, lengths = 0, []
    for b, batch in enumerate(batches):
        n_atoms = sum(it.n_atoms for it in batch)
        what = (f"predicting {len(batch):,} structure(s) ({n_atoms:,} atoms) with {fitted.name}"
                + (f", batch {b + 1} of {len(batches)} ({done:,} of {len(bulk):,} done)" if len(batches) > 1 else ""))
        with bar.step(what):
            lengths += _estimate(fitted.estimator, batch, fitted.name)
        done += len(batch)
    p_metal = _p_metal(fitted, [items[k] for k in bulk])
    reports = _domain_reports(fitted, [items[k] for k in bulk], p_metal)
    params, why_marginal = None, "asked for (--marginal)"
    if per_group and offset is not None:
        try:
            params = fitted.group_params(alpha) if hasattr(fitted, "group_params") else None
            why_marginal = getattr(fitted, "group_problem", None) or "no per-group calibration for this model"
        except HarnessError as err:
            why_marginal = str(err)
    cont = [None] * len(bulk)
    if getattr(fitted, "continuous", False):  # the bound is calibrated on the continuous prediction
        cont, view = [], _Continuous(fitted.estimator)
        for batch in batches:
            cont += _estimate(view, batch, fitted.name)
    near = _near_readings(fitted, items, bulk) if offset is not None else {}
    for n, (k, y, rep, yc) in enumerate(zip(bulk, lengths, reports, cont)):
        p, it = preds[k], items[k]
        p.model = fitted.name
        where = _where(it)
        if isinstance(y, str):
            p.error = f"{where}: {y}"
            continue
        if not math.isfinite(y) or y <= 0:
            p.error = f"{where}: model {fitted.name} gave the length {y!r}"
            continue
        recip = reciprocal_lengths(it.atoms.lattice_mat)
        try:
            p.predicted_length = y
            p.mesh = sio.mesh_for(recip, y, where)
            p.kpoints = math.prod(p.mesh)
            if rep is None:
                p.flags["domain_unchecked"] = ("no training-domain profile (results/domain/) for this model's "
                                               "benchmark: the input was not checked against the training data")
            else:
                p.domain = rep.as_dict()
                if rep.message():
                    p.flags["out_of_domain" if not rep.in_domain else "domain_note"] = rep.message()
                if "beyond_evidence" in rep.flags:  # its own key, so the table's flag list shows it
                    p.flags["coverage_unmeasured"] = ("no measurement backs a 90 % bound for this chemistry: the safe "
                                                      "length is a conservative guess (harness.domain, tier 3)")
            if offset is not None:
                yb = yc if isinstance(yc, float) and math.isfinite(yc) and yc > 0 else y
                pm = p_metal[n] if p_metal is not None else None
                p.safe_length, p.group = _safe_length(yb, it.model_cell, pm, rep, offset, params, y)
                p.bound = "per-group" if p.group is not None else "marginal"
                if p.group is None and per_group:
                    p.flags["marginal_bound"] = f"safe length holds on average, not per group: {why_marginal}"
                yn = near.get(n)
                if isinstance(yn, float) and math.isfinite(yn) and yn > 0:
                    # Another reading of the same crystal's symmetry: never the smaller answer.
                    L_near, _ = _safe_length(yn, it.near_cell, pm, rep, offset, params, y)
                    p.flags["near_symmetry"] = _near_note(it, p.safe_length, L_near)
                    p.safe_length = max(p.safe_length, L_near)
                p.safe_mesh = sio.mesh_for(recip, p.safe_length, where)
                p.safe_kpoints = math.prod(p.safe_mesh)
            else:
                p.flags["uncalibrated"] = problem
            # the mesh the user will run: the safe one, else the predicted one
            length, count = (p.safe_length, p.safe_kpoints) if p.safe_mesh else (p.predicted_length, p.kpoints)
            note = sio.unreduced_cell_note(it.atoms.lattice_mat, length, count)
            if note:
                p.flags["unreduced_cell"] = note
        except HarnessError as err:
            p.error = str(err)
    return preds


def predict_kpoints(structures, model=None, alpha: float = DEFAULT_ALPHA, *, per_group: bool = True,
                    ids: list[str] | None = None,
                    errors: str = "raise", max_atoms: int = sio.MAX_ATOMS, progress: bool = True,
                    cache_dir: Path | None = None, models_dir: Path | None = None,
                    results_dir: Path | None = None) -> list[KpointPrediction]:
    """Predicted k-point length, safe length at level 1 - ``alpha`` and both meshes, one
    ``KpointPrediction`` per structure (a multi-block CIF gives one per block).

    structures: a pymatgen ``Structure`` (or ``Molecule``: Γ-only), an ASE ``Atoms``
        (pbc all False: Γ-only), a jarvis ``Atoms``, a POSCAR/CIF path, or a list of them.
    model: a trained model's name, a ``Fitted`` from ``load_model`` (reuse it across
        calls: loading takes seconds), or None for ``default_model()``.
    per_group: True (default): the safe length holds in every group (metals and
        non-metals, small and large cells, each crystal system; harness.group_bound) for
        models with a metallicity estimate; False: the marginal L90 (90 % on average).
    errors: "raise" (default): the first refused structure raises HarnessError naming
        it; "keep": refused structures come back with ``error`` set.
    progress: progress lines on stderr for steps longer than 2 s."""
    if errors not in ("raise", "keep"):
        raise HarnessError(f"errors={errors!r}: 'raise' or 'keep'")
    items = collect(structures, ids, max_atoms, progress=progress)
    bad = next((it for it in items if it.error), None)
    if bad is not None and errors == "raise":
        raise HarnessError(bad.error)
    fitted = None
    if any(it.error is None and it.dimensionality == 3 for it in items):
        fitted = model if hasattr(model, "estimator") else load_model(
            model, cache_dir=cache_dir, models_dir=models_dir, results_dir=results_dir, progress=progress)
    preds = predict_items(items, fitted, alpha, progress, per_group)
    bad = next((p for p in preds if p.error), None)
    if bad is not None and errors == "raise":
        raise HarnessError(bad.error)
    return preds
