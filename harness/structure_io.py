"""User structures for ``predict``: read (POSCAR / CIF files; pymatgen ``Structure``,
ASE ``Atoms`` and jarvis ``Atoms`` objects) into jarvis ``Atoms``, then check them.

Reading (one reader per format, the format sniffed from the content, not only the suffix):

* POSCAR / CONTCAR (pymatgen's parser): a negative scale factor is the cell volume (VASP's
  convention), three scale factors scale x, y, z; POTCAR-style species (``Mg_pv``,
  ``Mg_pv/f474ac0d``) are the element; a VASP 4 file (no species line) takes its species
  from the comment line when that names exactly one element per count, else is refused.
* CIF (pymatgen's parser), with or without a ``.cif`` suffix: every data block holding
  atom sites is one structure, with id ``file#block``; partial occupancies are refused
  (a site within 1 % of full occupancy is one atom).

Checks (``check``): every refusal is one ``HarnessError`` line naming the structure; the
thresholds are physical (overlapping atoms, a flat cell, vacuum) and sit well outside any
crystal (the offline store's train set: ≥ 0.747 Å between atoms, ≥ 4.82 Å³ per atom).
Where a valid structure lies outside what a model was trained on is the domain check's
business (harness.domain: flags from the training set's own profile, so that they hold
for whichever store trained the model).

Nothing heavy is imported at module import (``python -m harness predict --help`` stays fast).
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError, one_line

# ---------------------------------------------------------------- limits

MAX_FILE_BYTES = 64 * 2**20  # a 64 MiB text file is ~1 million atoms of POSCAR; bigger is not a crystal cell
MAX_ATOMS = 50_000  # default cap (--max-atoms): 10,000 atoms predict in < 1 s, 50,000 in ~20 s; training had <= 140
MIN_DISTANCE_A = 0.5  # two atoms (or an atom and its periodic image) closer than this overlap; train min 0.747 Å
MIN_VOLUME_PER_ATOM_A3 = 1.0  # Å³; train min 4.82 Å³
MIN_PLANE_SPACING_A = 0.25  # Å between lattice planes (1/|b_i|); train min 0.79 Å; below, n_i > 200 at L = 50 Å
VACUUM_GAP_A = 10.0  # an empty gap wider than this along one lattice vector is vacuum: 2D (train max 9.2 Å)
# Empty gaps of at least this along all three lattice vectors: the atoms form a finite cluster
# whose periodic images are >= 6 Å apart, a molecule in a box: no dispersion, the Γ point is
# exact. (Train: 2 of 13,627 cells, NF and Li2O clusters; the next has 5.29 Å.)
MOLECULE_GAP_A = 6.0
MAX_MESH_AXIS = 200  # k-points along one reciprocal vector (train, at the true length: max 50)
MAX_KPOINTS = 1_000_000  # n1·n2·n3 (train, at the true length: max 103,823)
# A cell whose mesh has this many times the k-points of its Niggli-reduced cell's mesh at
# the same length is flagged `unreduced_cell` (above mesh rounding, which moves small meshes
# by one step per axis). Measured at the converged lengths: 6.3 % of JARVIS' own test cells
# (up to 5.5x); spglib's standardized primitive cells of the same crystals are skewed more
# often (21 % ≥ 1.2x, up to 8x).
UNREDUCED_KPOINT_RATIO = 1.5

CIF_SUFFIXES = (".cif", ".mcif")
# A site occupied 0.999 or 1.002 (rounded refinements, common in database exports) is one
# atom; 0.99 and below is a partial occupancy, refused.
OCCUPANCY_TOLERANCE = 0.01


@dataclass
class Item:
    """One structure on its way through predict: an id, where it came from, the jarvis
    ``Atoms`` (None for a 0D object without a cell), and what the checks found."""

    id: str
    source: str | None = None  # the file as given, None for an in-memory object
    block: str | None = None  # CIF data block, when the file has several
    atoms: object = None
    formula: str | None = None
    n_atoms: int | None = None
    dimensionality: int | None = None  # 3: bulk; 0: a molecule (Γ-only)
    flags: dict = field(default_factory=dict)  # code -> message: outside the training domain, not wrong
    error: str | None = None
    _model_cell: object = field(default=None, repr=False)
    _near_cell: object = field(default=False, repr=False)  # False: not computed yet

    @property
    def model_cell(self):
        """The cell the model, the domain check and the per-group bound see
        (:func:`canonical_cell` of ``atoms``), computed once."""
        if self._model_cell is None and self.atoms is not None:
            self._model_cell = canonical_cell(self.atoms)
        return self._model_cell

    @property
    def near_cell(self):
        """The canonical cell at the loose tolerance NEAR_SYMPREC when it finds another space
        group than CANONICAL_SYMPREC (the structure is within NEAR_SYMPREC of a more symmetric
        crystal: relaxation noise, rounded coordinates), else None; computed once."""
        if self._near_cell is False:
            self._near_cell = None
            if self.atoms is not None:
                from harness.domain import spacegroup_number

                # from the model cell: the same crystal, and usually a few atoms where the
                # user's cell may have thousands (spglib's time grows with the atoms)
                near = canonical_cell(self.model_cell, NEAR_SYMPREC)
                if spacegroup_number(near) != spacegroup_number(self.model_cell):
                    self._near_cell = near
        return self._near_cell


# ---------------------------------------------------------------- files


def read_text(path: Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    path = Path(path)
    if not path.exists():
        raise HarnessError(f"{path}: no such file")
    if path.is_dir():
        raise HarnessError(f"{path}: is a directory, expected a POSCAR or CIF file")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise HarnessError(f"{path}: {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:g} MiB cap on structure files")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)  # a file that grows (or a FIFO) is still capped
    except OSError as err:
        raise HarnessError(f"{path}: cannot read ({type(err).__name__}: {err.strerror or err})") from None
    if len(data) > max_bytes:
        raise HarnessError(f"{path}: over the {max_bytes / 2**20:g} MiB cap on structure files")
    if data[:2] in (b"\x1f\x8b", b"BZ") or b"\x00" in data[:4096]:
        raise HarnessError(f"{path}: binary (compressed?) file; give the POSCAR or CIF text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # CIFs from old programs; every byte decodes
    if not text.strip():
        raise HarnessError(f"{path}: empty file")
    return text


_CIF_BLOCK = re.compile(r"^[ \t]*data_(\S*)", re.MULTILINE | re.IGNORECASE)


def looks_like_cif(text: str) -> bool:
    """CIF content: a ``data_`` block header and CIF tags (``_cell_`` / ``_atom_site_``)."""
    return bool(_CIF_BLOCK.search(text)) and re.search(r"^[ \t]*_(cell|atom_site|symmetry|space_group)",
                                                       text, re.MULTILINE | re.IGNORECASE) is not None


def sniff_format(path: Path, text: str) -> str:
    """'cif' or 'poscar': the suffix when it says CIF, else the content."""
    if Path(path).suffix.lower() in CIF_SUFFIXES or looks_like_cif(text):
        return "cif"
    return "poscar"


def read_file(path: Path, max_bytes: int = MAX_FILE_BYTES, max_atoms: int | None = None
              ) -> list[tuple[str | None, object, dict]]:
    """[(block or None, jarvis Atoms, flags)] of one file: one entry for a POSCAR or a
    one-structure CIF, one per structure block of a multi-block CIF (a failing block is
    an entry whose Atoms is the HarnessError). Whole-file faults raise HarnessError.
    ``max_atoms``: refused from the header, before the atoms are parsed."""
    path = Path(path)
    text = read_text(path, max_bytes)
    if sniff_format(path, text) == "cif":
        return read_cif_text(text, str(path), max_atoms)
    atoms, flags = read_poscar_text(text, str(path), max_atoms)
    return [(None, atoms, flags)]


def _too_many(n: int, max_atoms: int | None, where: str) -> None:
    if max_atoms is not None and n > max_atoms:
        raise HarnessError(f"{where}: {n:,} atoms, over the cap of {max_atoms:,} (--max-atoms: a guard against "
                           f"files that are not crystal cells)")


# ---------------------------------------------------------------- CIF


def split_cif_blocks(text: str) -> list[tuple[str, str]]:
    """[(block name, block text)] in file order (the text before the first ``data_`` is dropped)."""
    starts = list(_CIF_BLOCK.finditer(text))
    return [(m.group(1) or f"block{k + 1}", text[m.start(): starts[k + 1].start() if k + 1 < len(starts) else len(text)])
            for k, m in enumerate(starts)]


def _has_atom_sites(block: str) -> bool:
    return re.search(r"^[ \t]*_atom_site_(fract|cartn)_x", block, re.MULTILINE | re.IGNORECASE) is not None


def read_cif_text(text: str, where: str, max_atoms: int | None = None) -> list[tuple[str | None, object, dict]]:
    blocks = [(name, b) for name, b in split_cif_blocks(text) if _has_atom_sites(b)]
    if not blocks:
        raise HarnessError(f"{where}: no atoms (no CIF data block with an _atom_site_ loop)")
    out = []
    for name, block in blocks:
        label = f"{where}#{name}" if len(blocks) > 1 else where
        try:
            out.append((name if len(blocks) > 1 else None, _parse_cif_block(block, label, max_atoms), {}))
        except HarnessError as err:
            out.append((name if len(blocks) > 1 else None, err, {}))
    return out


# pymatgen's CIF parser compares every site with every other (symmetry merging): O(n²),
# 23 s for 10,000 atoms. A P1 block (identity the only operation) needs no merging, so
# large P1 blocks are read directly with pymatgen's own lattice and symbol parsing
# (tests: the same cell, species and coordinates as pymatgen's full parser).
FAST_P1_SITES = 1000


def _parse_cif_block(block: str, where: str, max_atoms: int | None = None):
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser = CifParser.from_str(block, occupancy_tolerance=1 + OCCUPANCY_TOLERANCE)
            data = next(iter(parser._cif.data.values()), None)
            if data is not None:  # the sites before symmetry: the cell has at least as many atoms
                _too_many(len(data.data.get("_atom_site_fract_x", data.data.get("_atom_site_Cartn_x", []))),
                          max_atoms, where)
            atoms = _fast_p1(parser, where)
            if atoms is not None:
                return atoms
            structures = parser.parse_structures(primitive=False, on_error="raise")
    except HarnessError:
        raise
    except Exception as err:  # pymatgen raises many types on malformed CIF
        raise HarnessError(f"{where}: cannot read as CIF ({type(err).__name__}: {one_line(err)})") from None
    if not structures:
        raise HarnessError(f"{where}: no structure (no atoms) in the CIF")
    return from_pymatgen(structures[0], where)


def _fast_p1(parser, where: str):
    """jarvis Atoms of a large P1 block without pymatgen's O(n²) site merging; None
    when the block is small, has symmetry operations or is a magnetic CIF."""
    import numpy as np
    from jarvis.core.atoms import Atoms
    from pymatgen.io.cif import str2float

    data = next(iter(parser._cif.data.values()))
    n = len(data.data.get("_atom_site_fract_x", []))
    if n < FAST_P1_SITES or "_atom_site_fract_y" not in data.data or "_atom_site_fract_z" not in data.data:
        return None
    if any(parser.feature_flags.values()):
        return None
    ops = parser.get_symops(data)
    if len(ops) != 1 or not np.allclose(ops[0].affine_matrix, np.eye(4)):
        return None
    lattice = parser.get_lattice(data)
    if lattice is None:
        return None
    names = data.data.get("_atom_site_type_symbol") or data.data.get("_atom_site_label")
    if names is None or len(names) != n:
        return None
    occ = data.data.get("_atom_site_occupancy")
    if occ is not None and any(abs(str2float(o) - 1.0) > OCCUPANCY_TOLERANCE for o in occ):
        raise HarnessError(f"{where}: partial occupancies are not supported (give an ordered cell)")
    symbols = [parser._parse_symbol(str(s)) for s in names]
    if not all(symbols):
        return None  # let pymatgen's parser explain
    frac = np.array([[str2float(v) for v in data.data[f"_atom_site_fract_{c}"]] for c in "xyz"], dtype=float).T
    return Atoms(lattice_mat=lattice.matrix, elements=symbols, coords=frac, cartesian=False)


# ---------------------------------------------------------------- POSCAR


def _species_symbol(token: str) -> str:
    """``Mg_pv`` / ``Mg_pv/f474ac0d`` / ``Mg`` -> ``Mg`` (POTCAR names, as pymatgen reads them)."""
    return token.split("/")[0].split("_")[0]


def _is_int(token: str) -> bool:
    try:
        int(token)
        return True
    except ValueError:
        return False


def _valid_symbol(symbol: str) -> bool:
    from pymatgen.core.periodic_table import Element

    return Element.is_valid_symbol(symbol)


@functools.lru_cache(maxsize=None)
def _jarvis_knows(symbol: str) -> bool:
    """jarvis-tools has element data (an atomic number) for ``symbol``: not beyond Lr (Z 103),
    where its Specie gives NaN and symmetry finding fails."""
    from jarvis.core.specie import Specie

    try:
        return math.isfinite(float(Specie(symbol).Z))
    except Exception:  # jarvis raises on symbols it lacks entirely
        return False


def read_poscar_text(text: str, where: str, max_atoms: int | None = None):
    """(jarvis Atoms, flags) of a POSCAR/CONTCAR text, via pymatgen's parser."""
    from pymatgen.io.vasp.inputs import Poscar

    lines = text.splitlines()
    flags = {}
    frames = sum(1 for ln in lines if ln.strip().lower().startswith("direct configuration="))
    if frames > 1:  # an XDATCAR: pymatgen's POSCAR parser reads its first frame
        flags["first_frame"] = (f"a trajectory (XDATCAR, {frames} frames): its first frame was read; for the relaxed "
                                "structure give the CONTCAR")
    if len(lines) < 7:
        raise HarnessError(f"{where}: cannot read as POSCAR (only {len(lines)} lines); CIF content needs a data_ "
                           f"block with _cell_ and _atom_site_ tags")
    scale = lines[1].split()
    try:
        factors = [float(t) for t in scale[:3]] if len(scale) >= 3 and all(_is_float(t) for t in scale[:3]) else \
            [float(scale[0])]
    except (ValueError, IndexError):
        raise HarnessError(f"{where}: cannot read as POSCAR (line 2 is not a scale factor: {lines[1].strip()[:40]!r}); "
                           f"CIF content needs a data_ block with _cell_ and _atom_site_ tags") from None
    try:
        rows = [[float(t) for t in lines[i].split()[:3]] for i in (2, 3, 4)]
        if any(len(r) != 3 for r in rows):
            raise ValueError
    except ValueError:
        raise HarnessError(f"{where}: cannot read as POSCAR (lines 3-5 are not three lattice vectors); CIF content "
                           f"needs a data_ block with _cell_ and _atom_site_ tags") from None
    if len(factors) == 3:  # VASP: three factors scale the x, y, z components of the lattice vectors
        if min(factors) <= 0:
            raise HarnessError(f"{where}: three scale factors must all be positive (got {lines[1].strip()})")
        if any(ln.strip()[:1] in "cCkK" for ln in lines[6:9] if ln.strip() and not _is_int(ln.split()[0])):
            raise HarnessError(f"{where}: three scale factors with Cartesian positions are not supported; give Direct "
                               f"positions or one scale factor")
        rows = [[x * f for x, f in zip(r, factors)] for r in rows]
        lines = [lines[0], "1.0", *(" ".join(repr(x) for x in r) for r in rows), *lines[5:]]
    elif factors[0] < 0:
        # VASP: a negative scale is the cell volume. Turned into the length factor here, which
        # also scales Cartesian positions (pymatgen would scale those by the volume itself).
        import numpy as np

        volume = abs(float(np.linalg.det(np.array(rows))))
        if not volume > 0:
            raise HarnessError(f"{where}: degenerate lattice (zero cell volume)")
        lines = [lines[0], repr((-factors[0] / volume) ** (1 / 3)), *lines[2:]]
    elif factors[0] == 0:
        raise HarnessError(f"{where}: scale factor 0 (a zero cell)")
    tokens = lines[5].split()
    if not tokens:
        raise HarnessError(f"{where}: cannot read as POSCAR (line 6 is empty: no species or atom counts)")
    if all(_is_int(t) for t in tokens):  # VASP 4: counts only, no species line
        counts = [int(t) for t in tokens]
        if sum(counts) <= 0:
            raise HarnessError(f"{where}: no atoms (the POSCAR's atom counts are empty or zero)")
        named = [_species_symbol(t) for t in re.split(r"[\s,;]+", lines[0].strip()) if t]
        if len(named) != len(counts) or not all(_valid_symbol(s) for s in named):
            raise HarnessError(f"{where}: VASP 4 POSCAR (no species line; line 6 holds the counts "
                               f"{' '.join(tokens)}) and the comment line does not name {len(counts)} element(s); "
                               f"add a line with the element symbols above the counts (VASP 5 format)")
        lines.insert(5, " ".join(named))
        flags["species_from_comment"] = (f"VASP 4 POSCAR: species {' '.join(named)} taken from the comment line; "
                                         "check they match the POTCAR order")
    else:
        symbols = [_species_symbol(t) for t in tokens]
        unknown = sorted({s for s in symbols if not _valid_symbol(s)})
        if unknown and not all(_is_int(t) for t in lines[6].split()):
            raise HarnessError(f"{where}: cannot read as POSCAR (line 6 {lines[5].strip()[:40]!r} is neither species "
                               f"nor counts); CIF content needs a data_ block with _cell_ and _atom_site_ tags")
        if unknown:
            raise HarnessError(f"{where}: unknown element(s) {', '.join(unknown)}")
        try:
            counts = [int(t) for t in lines[6].split()]
        except ValueError:
            counts = None  # several species lines (VASP 6 long lists): pymatgen reads them
        if counts is not None and sum(counts) <= 0:
            raise HarnessError(f"{where}: no atoms (the POSCAR's atom counts are empty or zero)")
    if counts is not None:
        _too_many(sum(counts), max_atoms, where)
        # line 7 holds the counts; then an optional "Selective dynamics" line, the Direct/Cartesian
        # line and one position per atom (pymatgen's own error here is a bare IndexError)
        first = 8 + (len(lines) > 7 and lines[7].strip()[:1] in "sS")
        have = sum(1 for ln in lines[first:first + sum(counts)] if len(ln.split()) >= 3)
        if have < sum(counts):
            raise HarnessError(f"{where}: the atom counts ({' '.join(map(str, counts))}) give {sum(counts)} atoms, but "
                               f"only {have} position line(s) follow")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Poscar.from_str("\n".join(lines) + "\n", read_velocities=False).structure
    except Exception as err:  # pymatgen raises IndexError/ValueError/... on malformed input
        raise HarnessError(f"{where}: cannot read as POSCAR ({type(err).__name__}: {one_line(err)}); "
                           f"CIF content needs a data_ block with _cell_ and _atom_site_ tags") from None
    return from_pymatgen(structure, where), flags


