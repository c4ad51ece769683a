"""Writes a benchmark's two domain files, which the core reads and cannot compute (they need
the model library's metallicity model and features):

* results/domain/<benchmark>.json: the domain profile of the training set (composition
  statistics, space groups, vacuum gaps, cell limits, P(metal)) that harness.domain checks
  new structures against;
* results/domain/<benchmark>.groups.csv: the metal / size / crystal-system label and the
  reciprocal lengths of the canonical cell of every val and test material, on which the
  per-group bound (harness.group_bound) is calibrated and the leaderboard measures each
  model's worst group.

``make run`` calls it with ``--missing-only`` before training, for the benchmark ``run``
trains on: with the full store online that is the official benchmark, whose files are not
committed, so predict's domain check and per-group bound hold there too."""

from __future__ import annotations

import sys
from pathlib import Path

from harness import atomic, paths
from harness import group_bound as gb
from harness.domain import build_profile, default_profile_path, profile_digest, save_profile
from harness.errors import HarnessError


def group_labels(materials, ids: dict[str, list[str]]) -> dict:
    """{split: {id: {metal, size, system, recip}}}: each material's group labels and the
    reciprocal lengths of the cell the model sees in predict (the canonical cell), so that
    calibration and predict place a material in the same group with the same costs. P(metal)
    from modellib.features.metallicity (cached once fitted)."""
    from harness.kpoints import reciprocal_lengths
    from harness.structure_io import canonical_cell
    from modellib.features.metallicity import fitted_metallicity
    from modellib.features.physics import physics_features

    met = fitted_metallicity(paths.cache_dir(), n_jobs=1)
    out = {}
    for s, want in ids.items():
        cells = [canonical_cell(a) for a in materials.loc[want, "atoms"]]
        F = physics_features(cells, paths.cache_dir())
        labels = gb.groups_of(F["n_atoms"].to_numpy(), F["spacegroup"].to_numpy(),
                              met.predict_proba_metal(list(materials.loc[want, "formula"])))
        out[s] = {i: {**g, "recip": reciprocal_lengths(c.lattice_mat)} for i, g, c in zip(want, labels, cells)}
    return out


def write_groups(path: Path, groups: dict) -> None:
    """The groups file (header harness.group_bound.GROUPS_HEADER), val then test ids in
    the definition's order. Floats as repr: read back bit for bit."""
    lines = [gb.GROUPS_HEADER] + [f"{s},{i},{g['metal']},{g['size']},{g['system']},"
                                  + ",".join(repr(float(x)) for x in g["recip"])
                                  for s in ("val", "test") for i, g in groups[s].items()]
    atomic.write_text(path, "\n".join(lines) + "\n")


def profile_of(task) -> dict:
    from modellib.features.metallicity import fitted_metallicity

    bench, X = task.benchmark, task.X("train")
    p_metal = fitted_metallicity(paths.cache_dir(), n_jobs=1).predict_proba_metal(list(X["formula"]))
    profile = build_profile(X, targets=bench.y("train"), p_metal=p_metal)
    profile["benchmark"] = {"name": bench.name, "definition_sha256": bench.definition_sha256}
    profile["sha256"] = profile_digest(profile)
    return profile


def main(argv=None) -> int:
    """``python -m modellib.studies.domain_profile [--benchmark NAME] [--missing-only]``: write a
    frozen benchmark's domain profile (results/domain/<benchmark>.json) and groups file
    (results/domain/<benchmark>.groups.csv)."""
    import argparse

    from harness import benchmark as bm
    from harness.task import Task

    ap = argparse.ArgumentParser(prog="python -m modellib.studies.domain_profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--benchmark", default=None,
                    help="a frozen benchmark (default: the one `harness run` trains on, the largest the store fully covers)")
    ap.add_argument("--missing-only", action="store_true", help="write only the files that do not exist yet")
    ap.add_argument("--out", type=Path, default=None, help="folder of the two files (default results/domain)")
    ap.add_argument("--data-dir", type=Path, default=None, help="structure store (default: as `harness run`)")
    a = ap.parse_args(argv)
    try:
        if a.benchmark is None:
            from harness import data
            from harness.freeze import DATASET

            materials, prov = data.load_materials(DATASET, a.data_dir or paths.default_data_dir(), paths.cache_dir())
            bench = bm.trained_on(paths.benchmarks_dir(), materials.index, prov["sha256"], prov["file"])
            task = Task(bench, materials, prov)
        else:
            task = Task.load(bm.load(a.benchmark, paths.benchmarks_dir()), a.data_dir)
        bench = task.benchmark
        out = a.out or default_profile_path(bench.name).parent
        profile_path = out / default_profile_path(bench.name).name
        groups_path = out / Path(gb.GROUPS_FILE.format(benchmark=bench.name)).name
        if not (a.missing_only and profile_path.is_file()):
            print(f"[domain] {bench.name}: profile of {len(task.ids('train')):,} training structures (metallicity model, "
                  "composition statistics, space groups, vacuum gaps) ...", flush=True)
            profile = profile_of(task)
            save_profile(profile, profile_path)
            print(f"[domain] wrote {profile_path} (far threshold {profile['far_threshold']:.3f}, metals "
                  f"{100 * profile['metal_fraction']:.0f} %)", flush=True)
        kept = [p.name for p in (profile_path, groups_path) if a.missing_only and p.is_file()]
        if kept:
            print(f"[domain] {bench.name}: kept {' and '.join(kept)} (present; --missing-only)", flush=True)
        if not (a.missing_only and groups_path.is_file()):
            ids = {s: list(task.ids(s)) for s in ("val", "test")}
            print(f"[domain] {bench.name}: group labels of {sum(map(len, ids.values())):,} val/test structures ...", flush=True)
            write_groups(groups_path, group_labels(task.materials, ids))
            print(f"[domain] wrote {groups_path}", flush=True)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
