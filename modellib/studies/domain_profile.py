"""Writes the committed domain profile (results/domain/<benchmark>.json) that the core's
domain check (harness.domain) reads: the training set's composition statistics, space
groups and vacuum gaps, with P(metal) from the model library's metallicity model, which
is why it lives here and not in the core."""

from __future__ import annotations

from pathlib import Path

from harness.domain import build_profile, default_profile_path, profile_digest, save_profile
from harness.errors import HarnessError


def main(argv=None) -> int:
    """``python -m modellib.studies.domain_profile [--benchmark NAME]``: write the domain profile of a frozen
    benchmark's training set (P(metal) from modellib.features.metallicity) to
    results/domain/<benchmark>.json."""
    import argparse
    import sys

    from harness import benchmark as bm
    from harness import paths
    from harness.task import Task
    from modellib.features.metallicity import fitted_metallicity

    ap = argparse.ArgumentParser(prog="python -m modellib.studies.domain_profile", description=main.__doc__.split("\n\n")[0])
    ap.add_argument("--benchmark", default=bm.SUBSET)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    try:
        bench = bm.load(a.benchmark, paths.benchmarks_dir())
        X = Task.load(bench).X("train")
        print(f"[domain] {bench.name}: {len(X):,} training structures; metallicity model ...", flush=True)
        p_metal = fitted_metallicity(paths.cache_dir(), n_jobs=1).predict_proba_metal(list(X["formula"]))
        print("[domain] profile (composition statistics, space groups, vacuum gaps) ...", flush=True)
        profile = build_profile(X, targets=bench.y("train"), p_metal=p_metal)
        profile["benchmark"] = {"name": bench.name, "definition_sha256": bench.definition_sha256}
        profile["sha256"] = profile_digest(profile)
        out = a.out or default_profile_path(bench.name)
        save_profile(profile, out)
        print(f"[domain] wrote {out} ({out.stat().st_size:,} bytes; far threshold {profile['far_threshold']:.3f}, "
              f"metals {100 * profile['metal_fraction']:.0f} %)", flush=True)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