def _is_float(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- objects


def from_pymatgen(structure, where: str):
    """jarvis Atoms of a pymatgen Structure (ordered sites only)."""
    from jarvis.core.atoms import Atoms

    if len(structure) == 0:
        raise HarnessError(f"{where}: no atoms")
    symbols = []
    for site in structure:
        comp = site.species
        if len(comp) != 1 or abs(sum(comp.values()) - 1.0) > OCCUPANCY_TOLERANCE:
            raise HarnessError(f"{where}: partial occupancies are not supported (give an ordered cell)")
        sp = next(iter(comp))
        symbols.append(getattr(sp, "symbol", str(sp)))
    return Atoms(lattice_mat=structure.lattice.matrix, elements=symbols, coords=structure.frac_coords, cartesian=False)


def from_object(obj, where: str):
    """(jarvis Atoms or None, dimensionality hint, flags) of a pymatgen Structure or
    Molecule, an ASE Atoms or a jarvis Atoms. A non-periodic object (pymatgen Molecule,
    ASE Atoms with pbc all False) is 0D: (None, 0, ...)."""
    kind = type(obj).__module__.split(".")[0]
    name = type(obj).__name__
    if is_ase(obj):  # also pymatgen's MSONAtoms (an ASE Atoms subclass)
        return _from_ase(obj, where)
    if kind == "jarvis" and hasattr(obj, "lattice_mat"):
        return obj, None
    if kind == "pymatgen":
        if name in ("Molecule", "IMolecule"):
            return None, 0
        if hasattr(obj, "lattice") and hasattr(obj, "frac_coords"):
            return from_pymatgen(obj, where), None
    raise HarnessError(f"{where}: {type(obj).__module__}.{name} is not a structure (give a pymatgen Structure, an ASE "
                       f"Atoms, a jarvis Atoms or a POSCAR/CIF path)")


def is_ase(obj) -> bool:
    return all(hasattr(obj, a) for a in ("get_pbc", "get_cell", "get_positions", "get_chemical_symbols"))


def is_structure(obj) -> bool:
    """A single structure object (not a list of them)."""
    return is_ase(obj) or hasattr(obj, "lattice_mat") or (
        type(obj).__module__.split(".")[0] == "pymatgen" and hasattr(obj, "sites"))


def _from_ase(atoms, where: str):
    import numpy as np
    from jarvis.core.atoms import Atoms

    pbc = [bool(p) for p in atoms.get_pbc()]
    if len(atoms) == 0:
        raise HarnessError(f"{where}: no atoms")
    if not any(pbc):
        return None, 0
    if not all(pbc):
        raise HarnessError(f"{where}: ASE Atoms periodic along {sum(pbc)} axis/axes only (pbc={tuple(pbc)}): 1D/2D "
                           f"systems are outside the bulk models; give a 3D-periodic cell")
    cell = np.asarray(atoms.get_cell(), dtype=float)
    return Atoms(lattice_mat=cell, coords=np.asarray(atoms.get_positions(), dtype=float),
                 elements=list(atoms.get_chemical_symbols()), cartesian=True), None


def molecule_info(obj) -> tuple[str, int]:
    """(reduced formula, atoms) of a 0D object (pymatgen Molecule, non-periodic ASE Atoms)."""
    from pymatgen.core import Composition

    symbols = obj.get_chemical_symbols() if hasattr(obj, "get_chemical_symbols") else [s.specie.symbol for s in obj]
    unknown = sorted({s for s in symbols if not _valid_symbol(s)})
    if unknown:
        raise HarnessError(f"unknown element(s) {', '.join(unknown)}")
    return Composition(" ".join(symbols)).reduced_formula, len(symbols)


# ---------------------------------------------------------------- checks


def slab_gaps(frac, recip):
    """Å, per lattice plane family i: the widest atom-free slab, i.e. the largest gap in
    the sorted fractional coordinate i (periodic wrap included) times the plane spacing
    1/|b_i|. The one vacuum-gap definition (the physics features use it too)."""
    import numpy as np

    frac = np.asarray(frac, dtype=float)
    out = np.empty(3)
    for i in range(3):
        x = np.sort(np.mod(frac[:, i], 1.0))
        out[i] = np.diff(np.concatenate([x, [x[0] + 1.0]])).max() / recip[i]
    return out


def vacuum_gaps(atoms) -> list[float]:
    """:func:`slab_gaps` of a jarvis ``Atoms``, as a list."""
    import numpy as np

    recip = np.linalg.norm(np.linalg.inv(np.asarray(atoms.lattice_mat, dtype=float)).T, axis=1)
    return [float(g) for g in slab_gaps(atoms.frac_coords, recip)]


def vacuum_gap(atoms) -> tuple[int, float]:
    """(lattice axis, Å) of the widest of ``vacuum_gaps``."""
    gaps = vacuum_gaps(atoms)
    axis = max(range(3), key=lambda i: gaps[i])
    return axis, gaps[axis]


def closest_pair(atoms, cutoff: float):
    """(distance, i, j) of the closest two atoms (an atom and its own periodic image
    included) when closer than ``cutoff``, else None. A periodic neighbour list within
    the cutoff: linear in atoms."""
    import numpy as np
    from pymatgen.optimization.neighbors import find_points_in_spheres

    lat = np.ascontiguousarray(atoms.lattice_mat, dtype=float)
    cart = np.ascontiguousarray(np.asarray(atoms.frac_coords, dtype=float) @ lat)
    c, p, img, dist = find_points_in_spheres(cart, cart, r=float(cutoff), pbc=np.ones(3, dtype=np.int64),
                                             lattice=lat, tol=1e-12)
    keep = ~((c == p) & np.all(img == 0, axis=1)) & (dist < cutoff)
    if not keep.any():
        return None
    k = int(np.argmin(np.where(keep, dist, np.inf)))
    return float(dist[k]), int(c[k]), int(p[k])


def check(atoms, where: str, max_atoms: int = MAX_ATOMS) -> tuple[int, dict]:
    """(dimensionality, flags) of a jarvis Atoms, or HarnessError ``where: fault``.

    Refused: no atoms, unknown elements (or ones jarvis lacks: Z > 103), more than ``max_atoms``, non-finite numbers,
    a degenerate cell (volume per atom < 1 Å³, lattice planes < 0.25 Å apart), atoms
    (or an atom and its own image) closer than 0.5 Å, > 10 Å of vacuum along one or two
    lattice vectors (2D / 1D). ≥ 6 Å of vacuum along all three is a molecule:
    dimensionality 0, Γ-only."""
    import numpy as np

    n = 0 if atoms is None else int(atoms.num_atoms)
    if n == 0:
        raise HarnessError(f"{where}: no atoms")
    elements = [str(e) for e in atoms.elements]
    unknown = sorted({e for e in elements if not _valid_symbol(e)})
    if unknown:
        raise HarnessError(f"{where}: unknown element(s) {', '.join(unknown)}")
    unsupported = sorted({e for e in elements if not _jarvis_knows(e)})
    if unsupported:
        raise HarnessError(f"{where}: element(s) {', '.join(unsupported)} not supported (jarvis-tools has element data "
                           "up to Lr, Z 103)")
    _too_many(n, max_atoms, where)
    lat = np.asarray(atoms.lattice_mat, dtype=float)
    frac = np.asarray(atoms.frac_coords, dtype=float)
    if lat.shape != (3, 3) or not np.all(np.isfinite(lat)):
        raise HarnessError(f"{where}: lattice is not three finite vectors")
    if frac.shape != (n, 3) or not np.all(np.isfinite(frac)):
        raise HarnessError(f"{where}: non-finite atom coordinates")
    volume = abs(float(np.linalg.det(lat)))
    if not volume > 0:
        raise HarnessError(f"{where}: degenerate lattice (zero cell volume)")
    vpa = volume / n
    if vpa < MIN_VOLUME_PER_ATOM_A3:
        raise HarnessError(f"{where}: degenerate cell: {vpa:.3g} Å³ per atom (< {MIN_VOLUME_PER_ATOM_A3:g}; crystals have "
                           f"≳ 5); a lattice vector is too short or the cell is nearly flat")
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(lat).T, axis=1)
    if spacing.min() < MIN_PLANE_SPACING_A:
        i = int(np.argmin(spacing))
        raise HarnessError(f"{where}: degenerate cell: lattice planes ⟂ b{i + 1} only {spacing[i]:.3g} Å apart "
                           f"(< {MIN_PLANE_SPACING_A:g} Å): a nearly flat or badly skewed cell, whose mesh would need "
                           f"hundreds of k-points along b{i + 1}; give a reduced (e.g. Niggli) cell")
    pair = closest_pair(atoms, MIN_DISTANCE_A)
    if pair is not None and pair[0] < MIN_DISTANCE_A:
        d, i, j = pair
        what = (f"atom {i + 1} ({elements[i]}) and its own periodic image" if i == j else
                f"atoms {i + 1} ({elements[i]}) and {j + 1} ({elements[j]})")
        raise HarnessError(f"{where}: overlapping atoms: {what} only {d:.3g} Å apart (< {MIN_DISTANCE_A:g} Å)")
    gaps = vacuum_gaps(atoms)
    flags = {}
    if min(gaps) >= MOLECULE_GAP_A:
        flags["molecule_gamma_only"] = (f"0D: a molecule/cluster in a box (≥ {min(gaps):.1f} Å of vacuum along a, b and "
                                        f"c): the Γ point alone samples it; no model is used")
        return 0, flags
    vac = [i for i in range(3) if gaps[i] > VACUUM_GAP_A]
    if vac:
        axes = ", ".join("abc"[i] for i in vac)
        kind = "2D/slab" if len(vac) == 1 else "1D (wire/chain)"
        raise HarnessError(f"{where}: looks like a {kind} cell: {max(gaps[i] for i in vac):.1f} Å of vacuum between atom "
                           f"layers along lattice vector {axes} (> {VACUUM_GAP_A:g} Å); the models are for bulk 3D crystals")
    return 3, flags


