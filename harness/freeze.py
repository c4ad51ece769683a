"""``python -m harness benchmark freeze``: write the two benchmark definitions once.

* ``dft_3d_kpoint_length_unit``: the jarvis-leaderboard package's split (44,313 / 5,540 /
  5,539; the one id listed in several splits kept in the last only). Its lattice is
  recorded when the local store holds every val/test structure (online), else left null.
* ``dft_3d_on_subset_kpoint_length_unit``: the ids of the official split that the local
  store covers, pinned to that store's sha256 (offline: the O/N compounds,
  13,626 / 1,767 / 1,708), with its lattice.

Scratch runs (``run --scratch``) freeze a throw-away definition the same way into their
own output folder.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from harness import benchmark as bm
from harness.errors import HarnessError
from harness.split import Split

KEY_TEMPLATE = "AI-SinglePropertyPrediction-kpoint_length_unit-{dataset}-test-mae"
DATASET = "dft_3d_2021"  # jarvis.db.figshare key of the structures


def base_spec(split: Split) -> dict:
    return {
        "name": None,
        "frozen": True,
        "key": KEY_TEMPLATE.format(dataset="dft_3d"),
        "target": "kpoint_length_unit",
        "units": "Angstrom (k-point length L; mesh n_i = max(1, int(L*|b_i| + 0.5)))",
        "metric": "mae",
        "dataset": DATASET,
        "id_key": "jid",
        "split_source": split.source,
        "published_sizes": {s: len(split.targets[s]) for s in bm.SPLITS},
        "overlaps": {j: list(ss) for j, ss in split.overlaps.items()},
        "overlap_rule": "an id listed in several splits is kept only in the last of train < val < test",
    }


def reciprocal_table(materials: pd.DataFrame, ids: list[str]) -> dict[str, list[float]]:
    from harness.kpoints import reciprocal_lengths

    return {i: reciprocal_lengths(materials.at[i, "atoms"].lattice_mat)
            for i in tqdm(ids, desc="reciprocal lattices", unit="struct", leave=False, mininterval=2)}


def official_files(split: Split, materials: pd.DataFrame | None) -> dict[str, bytes]:
    ids = {s: split.ids(s) for s in bm.SPLITS}
    spec = {**base_spec(split), "store": None, "subset_of": None,
            "description": "The JARVIS-Leaderboard benchmark dft_3d_kpoint_length_unit, as published."}
    vt = ids["val"] + ids["test"]
    recip = None
    if materials is not None and all(i in materials.index for i in vt):
        recip = reciprocal_table(materials, vt)
    return bm.definition_files(bm.OFFICIAL, spec, ids, split.targets, recip)


def subset_files(split: Split, materials: pd.DataFrame, provenance: dict, name: str = bm.SUBSET,
                 limit: int | None = None, frozen: bool = True) -> dict[str, bytes]:
    have = set(materials.index)
    ids = {s: [i for i in split.ids(s) if i in have][:limit] for s in bm.SPLITS}
    if not all(ids.values()):
        raise HarnessError(f"{provenance.get('file')}: the store covers no id of some split; nothing to freeze")
    tag = name.removesuffix("_kpoint_length_unit")
    spec = {**base_spec(split), "frozen": frozen, "key": KEY_TEMPLATE.format(dataset=tag),
            "store": {"dataset": provenance["dataset"], "file": provenance["file"], "sha256": provenance["sha256"]},
            "subset_of": bm.OFFICIAL,
            "description": (f"The ids of {bm.OFFICIAL} whose structure is in the store {provenance['file']} "
                            f"(sha256 above){f', first {limit} per split' if limit else ''}: same targets, same "
                            "split; published models are re-scored on these test ids.")}
    recip = reciprocal_table(materials, ids["val"] + ids["test"])
    return bm.definition_files(name, spec, ids, split.targets, recip)


def freeze(root: Path, which: list[str], split: Split, materials: pd.DataFrame | None,
           provenance: dict | None) -> list[tuple[str, str]]:
    """Freeze the named definitions under ``root``; [(name, "written"|"unchanged")]."""
    done = []
    for name in which:
        if name == bm.OFFICIAL:
            files = official_files(split, materials)
        elif name == bm.SUBSET:
            if materials is None:
                raise HarnessError(f"{name}: needs the local structure store (--data-dir)")
            files = subset_files(split, materials, provenance)
        else:
            raise HarnessError(f"{name}: unknown definition (known: {bm.OFFICIAL}, {bm.SUBSET})")
        done.append((name, bm.write(root, name, files)))
    return done
