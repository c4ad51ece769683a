"""Reading and checking user structures (harness/structure_io.py) on real structures of
the store and textbook cells: what VASP and CIF files really contain is read right,
every bad structure is refused with one line naming it, and no real bulk structure is."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from jarvis.core.atoms import Atoms
from jarvis.core.kpoints import Kpoints3D
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp.inputs import Poscar

from harness import structure_io as sio
from harness.api import collect
from harness.errors import HarnessError
from harness.kpoints import reciprocal_lengths


def _real(task, n_atoms_min=3, k=0):
    """The k-th covered test structure with at least n_atoms_min atoms and two elements."""
    found = [i for i in task.ids("test") if task.materials.at[i, "atoms"].num_atoms >= n_atoms_min
             and len(set(task.materials.at[i, "atoms"].elements)) >= 2]
    return task.materials.at[found[k], "atoms"]


def _poscar_text(atoms) -> str:
    return Poscar(atoms.pymatgen_converter()).get_str(direct=True)


def _volume(lattice) -> float:
    return abs(float(np.linalg.det(np.asarray(lattice, dtype=float))))


def _same_cell(a, b):
    assert np.allclose(np.asarray(a.lattice_mat), np.asarray(b.lattice_mat), atol=1e-9)
    assert np.allclose(np.asarray(a.frac_coords), np.asarray(b.frac_coords), atol=1e-9)
    assert list(a.elements) == list(b.elements)


def _mesh(atoms, L):
    return list(Kpoints3D().automatic_length_mesh(lattice_mat=atoms.lattice_mat, length=L).kpts[0])


# ---------------------------------------------------------------- POSCAR


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "cartesian"])
def test_negative_scale_is_the_cell_volume(task, direct):
    a = _real(task)
    lines = Poscar(a.pymatgen_converter()).get_str(direct=direct).splitlines()
    V = _volume(a.lattice_mat)
    # VASP: a negative scale factor is the volume; the lattice lines (and Cartesian
    # positions) are scaled by the length factor that gives it
    shrink = 0.37
    lines[1] = repr(-V)
    lines[2:5] = [" ".join(f"{shrink * x:.17g}" for x in row) for row in np.asarray(a.lattice_mat)]
    if not direct:
        lines[8:] = [" ".join(f"{shrink * float(x):.17g}" for x in ln.split()[:3]) for ln in lines[8:]]
    text = "\n".join(lines) + "\n"
    atoms, flags = sio.read_poscar_text(text, "POSCAR-neg")
    assert _volume(atoms.lattice_mat) == pytest.approx(V, rel=1e-12)
    _same_cell(atoms, a)
    assert _mesh(atoms, 40) == _mesh(a, 40) and flags == {}
    if direct:  # pymatgen reads this case right (not the Cartesian one: it scales positions by the volume)
        assert _volume(atoms.lattice_mat) == pytest.approx(Poscar.from_str(text).structure.volume, rel=1e-12)
        # three scale factors scale the x, y, z components
        lines[1] = "2.0 3.0 4.0"
        lines[2:5] = [" ".join(f"{x / f:.17g}" for x, f in zip(row, (2.0, 3.0, 4.0))) for row in np.asarray(a.lattice_mat)]
        atoms3, _ = sio.read_poscar_text("\n".join(lines) + "\n", "POSCAR-3")
        _same_cell(atoms3, a)


def test_vasp4_poscar_takes_species_from_the_comment_or_is_refused_clearly(task):
    a = _real(task)
    lines = _poscar_text(a).splitlines()
    species = lines[5].split()
    del lines[5]  # VASP 4: no species line
    lines[0] = " ".join(species)
    atoms, flags = sio.read_poscar_text("\n".join(lines) + "\n", "POSCAR4")
    _same_cell(atoms, a)
    assert "species_from_comment" in flags
    lines[0] = "relaxed cell, run 3"
    with pytest.raises(HarnessError, match=r"^POSCAR4: VASP 4 POSCAR \(no species line.*add a line with the element "
                                           r"symbols above the counts"):
        sio.read_poscar_text("\n".join(lines) + "\n", "POSCAR4")


def test_potcar_style_species_names_are_the_element(task):
    a = _real(task)
    lines = _poscar_text(a).splitlines()
    lines[5] = " ".join(f"{s}_pv/f474ac0d" if k % 2 == 0 else f"{s}_sv" for k, s in enumerate(lines[5].split()))
    atoms, _ = sio.read_poscar_text("\n".join(lines) + "\n", "CONTCAR")
    _same_cell(atoms, a)


# ---------------------------------------------------------------- CIF


def _cif(atoms, name) -> str:
    return re.sub(r"^data_.*$", f"data_{name}", str(CifWriter(atoms.pymatgen_converter())), count=1, flags=re.M)


def test_multi_block_cif_gives_one_structure_per_block_and_a_bad_block_fails_alone(task, tmp_path):
    a, b = _real(task, k=0), _real(task, k=1)
    f = tmp_path / "two.cif"
    f.write_text(_cif(a, "first") + "\n" + _cif(b, "second"))
    items = collect([f])
    assert [it.id for it in items] == ["two.cif#first", "two.cif#second"]
    assert [it.formula for it in items] == [a.composition.reduced_formula, b.composition.reduced_formula]
    assert all(it.error is None for it in items)
    broken = _cif(b, "broken").replace("_atom_site_fract_z", "_atom_site_fract_q")
    f.write_text(_cif(a, "first") + "\n" + broken)
    first, second = collect([f])
    assert first.error is None and first.formula == a.composition.reduced_formula
    assert second.error.startswith(f"{f}#broken: cannot read as CIF")


def test_cif_content_without_the_suffix_is_read_as_cif(task, tmp_path):
    a = _real(task)
    f = tmp_path / "structure_from_icsd.txt"
    f.write_text(_cif(a, "x"))
    [it] = collect([f])
    assert it.error is None and it.formula == a.composition.reduced_formula and it.n_atoms == a.num_atoms
    assert _volume(it.atoms.lattice_mat) == pytest.approx(_volume(a.lattice_mat), rel=1e-6)


def test_large_p1_cif_reads_the_same_cell_as_pymatgens_parser(task, tmp_path):
    """Above FAST_P1_SITES sites a P1 block skips pymatgen's O(n²) merging: same lattice,
    same (species, position) set as pymatgen's own parser."""
    import warnings

    from pymatgen.io.cif import CifParser

    a = _real(task)
    m = math.ceil((sio.FAST_P1_SITES / a.num_atoms) ** (1 / 3))
    s = a.pymatgen_converter() * (m, m, m)
    assert len(s) >= sio.FAST_P1_SITES
    text = str(CifWriter(s))
    fast = sio.read_cif_text(text, "big.cif")[0][1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = CifParser.from_str(text).parse_structures(primitive=False, on_error="raise")[0]

    def sites(els, frac):
        return sorted(zip(els, map(tuple, np.round(np.asarray(frac) % 1.0, 6) % 1.0)))

    assert np.array_equal(np.asarray(fast.lattice_mat), ref.lattice.matrix)
    assert sites(fast.elements, fast.frac_coords) == sites([x.specie.symbol for x in ref], ref.frac_coords)


def test_partial_occupancy_is_refused(tmp_path):
    f = tmp_path / "disordered.cif"
    f.write_text("data_x\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n_cell_angle_alpha 90\n"
                 "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\nloop_\n"
                 "_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
                 "_atom_site_occupancy\nMg1 Mg 0 0 0 0.5\nFe1 Fe 0 0 0 0.5\nO1 O 0.5 0.5 0.5 1\n")
    [it] = collect([f])
    assert it.error == f"{f}: partial occupancies are not supported (give an ordered cell)"


@pytest.mark.parametrize("occ, ordered", [("0.999", True), ("1.002", True), ("0.99", False), ("0.95", False)])
def test_occupancy_within_a_percent_of_one_is_an_ordered_site(tmp_path, occ, ordered):
    """Rounded refinements (0.999, 1.002: common in database exports) are one atom per site."""
    f = tmp_path / "rocksalt.cif"
    f.write_text("data_x\n_cell_length_a 4.21\n_cell_length_b 4.21\n_cell_length_c 4.21\n_cell_angle_alpha 90\n"
                 "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'F m -3 m'\n"
                 "_symmetry_Int_Tables_number 225\nloop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
                 f"_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\nMg1 Mg 0 0 0 {occ}\nO1 O 0.5 0.5 0.5 1\n")
    [it] = collect([f])
    if ordered:
        assert it.error is None and it.formula == "MgO" and it.n_atoms == 8
    else:
        assert it.error == f"{f}: partial occupancies are not supported (give an ordered cell)"


# ---------------------------------------------------------------- caps


def test_file_size_cap(task, tmp_path):
    f = tmp_path / "POSCAR"
    f.write_text(_poscar_text(_real(task)))
    assert sio.read_file(f)  # fine under the default cap
    with pytest.raises(HarnessError, match=r"MiB cap on structure files"):
        sio.read_file(f, max_bytes=f.stat().st_size - 1)
    huge = tmp_path / "huge.cif"
    with open(huge, "wb") as fh:  # sparse: no 64 MiB written
        fh.truncate(sio.MAX_FILE_BYTES + 1)
    [it] = collect([huge])
    assert it.error.startswith(f"{huge}: 64.0 MiB, over the 64 MiB cap")


def test_atom_count_cap(task, tmp_path):
    a = _real(task)
    with pytest.raises(HarnessError, match=rf"^x: {a.num_atoms} atoms, over the cap of {a.num_atoms - 1}"):
        sio.check(a, "x", max_atoms=a.num_atoms - 1)
    # refused from the header, before parsing 300,000 coordinate lines (here: absent)
    f = tmp_path / "POSCAR-huge"
    f.write_text("Mg O\n1.0\n140 0 0\n0 140 0\n0 0 140\nMg O\n150000 150000\ndirect\n0 0 0\n")
    [it] = collect([f])
    assert it.error.startswith(f"{f}: 300,000 atoms, over the cap of {sio.MAX_ATOMS:,} (--max-atoms")


def test_mesh_cap_refuses_before_any_integer_overflows(task):
    a = _real(task)
    recip = reciprocal_lengths(a.lattice_mat)
    m = sio.mesh_for(recip, 45.0, "x")
    assert list(m) == _mesh(a, 45.0) and all(type(n) is int for n in m)
    assert type(math.prod(m)) is int
    with pytest.raises(HarnessError, match=r"beyond the cap \(n_i ≤ 200"):
        sio.mesh_for([0.2, 0.2, 1000.0], 25.0, "x")  # c = 0.001 Å: 25,000 along c
    with pytest.raises(HarnessError, match=r"beyond the cap"):
        sio.mesh_for([1e15, 1e15, 1e15], 30.0, "x")  # int64 would overflow (and wrap) here
    with pytest.raises(HarnessError, match=r"\(8,000,000 k-points\), beyond the cap"):
        sio.mesh_for([10.0, 10.0, 10.0], 19.96, "x")  # 200 per axis is allowed, 200³ in all is not


# ---------------------------------------------------------------- refusals


def _with(atoms, lattice=None, extra=None):
    lat = np.asarray(atoms.lattice_mat if lattice is None else lattice, dtype=float)
    frac = np.asarray(atoms.frac_coords, dtype=float)
    els = list(atoms.elements)
    if extra is not None:
        frac = np.vstack([frac, extra[1]])
        els.append(extra[0])
    return Atoms(lattice_mat=lat, coords=frac, elements=els, cartesian=False)


def test_overlapping_atoms_are_refused(task):
    a = _real(task)
    f0 = np.asarray(a.frac_coords[0], dtype=float)
    with pytest.raises(HarnessError, match=rf"^x: overlapping atoms: atoms 1 \({a.elements[0]}\) and {a.num_atoms + 1} "
                                           rf"\(Mg\) only 0 Å apart"):
        sio.check(_with(a, extra=("Mg", f0)), "x")
    shift = 0.3 / np.linalg.norm(np.asarray(a.lattice_mat)[0])
    with pytest.raises(HarnessError, match=r"only 0.3 Å apart \(< 0.5 Å\)"):
        sio.check(_with(a, extra=("Mg", f0 + [shift, 0, 0])), "x")


def test_degenerate_cells_are_refused(task):
    si = Atoms(lattice_mat=[[0, 2.73, 2.73], [2.73, 0, 2.73], [2.73, 2.73, 0]], coords=[[0, 0, 0], [0.25, 0.25, 0.25]],
               elements=["Si", "Si"], cartesian=False)
    assert sio.check(si, "si")[0] == 3
    flat = Atoms(lattice_mat=[[4, 0, 0], [0, 4, 0], [0, 0, 0.001]], coords=[[0, 0, 0]], elements=["Si"], cartesian=False)
    with pytest.raises(HarnessError, match=r"^c001: degenerate cell: 0.016 Å³ per atom"):
        sio.check(flat, "c001")
    coplanar = Atoms(lattice_mat=[[4, 0, 0], [0, 4, 0], [4, 4, 1e-5]], coords=[[0, 0, 0], [0.5, 0.5, 0.5]],
                     elements=["Si", "O"], cartesian=False)
    with pytest.raises(HarnessError, match=r"degenerate cell"):
        sio.check(coplanar, "coplanar")
    with pytest.raises(HarnessError, match=r"zero cell volume"):
        sio.check(Atoms(lattice_mat=[[4, 0, 0], [0, 4, 0], [4, 4, 0]], coords=[[0, 0, 0]], elements=["Si"]), "zero")
    # a real crystal in a badly skewed (non-reduced) basis: same lattice, absurd mesh
    a = _real(task)
    skew = np.asarray(a.lattice_mat) + np.outer([0, 0, 1], 60 * np.asarray(a.lattice_mat)[0])
    with pytest.raises(HarnessError, match=r"lattice planes ⟂ b1 only .* give a reduced \(e.g. Niggli\) cell"):
        sio.check(_with(a, lattice=skew), "skew")


def _slab(atoms, vacuum, axes=(2,)):
    lat = np.array(atoms.lattice_mat, dtype=float)
    for i in axes:
        lat[i] = lat[i] + vacuum * lat[i] / np.linalg.norm(lat[i])
    return Atoms(lattice_mat=lat, coords=np.array(atoms.cart_coords), elements=list(atoms.elements), cartesian=True)


def test_2d_and_1d_cells_are_refused_and_molecules_are_gamma_only(task):
    a = _real(task)
    with pytest.raises(HarnessError, match=r"2D/slab cell: .* along lattice vector c"):
        sio.check(_slab(a, 15.0), "slab")
    with pytest.raises(HarnessError, match=r"1D \(wire/chain\) cell: .* along lattice vector a, b"):
        sio.check(_slab(a, 15.0, axes=(0, 1)), "wire")
    # CO in an 8 Å box (the case): no dispersion, Γ only
    co = Atoms(lattice_mat=np.eye(3) * 8.0, coords=[[4, 4, 3.436], [4, 4, 4.564]], elements=["C", "O"], cartesian=True)
    dim, flags = sio.check(co, "CO")
    assert dim == 0 and "molecule_gamma_only" in flags
    water = Atoms(lattice_mat=np.eye(3) * 8.0, coords=[[4, 4, 4], [4.757, 4, 4.586], [3.243, 4, 4.586]],
                  elements=["O", "H", "H"], cartesian=True)
    assert sio.check(water, "H2O")[0] == 0


def test_real_bulk_structures_pass_every_check(task, offline):
    """Every other covered structure: none refused, no flag; 0D only for the two clusters
    in a box of the offline store (NF, Li2O: >= 7 Å of vacuum in every direction). (Where
    a valid structure lies outside the training set is harness.domain's, from the profile.)"""
    zero = []
    for jid, atoms in task.materials["atoms"].iloc[::2].items():
        dim, flags = sio.check(atoms, jid)
        if dim == 0:
            zero.append(jid)
            assert set(flags) == {"molecule_gamma_only"}
        else:
            assert flags == {}
    assert set(zero) <= {"JVASP-114453", "JVASP-118619"}


def test_refusal_limits_sit_outside_the_covered_train_set(task, offline):
    """The physical refusals never touch a real training crystal: its volume per atom,
    shortest distance and widest empty gap all keep clear of the limits."""
    atoms = task.X("train")["atoms"]
    vpa = atoms.map(lambda a: _volume(a.lattice_mat) / a.num_atoms)
    assert vpa.min() > 4 * sio.MIN_VOLUME_PER_ATOM_A3
    shortest = min(p[0] for p in (sio.closest_pair(a, 1.0) for a in atoms) if p is not None)
    assert shortest > 1.4 * sio.MIN_DISTANCE_A
    gaps = atoms.map(lambda a: max(sio.vacuum_gaps(a)))
    assert gaps.max() < sio.VACUUM_GAP_A


def test_a_trajectory_is_read_as_its_first_frame_and_says_so(tmp_path):
    frame = "0 0 0\n0.5 0.5 0.5\n"
    f = tmp_path / "XDATCAR"
    f.write_text("MgO run\n1\n0 2.1 2.1\n2.1 0 2.1\n2.1 2.1 0\nMg O\n1 1\n"
                 f"Direct configuration=     1\n{frame}Direct configuration=     2\n{frame}")
    [it] = collect([f])
    assert it.error is None and it.formula == "MgO"
    assert it.flags["first_frame"].startswith("a trajectory (XDATCAR, 2 frames): its first frame was read")