# ---------------------------------------------------------------- meshes


def mesh_for(recip, length: float, where: str) -> tuple[int, int, int]:
    """jarvis' mesh n_i = max(1, int(L·|b_i| + 0.5)) (harness.kpoints), refused beyond
    MAX_MESH_AXIS along one vector or MAX_KPOINTS in all (checked on the floats, before
    any integer conversion: nothing overflows)."""
    from harness.kpoints import mesh

    raw = [float(length) * float(b) + 0.5 for b in recip]
    if not all(math.isfinite(x) for x in raw):
        raise HarnessError(f"{where}: non-finite mesh at L = {length:g} Å")
    if max(raw) >= MAX_MESH_AXIS + 1:  # int() of it would exceed the cap (and, far beyond, int64)
        big = "x".join(f"{int(x)}" for x in raw)
        raise HarnessError(f"{where}: the mesh at L = {length:g} Å would be {big}, beyond the cap "
                           f"(n_i ≤ {MAX_MESH_AXIS}, n1·n2·n3 ≤ {MAX_KPOINTS:,}); is the cell right?")
    m = tuple(int(v) for v in mesh(recip, float(length)))
    count = math.prod(m)
    if max(m) > MAX_MESH_AXIS or count > MAX_KPOINTS:
        raise HarnessError(f"{where}: the mesh at L = {length:g} Å would be {'x'.join(map(str, m))} ({count:,} k-points), "
                           f"beyond the cap (n_i ≤ {MAX_MESH_AXIS}, n1·n2·n3 ≤ {MAX_KPOINTS:,}); is the cell right?")
    return m


