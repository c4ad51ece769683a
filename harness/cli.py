"""Command line: ``python -m harness {run,validate,new-model,leaderboard,predict} --help``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness import paths
from harness.errors import HarnessError

DESCRIPTION = """\
kspacing-bench: train and rank machine-learning models that predict the converged
DFT k-point length (JARVIS-DFT kpoint_length_unit) on the fixed JARVIS-Leaderboard
split dft_3d_kpoint_length_unit.

Data: structures are read with jarvis.db.figshare.data(dataset, store_dir=DATA_DIR).
DATA_DIR is --data-dir, else $KSPACING_DATA_DIR, else ../shared/data/jarvis when it
exists, else jarvis-tools' own cache (downloads the full release when online).
Only split ids with a structure are used; every run prints the counts per split.
"""


def _data_dir(args) -> Path | None:
    return Path(args.data_dir) if args.data_dir else paths.default_data_dir()


def _profile(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import torch

        return "paper" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _models_dir(args) -> Path:
    return Path(args.models_dir) if getattr(args, "models_dir", None) else paths.MODELS_DIR


def _output_dirs() -> dict:
    """Where leaderboard.rebuild reads and writes (read at call time, so tests can move them)."""
    return {"submissions_dir": paths.SUBMISSIONS_DIR, "results_dir": paths.RESULTS_DIR,
            "leaderboard_csv": paths.LEADERBOARD_CSV, "readme": paths.README}


def _rebuild_leaderboard(spec, split, reference_dir, check: bool = False):
    """leaderboard.rebuild on the current output paths. A scratch $KSPACING_OUTPUT_DIR
    gets its own README.md holding only the table (removed again if the rebuild fails)."""
    from harness import atomic, leaderboard

    stub = not check and not paths.output_is_repo() and not paths.README.is_file()
    if stub:
        atomic.write_text(paths.README, f"# kspacing-bench leaderboard (${paths.OUTPUT_DIR_ENV} output)\n\n"
                          f"{leaderboard.README_START}\n{leaderboard.README_END}\n")
    try:
        return leaderboard.rebuild(spec, split, reference_dir, check=check, **_output_dirs())
    except BaseException:
        if stub:
            paths.README.unlink(missing_ok=True)
        raise


def cmd_run(args) -> int:
    from harness import registry
    from harness.cluster import joblib_backend

    if args.limit is not None and (args.limit < 1 or paths.output_is_repo()):
        print(f"error: --limit {args.limit}: a slice is not the benchmark; it needs N >= 1 and ${paths.OUTPUT_DIR_ENV} "
              "set to a scratch folder (the committed submissions and leaderboard stay untouched)", file=sys.stderr)
        return 2
    models_dir = _models_dir(args)
    folders, errors = registry.discover(models_dir)
    known = {m.name: m for m in folders}
    if args.all:
        selected = folders
    else:
        unknown = [n for n in args.names if n not in known and not (models_dir / n).is_dir()]
        if unknown:
            print(f"error: no model folder models/{unknown[0]}/ (known: {', '.join(known) or 'none'})", file=sys.stderr)
            return 2
        selected = [known[n] for n in args.names if n in known]
        errors = [e for e in errors if any(f"/{n}/" in "/" + e for n in args.names)]
    for e in errors:
        print(f"error: {e}", file=sys.stderr)

    with joblib_backend(args.dask_scheduler):  # connect before the data load: a bad address fails fast
        return _run_selected(args, selected, errors)


def _run_selected(args, selected, errors) -> int:
    from harness.runner import slice_task, write_coverage
    from harness.task import Task

    cache = paths.cache_dir()
    task = Task.load(_data_dir(args), cache)
    # A slice keeps its model caches and fitted artifacts apart from full runs'.
    run_cache = cache
    if args.limit is not None:
        task = slice_task(task, args.limit)
        run_cache = cache / f"limit-{args.limit}"
        print(f"SLICE (--limit {args.limit}): only the first {args.limit} covered ids of each split are used; "
              "scores are not comparable with the leaderboard")
    print(task.coverage.summary())
    write_coverage(task, paths.RESULTS_DIR, limit=args.limit)
    profile = _profile(args.profile)
    outcomes = _run_models(task, selected, args, profile, cache, run_cache)
    _print_leaderboard(task)
    names = [o.name for o in outcomes if not o.ok] + [e.split(":")[0] for e in errors]
    if names:
        print(f"\n{len(names)} model(s) failed: {', '.join(names)}", file=sys.stderr)
        return 1
    return 0


def _run_models(task, selected, args, profile, cache, run_cache) -> list:
    from harness.context import ModelContext
    from harness.runner import run_one

    outcomes = []
    for model in selected:
        print(f"\n== {model.name} (profile {profile}) ==", flush=True)
        ctx = ModelContext(cache_dir=run_cache / "models" / model.name, profile=profile, seed=args.seed,
                           n_jobs=args.n_jobs, shared_cache_dir=cache)
        out = run_one(task, model, ctx, submissions_dir=paths.SUBMISSIONS_DIR, results_dir=paths.RESULTS_DIR,
                      artifacts_dir=run_cache)
        print(f"{model.name}: " + (f"test MAE {out.metrics['mae']:.3f}, R2 {out.metrics['r2']:.3f} ({out.seconds:.0f} s)" if out.ok else f"FAILED: {out.message}"), flush=True)
        outcomes.append(out)
    return outcomes


def _print_leaderboard(task) -> None:
    _, rows, notes = _rebuild_leaderboard(task.spec, task.split, paths.default_reference_dir())
    for n in notes:
        print(f"note: {n}")
    c = task.coverage.counts()
    print(f"\nLeaderboard on the covered test ids ({c['test']['covered']:,} of {c['test']['total']:,}); trained on {c['train']['covered']:,} of {c['train']['total']:,} train ids:")
    print(f"{'rank':>4}  {'model':<34} {'kind':<9} {'MAE':>7} {'RMSE':>7} {'R2':>6}")
    for rank, r in enumerate(rows, 1):
        print(f"{rank:>4}  {r.model:<34} {r.kind:<9} {r.metrics['mae']:>7.3f} {r.metrics['rmse']:>7.3f} {r.metrics['r2']:>6.3f}")


def _validate_submissions() -> tuple[int, list[str]]:
    """Every submissions/*/ file parsed and id-checked against results/coverage.json."""
    from harness import leaderboard, submission
    from harness.benchmark import load_spec

    spec = load_spec()
    folders = sorted(p for p in paths.SUBMISSIONS_DIR.glob("*") if p.is_dir())
    if not folders:
        return 0, []
    test_ids = leaderboard.read_coverage(paths.RESULTS_DIR)["test_ids"]
    problems = []
    for folder in folders:
        try:
            submission.validate_file(folder / spec.submission_filename, test_ids)
            submission.read_metadata(folder / "metadata.json")
        except HarnessError as err:
            problems.append(str(err))
    return len(folders), problems


def cmd_validate(args) -> int:
    from harness import registry

    folders, errors = registry.discover(_models_dir(args))
    for e in errors:
        print(e, file=sys.stderr)
    bad_imports = 0
    for m in folders:
        try:
            m.load_module()
        except HarnessError as err:
            print(err, file=sys.stderr)
            bad_imports += 1
    n_subs, bad_subs = _validate_submissions()
    for e in bad_subs:
        print(e, file=sys.stderr)
    if errors or bad_imports or bad_subs:
        return 1
    print(f"{len(folders)} model folder(s) valid: {', '.join(m.name for m in folders)}")
    print(f"{n_subs} submission(s) valid against {paths.RESULTS_DIR.name}/coverage.json")
    return 0


def cmd_new_model(args) -> int:
    from harness.scaffold import new_model

    path = new_model(args.name, _models_dir(args))
    print(f"created {path}/ from models/_template/: edit model.yaml and model.py, then run "
          f"`python -m harness run {args.name}` (see CONTRIBUTING.md)")
    return 0


def cmd_leaderboard(args) -> int:
    from harness.benchmark import load_spec, load_split

    spec = load_spec()
    ref = Path(args.reference_dir) if args.reference_dir else paths.default_reference_dir()
    current, rows, notes = _rebuild_leaderboard(spec, load_split(spec), ref, check=args.check)
    for n in notes:
        print(f"note: {n}")
    if args.check:
        if not current:
            print(f"{paths.LEADERBOARD_CSV.name} or the README table is stale: run `python -m harness leaderboard`", file=sys.stderr)
            return 1
        print(f"leaderboard.csv and README table are current ({len(rows)} rows)")
        return 0
    print(f"wrote {paths.LEADERBOARD_CSV.name} and the README table ({len(rows)} rows)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="train + evaluate models, write submissions, rebuild the leaderboard",
                       description="Train each selected model folder on the covered train ids, predict val and test, "
                       "write submissions/<name>/ (JARVIS-Leaderboard files), results/<name>/ (parity plot, val "
                       "predictions), save the fitted model under the cache dir, then rebuild leaderboard.csv.")
    r.add_argument("names", nargs="*", metavar="NAME", help="model folder names under models/")
    r.add_argument("--all", action="store_true", help="run every model folder (folders starting with _ are skipped)")
    r.add_argument("--data-dir", help=f"jarvis-tools store dir holding the dataset zip (default: ${paths.DATA_DIR_ENV} or ../shared/data/jarvis or jarvis-tools' cache)")
    r.add_argument("--profile", choices=["auto", "cpu", "paper"], default="auto",
                   help="compute profile for models that have one (auto: paper with CUDA, else cpu)")
    r.add_argument("--seed", type=int, default=0, help="random seed passed to every model (default 0)")
    r.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1, help="CPU workers for models that parallelise")
    r.add_argument("--models-dir", help=f"folder holding the model folders (default: ${paths.MODELS_DIR_ENV} or models/)")
    r.add_argument("--limit", type=int, metavar="N",
                   help=f"testing/debugging only: use the first N covered ids of each split (published order). "
                   f"Refused unless ${paths.OUTPUT_DIR_ENV} points at a scratch folder; model caches go to "
                   f"$KSPACING_CACHE_DIR/limit-N/, recorded as \"limit\" in results/coverage.json")
    r.add_argument("--dask-scheduler", metavar="ADDRESS",
                   help="run the joblib-parallel work (structure featurization, forests) on this Dask cluster, "
                   "e.g. tcp://10.0.0.5:8786, through joblib's dask backend (needs dask[distributed] here and on "
                   "the workers; default: local processes)")
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("validate", help="check every model folder's metadata and module import, and every submission file",
                       description="Validate models/*/model.yaml against harness/schemas/model.schema.json, import each "
                       "model.py, and check every submissions/*/ file (format, finite predictions, exactly the test ids "
                       "of results/coverage.json).")
    v.add_argument("--models-dir", help=f"folder holding the model folders (default: ${paths.MODELS_DIR_ENV} or models/)")
    v.set_defaults(func=cmd_validate)

    nm = sub.add_parser("new-model", help="scaffold models/NAME/ from models/_template/",
                        description="Copy models/_template/ to models/NAME/ and set its name. NAME: lowercase letters, "
                        "digits and underscores, starting with a letter or digit; an existing folder is never touched.")
    nm.add_argument("name", metavar="NAME")
    nm.add_argument("--models-dir", help=f"folder holding the model folders (default: ${paths.MODELS_DIR_ENV} or models/)")
    nm.set_defaults(func=cmd_new_model)

    lb = sub.add_parser("leaderboard", help="rebuild leaderboard.csv + README table from submission files",
                        description="Recompute every metric from submissions/*/ and the published split's truth, add "
                        "reference rows for published JARVIS-Leaderboard models on the same covered test ids.")
    lb.add_argument("--check", action="store_true", help="do not write; exit 1 if the committed files differ from a rebuild")
    lb.add_argument("--reference-dir", help=f"published contributions folder (default: ${paths.REFERENCE_DIR_ENV} or ../shared/data/jarvis_leaderboard/contributions)")
    lb.set_defaults(func=cmd_leaderboard)

    from harness.predict import add_parser as add_predict_parser  # light import; heavy ones are lazy

    add_predict_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run" and not args.all and not args.names:
        parser.error("run: give model NAME(s) or --all")
    try:
        return args.func(args)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from caches", file=sys.stderr)
        return 130