def unreduced_cell_note(lattice_mat, length: float, kpoints: int) -> str | None:
    """Why a cell's mesh at ``length`` wastes k-points, or None. JARVIS' rule n_i ≈ L·|b_i|
    puts the mesh's planes L apart on any basis of a lattice, but a skewed basis (an
    unreduced cell: MD snapshots, cells built by transformations) pays for it with
    |b1||b2||b3|·V times the k-points; the Niggli-reduced basis of the same lattice gives
    the fewest. The mesh is still built on the user's cell (their calculation uses it)."""
    import numpy as np
    import spglib

    from harness.kpoints import mesh, reciprocal_lengths

    red = spglib.niggli_reduce(np.asarray(lattice_mat, dtype=float))
    if red is None:
        return None
    m = [int(v) for v in mesh(reciprocal_lengths(red), float(length))]
    k = math.prod(m)
    if kpoints < UNREDUCED_KPOINT_RATIO * k:
        return None
    return (f"unreduced cell: at L = {length:g} Å its mesh has {kpoints:,} k-points, the Niggli-reduced cell of the same "
            f"lattice {'x'.join(map(str, m))} ({k:,}, {kpoints / k:.1f}x fewer) for the same plane spacing; reduce "
            f"the cell first (pymatgen Structure.get_reduced_structure(), ase.build.niggli_reduce)")


# Tolerance for finding the symmetry of a user's cell (pymatgen's SpacegroupAnalyzer
# default): the model was fitted and calibrated on canonical cells found with it.
CANONICAL_SYMPREC = 0.01
# A looser reading (Materials Project's symmetry tolerance): random displacements of
# 0.002 Å (a relaxation without symmetry) turn MgO's cubic cell orthorhombic or trigonal at
# 0.01 Å, and with it the per-group bound's group (30 -> 25 Å). Predict takes the larger
# safe length of the two readings (2 % of JARVIS' own val/test crystals read differently).
NEAR_SYMPREC = 0.1


def canonical_cell(atoms, symprec: float = CANONICAL_SYMPREC):
    """The cell the model sees: spglib's standardized primitive cell of ``atoms`` (same
    crystal, same answer whether it came as CIF or POSCAR, rotated, with sites permuted,
    as primitive, conventional or supercell). The k-mesh is then built on the user's own
    cell from the predicted length. Falls back to ``atoms`` when spglib finds no cell.
    (Hand-written glue: jarvis/pymatgen standardize through spglib too, but keep the
    orientation or the conventional cell; here the idealized primitive is what we want.)"""
    import numpy as np
    import spglib
    from jarvis.core.atoms import Atoms

    lat = np.asarray(atoms.lattice_mat, dtype=float)
    frac = np.asarray(atoms.frac_coords, dtype=float) % 1.0
    symbols = list(atoms.elements)
    kinds = sorted(set(symbols))
    numbers = [kinds.index(s) + 1 for s in symbols]
    try:
        cell = spglib.standardize_cell((lat, frac, numbers), to_primitive=True, no_idealize=False, symprec=symprec)
    except Exception:  # spglib raises on degenerate input; the checks already passed
        cell = None
    if cell is None:
        return atoms
    plat, pfrac, pnum = cell
    order = np.lexsort((pfrac[:, 2], pfrac[:, 1], pfrac[:, 0], pnum))  # a fixed site order
    return Atoms(lattice_mat=np.asarray(plat), coords=np.asarray(pfrac)[order] % 1.0,
                 elements=[kinds[int(pnum[k]) - 1] for k in order], cartesian=False)
