"""Command line: ``python -m harness COMMAND --help``. Parses, prints, sets exit codes;
the work lives in the modules each command names."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness import paths
from harness.errors import HarnessError

DESCRIPTION = """\
kspacing-bench: train and rank machine-learning models that predict the converged
DFT k-point length (JARVIS-DFT kpoint_length_unit) on frozen benchmark definitions
(benchmarks/<name>/): the official JARVIS-Leaderboard split dft_3d_kpoint_length_unit
and the offline subset dft_3d_on_subset_kpoint_length_unit.

Data: structures are read with jarvis.db.figshare.data("dft_3d_2021", store_dir=DATA_DIR).
DATA_DIR is --data-dir, else $KSPACING_DATA_DIR, else ../shared/data/jarvis when it
exists, else jarvis-tools' own cache (downloads the full release when online). `run`
trains on the largest frozen benchmark the store fully covers.
"""


def _data_dir(args) -> Path | None:
    return Path(args.data_dir) if getattr(args, "data_dir", None) else paths.default_data_dir()


def _models_dir(args) -> Path:
    return Path(args.models_dir) if getattr(args, "models_dir", None) else paths.models_dir()


def _reference_dir(args) -> Path:
    return Path(args.reference_dir) if getattr(args, "reference_dir", None) else paths.default_reference_dir()


def _load_store(data_dir: Path | None):
    from harness import data
    from harness.freeze import DATASET

    return data.load_materials(DATASET, data_dir, paths.cache_dir())


# ---------------------------------------------------------------- run


def _select(args, models_dir: Path) -> tuple[list, list[tuple[str, str]]]:
    """(model folders to run, [(name, error)] of invalid ones among them)."""
    from harness import registry

    folders, bad = [], []
    for path in registry.model_dirs(models_dir):
        try:
            folders.append(registry.read_folder(path))
        except HarnessError as err:
            bad.append((path.name, str(err)))
    folders.sort(key=lambda m: (m.meta.get("run_order", 100), m.name))
    known = {m.name: m for m in folders}
    names = [] if args.all else args.names
    hidden = [n for n in names if n.startswith(("_", "."))]
    if hidden:
        raise HarnessError(f"{models_dir.name}/{hidden[0]}/: folders starting with _ or . are not models (templates, "
                           f"caches); copy one with `python -m harness new-model NAME`")
    unknown = [n for n in names if n not in known and not (models_dir / n).is_dir()]
    if unknown:
        raise registry.no_folder(unknown[0], models_dir, known)
    selected = folders if args.all else [known[n] for n in args.names if n in known]
    dangling = registry.dependency_problems(selected, models_dir)  # such a model fails alone, as an invalid folder
    bad = [(n, e) for n, e in bad if args.all or n in args.names] + [(n, e) for n, e in dangling]
    return [m for m in selected if m.name not in {n for n, _ in dangling}], bad


def _choose_benchmark(args, materials, prov):
    """The benchmark this run trains on: the largest frozen definition the store fully
    covers; with --scratch, a throw-away definition of whatever the store covers."""
    from harness import benchmark as bm

    if args.scratch:
        from harness.freeze import subset_files
        from harness.split import load_split

        files = subset_files(load_split(), materials, prov, name=bm.SCRATCH, limit=args.limit, frozen=False)
        bm.write(paths.benchmarks_dir(), bm.SCRATCH, files, overwrite=True)
        return bm.load(bm.SCRATCH, paths.benchmarks_dir())
    return bm.trained_on(paths.benchmarks_dir(), materials.index, prov["sha256"], prov["file"])


def cmd_run(args) -> int:
    from harness.cluster import joblib_backend

    from harness import benchmark as bm

    if args.scratch:
        scratch = Path(args.scratch).resolve()
        if scratch == paths.REPO_ROOT or paths.REPO_ROOT in scratch.parents:
            raise HarnessError(f"--scratch {args.scratch}: must be a folder outside the repository")
        os.environ[paths.OUTPUT_DIR_ENV] = str(scratch)  # for this process and the model processes
    elif not paths.is_repo_output() and (args.limit is not None or not bm.names(paths.benchmarks_dir())):
        args.scratch = str(paths.output_dir())  # $KSPACING_OUTPUT_DIR without definitions: a scratch root
    if args.limit is not None and (args.limit < 1 or not args.scratch):
        print(f"error: --limit {args.limit}: a slice is not the benchmark; it needs N >= 1 and --scratch DIR",
              file=sys.stderr)
        return 2
    models_dir = _models_dir(args)
    selected, bad = _select(args, models_dir)
    for _, e in bad:
        print(f"error: {e}", file=sys.stderr)
    with joblib_backend(args.dask_scheduler) as client:  # a bad address fails fast, before the data load
        materials, prov = _load_store(_data_dir(args))
        bench = _choose_benchmark(args, materials, prov)
        del materials
        print(f"training on {bench.name}: {bench.counts_text()} ids" + (f" (SCRATCH output in {paths.output_dir()}; "
              "not the leaderboard)" if args.scratch else ""), flush=True)
        outcomes = _run_models(args, selected, bench.name, models_dir, client)
    _print_leaderboard(args)
    failed = [(o.name, o.message) for o in outcomes if not o.ok] + bad
    if failed:
        print(f"\n{len(failed)} model(s) failed: {', '.join(sorted({n for n, _ in failed}))}", file=sys.stderr)
        return 1
    return 0


def _child_args(args, n_jobs: int, models_dir: Path | None = None) -> dict:
    """What every model process gets (harness.schedule.child_command); seed/scheduler when the command has them."""
    return {"data_dir": _data_dir(args), "models_dir": models_dir or _models_dir(args), "seed": getattr(args, "seed", None),
            "n_jobs": n_jobs, "dask_scheduler": getattr(args, "dask_scheduler", None),
            "retrain": getattr(args, "retrain", True)}  # reproduce and seeds always refit


def _run_models(args, selected, benchmark: str, models_dir: Path, client=None) -> list:
    from harness.schedule import run_models

    # default: one model per core here, one per worker on a Dask cluster
    slots = args.parallel or (len(client.ncores()) if client is not None else os.cpu_count() or 1)
    parallel = max(1, min(slots, len(selected)))
    n_jobs = max(1, args.n_jobs // parallel)  # the cores are shared between the model processes
    child_args = _child_args(args, n_jobs, models_dir)
    t0 = {}

    def started(name, log):
        import time

        t0[name] = time.perf_counter()
        print(f"== {name}" + (f" (log: {log})" if log else ""), flush=True)

    def done(o):
        text = (f"test MAE {o.metrics['mae']:.3f}, R2 {o.metrics['r2']:.3f} ({o.seconds:.0f} s"
                f"{', inputs unchanged: saved fit reused' if o.reused else ', predictions unchanged' if not o.changed else ''})"
                if o.ok else f"FAILED: {o.message}")
        print(f"{o.name}: {text}", flush=True)
        if o.ok and o.message and not o.reused:  # reuse is said in the line above
            print(f"warning: {o.message}", flush=True)

    needs = {m.name: list(m.meta.get("needs", [])) for m in selected}
    after = {m.name: list(m.meta.get("after", [])) for m in selected}
    return run_models([m.name for m in selected], benchmark, child_args, on_done=done, needs=needs, after=after,
                      parallel=parallel, log_dir=paths.cache_dir() / "logs", on_start=started, client=client)


def cmd_run_model(args) -> int:
    """The model's own process: load the store and the definition, fit, write, report."""
    import json

    from harness import atomic, benchmark as bm, registry
    from harness.cluster import joblib_backend
    from harness.context import ModelContext
    from harness.runner import Outcome, run_one
    from harness.task import Task

    def report(o: Outcome) -> int:
        atomic.write_text(args.outcome, json.dumps(o.as_dict()))
        return 0 if o.ok else 1

    try:
        folder = registry.read_folder(_models_dir(args) / args.name)
        bench = bm.load(args.benchmark, paths.benchmarks_dir())
        task = Task.load(bench, _data_dir(args))
    except HarnessError as err:
        return report(Outcome(args.name, False, str(err)))
    cache = paths.cache_dir()
    run_cache = paths.run_cache_dir()  # scratch roots keep their fits apart from the repository's
    ctx = ModelContext(cache_dir=run_cache / "models" / folder.name, options=dict(folder.meta.get("options", {})), seed=args.seed,
                       n_jobs=args.n_jobs, shared_cache_dir=cache)
    with joblib_backend(args.dask_scheduler):
        out = run_one(task, folder, ctx, submissions_dir=paths.submissions_dir(), results_dir=paths.results_dir(),
                      artifacts_dir=run_cache, retrain=args.retrain)
    return report(out)


def _print_leaderboard(args) -> None:
    from harness import leaderboard

    _, boards, notes = _rebuild(args, check=False)
    for n in notes:
        print(f"note: {n}")
    for board in boards:
        if not board.rows:
            continue
        print(f"\n{board.benchmark.name} ({board.benchmark.counts_text()}):")
        print(f"{'rank':>4}  {'model':<36} {'kind':<9} {'MAE':>7}  {'95 % CI':<13} {'R2':>6}")
        for rank, r in enumerate(board.rows, 1):
            print(f"{rank:>4}  {r.model:<36} {r.kind:<9} {r.metrics['mae']:>7.3f}  {r.ci[0]:5.2f}-{r.ci[1]:<6.2f} "
                  f"{r.metrics['r2']:>6.3f}")
    del leaderboard


def _rebuild(args, check: bool):
    """leaderboard.rebuild on the current output root. A scratch root gets its own
    README.md holding only the tables (removed again if the rebuild fails)."""
    from harness import atomic, leaderboard

    readme = paths.output_dir() / "README.md"
    stub = not check and not paths.is_repo_output() and not readme.is_file()
    if stub:
        atomic.write_text(readme, f"# kspacing-bench leaderboard (scratch output)\n\n"
                          f"{leaderboard.README_START}\n{leaderboard.README_END}\n")
    try:
        return leaderboard.rebuild(paths.output_dir(), _reference_dir(args), _models_dir(args), check=check)
    except BaseException:
        if stub:
            readme.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- other commands


def cmd_validate(args) -> int:
    from harness import registry, validate

    folders, errors = registry.discover(_models_dir(args))
    from harness.scaffold import placeholder_problems

    problems = (list(errors) + [e for _, e in registry.dependency_problems(folders, _models_dir(args))]
                + placeholder_problems(folders))
    for m in folders:
        try:
            m.load_module()
        except HarnessError as err:
            problems.append(str(err))
    n_subs, bad_subs = validate.submissions(paths.output_dir(), _models_dir(args))
    problems += bad_subs
    for e in problems:
        print(e, file=sys.stderr)
    if problems:
        return 1
    print(f"{len(folders)} model folder(s) valid: {', '.join(m.name for m in folders)}")
    print(f"{n_subs} submission file(s) valid against benchmarks/ and their run records")
    return 0


def cmd_new_model(args) -> int:
    from harness.scaffold import new_model

    path = new_model(args.name, _models_dir(args))
    print(f"created {path}/ from models/_template/: edit model.yaml and model.py, then run "
          f"`python -m harness run {args.name}` (see CONTRIBUTING.md)")
    return 0


def cmd_leaderboard(args) -> int:
    current, boards, notes = _rebuild(args, check=args.check)
    for n in notes:
        print(f"note: {n}")
    n_rows = sum(len(b.rows) for b in boards)
    if args.check:
        if not current:
            print("leaderboard.csv, the README tables or the trade-off plot are stale: run `python -m harness leaderboard`",
                  file=sys.stderr)
            return 1
        print(f"leaderboard.csv, README tables and trade-off plot are current ({len(boards)} benchmarks, {n_rows} rows)")
        return 0
    print(f"wrote leaderboard.csv and the README tables ({len(boards)} benchmarks, {n_rows} rows)")
    return 0


def cmd_benchmark(args) -> int:
    from harness import benchmark as bm

    root = paths.benchmarks_dir()
    if args.action == "freeze":
        from harness.freeze import freeze
        from harness.split import load_split

        which = args.names or [bm.OFFICIAL, bm.SUBSET]
        materials = prov = None
        if bm.SUBSET in which or not args.no_store:
            try:
                materials, prov = _load_store(_data_dir(args))
            except HarnessError:
                if bm.SUBSET in which:
                    raise
        for name, what in freeze(root, which, load_split(), materials, prov):
            print(f"{root.name}/{name}/: {what}")
        return 0
    defs = bm.load_all(root)
    materials = prov = None
    if args.action == "check":
        materials, prov = _load_store(_data_dir(args))
    for d in defs:
        line = f"{d.name}: {d.counts_text()} ids, key {d.key}, definition sha256 {d.definition_sha256[:12]}…, " \
               f"lattice {'yes' if d.recip is not None else 'no'}"
        if prov is not None:
            problem = d.store_problem(materials.index, prov["sha256"])
            line += f"; store {prov['file']}: " + ("covers it (run writes its submissions)" if problem is None
                                                   else f"does not cover it ({problem})")
        print(line)
    return 0


def cmd_reproduce(args) -> int:
    from harness.reproduce import reproduce

    child_args = _child_args(args, args.n_jobs)
    results = []
    for name in args.names:
        print(f"== reproduce {name}", flush=True)
        c = reproduce(name, child_args, Path(args.keep) / name if args.keep else None)
        print(c.line(), flush=True)
        results.append(c)
    print("\n| model | benchmark | result | changed test predictions | MAE committed | MAE now |")
    print("|---|---|---|---:|---:|---:|")
    for c in results:
        what = "failed" if c.message else ("byte-identical" if c.identical and c.val_identical else "differs")
        print(f"| {c.model} | {c.benchmark} | {what} | {c.n_changed:,} / {c.n:,} | {c.mae_committed:.4f} | {c.mae_new:.4f} |")
    return 0 if all(c.identical and c.val_identical and not c.message for c in results) else 1


def cmd_seeds(args) -> int:
    from harness.seeds import seed_spread

    child_args = _child_args(args, max(1, args.n_jobs // max(1, args.parallel)))
    for name in args.names:
        doc = seed_spread(name, args.n, child_args, parallel=args.parallel)
        print(f"{name}: test MAE {doc['mean']:.3f} ± {doc['std']:.3f} over seeds {doc['seeds']} "
              f"({', '.join(f'{v:.3f}' for v in doc['test_mae'])}) -> results/{name}/{doc['benchmark']}/seeds.json")
    return 0


def cmd_export(args) -> int:
    from harness.export import export

    dest = export(args.name, Path(args.dir), _models_dir(args), args.benchmark)
    print(f"wrote {dest}/ (JARVIS-Leaderboard contribution; copy it to jarvis_leaderboard/contributions/)")
    return 0


def _add_common(p, data=False, models=False, refs=False):
    if data:
        p.add_argument("--data-dir", help=f"jarvis-tools store dir holding the dataset zip (default: ${paths.DATA_DIR_ENV}, "
                       "or ../shared/data/jarvis, or jarvis-tools' cache)")
    if models:
        p.add_argument("--models-dir", help=f"folder holding the model folders (default: ${paths.MODELS_DIR_ENV} or models/)")
    if refs:
        p.add_argument("--reference-dir", help=f"published contributions folder (default: ${paths.REFERENCE_DIR_ENV} or "
                       "../shared/data/jarvis_leaderboard/contributions)")


def build_parser() -> argparse.ArgumentParser:
    prog = "kspacing" if Path(sys.argv[0]).name == "kspacing" else "python -m harness"  # the console script, or -m
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="train + evaluate models, write submissions and run records, rebuild the leaderboard",
                       description="Train each selected model folder, each in its own process, on the largest frozen "
                       "benchmark (benchmarks/) that the structure store fully covers; write submissions/<name>/ "
                       "(JARVIS-Leaderboard files), results/<name>/<benchmark>/ (val predictions, parity plot, run "
                       "record run.json), save the fitted model under the cache dir, then rebuild leaderboard.csv and "
                       "the README tables. A model that fails, crashes or is killed fails alone (exit 1, named).")
    r.add_argument("names", nargs="*", metavar="NAME", help="model folder names under models/")
    r.add_argument("--all", action="store_true", help="run every model folder (folders starting with _ are skipped)")
    _add_common(r, data=True, models=True, refs=True)
    r.add_argument("--retrain", action="store_true",
                   help="refit every selected model (default: a model whose code, model.yaml, benchmark, data, seed, "
                   "library versions and numeric environment are unchanged since its saved fit reuses it)")
    r.add_argument("--scratch", metavar="DIR", help="train on whatever split ids the store covers and write everything "
                   "(a throw-away definition, submissions, records, leaderboard) under DIR instead of the repository")
    r.add_argument("--seed", type=int, default=0, help="random seed passed to every model (default 0)")
    r.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1, help="CPU workers for models that parallelise")
    r.add_argument("--parallel", type=int, default=None, metavar="P",
                   help="model processes at once (default: one per CPU core, or one per worker with --dask-scheduler; "
                   "a single model shows live progress bars). With P > 1 each gets --n-jobs/P workers and writes its "
                   "output to $KSPACING_CACHE_DIR/logs/NAME.log; a model starts after those its model.yaml lists "
                   "under `needs:` (and does not run if one failed) and `after:` (whatever their outcome)")
    r.add_argument("--limit", type=int, metavar="N",
                   help="testing/debugging only, with --scratch: the first N covered ids of each split")
    r.add_argument("--dask-scheduler", metavar="ADDRESS",
                   help="run each model as a task on this Dask cluster (the worker starts the same model process; "
                   "the workers need this checkout, the data and the output folders at the same paths) and the "
                   "models' joblib-parallel work (structure featurization, forests) there too, "
                   "e.g. tcp://10.0.0.5:8786 (needs dask[distributed] here and on the workers; default: local)")
    r.set_defaults(func=cmd_run)

    rm = sub.add_parser("run-model")  # one model's process, started by `run`; hidden from --help below
    rm.add_argument("name")
    rm.add_argument("--benchmark", required=True)
    rm.add_argument("--outcome", required=True, type=Path)
    _add_common(rm, data=True, models=True)
    rm.add_argument("--seed", type=int, default=0)
    rm.add_argument("--n-jobs", type=int, default=1)
    rm.add_argument("--dask-scheduler")
    rm.add_argument("--retrain", action="store_true")
    rm.set_defaults(func=cmd_run_model)

    v = sub.add_parser("validate", help="check model folders, submission files and run records",
                       description="Validate models/*/model.yaml against harness/schemas/model.schema.json, import each "
                       "model.py, and check every submissions/*/ folder: it has a model folder, each file is named by "
                       "a frozen benchmark's key and holds exactly its test ids with physical predictions (0 < L ≤ "
                       "1000 Å), and its run record matches the file.")
    _add_common(v, models=True)
    v.set_defaults(func=cmd_validate)

    nm = sub.add_parser("new-model", help="scaffold models/NAME/ from models/_template/",
                        description="Copy models/_template/ to models/NAME/ and set its name. NAME: lowercase letters, "
                        "digits and underscores, starting with a letter or digit; an existing folder is never touched.")
    nm.add_argument("name", metavar="NAME")
    _add_common(nm, models=True)
    nm.set_defaults(func=cmd_new_model)

    lb = sub.add_parser("leaderboard", help="rebuild leaderboard.csv + README tables from benchmarks/ and submission files",
                        description="Recompute every metric from submissions/*/ against each frozen definition's truth "
                        "(one table per benchmark), add the published JARVIS-Leaderboard rows on the same test ids, "
                        "bootstrap intervals and the L90 columns. Imports no jarvis-tools or model code.")
    lb.add_argument("--check", action="store_true", help="do not write; exit 1 if the committed files differ from a rebuild")
    _add_common(lb, models=True, refs=True)
    lb.set_defaults(func=cmd_leaderboard)

    b = sub.add_parser("benchmark", help="freeze, list or check the benchmark definitions in benchmarks/",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="freeze [NAME...]: write benchmarks/NAME/ once (default both): the official split\n"
                       "  from the jarvis-leaderboard package, and the ids of it the local store covers (pinned to\n"
                       "  the store's sha256). An existing, different definition is never rewritten.\n"
                       "list: the definitions and their hashes.\n"
                       "check: which definitions the local store fully covers (those `run` can write).")
    b.add_argument("action", choices=["freeze", "list", "check"])
    b.add_argument("names", nargs="*", metavar="NAME")
    b.add_argument("--no-store", action="store_true", help="freeze: do not read the store (official split only, no lattice)")
    _add_common(b, data=True)
    b.set_defaults(func=cmd_benchmark)

    rp = sub.add_parser("reproduce", help="retrain models in a scratch folder and compare with the committed submissions",
                        description="Retrain each NAME in its own process into a temporary output root, on the "
                        "benchmark of its committed run record, and compare the new test and val prediction files "
                        "with the committed ones. Prints byte-identical, or the number of changed predictions and "
                        "the MAE difference (exit 1). The committed files and fitted artifacts are never touched.")
    rp.add_argument("names", nargs="+", metavar="NAME")
    _add_common(rp, data=True, models=True)
    rp.add_argument("--seed", type=int, default=0, help="random seed (default 0, as the committed runs)")
    rp.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1, help="CPU workers for models that parallelise")
    rp.add_argument("--keep", metavar="DIR", help="write the scratch output under DIR/NAME/ and keep it")
    rp.set_defaults(func=cmd_reproduce)

    sd = sub.add_parser("seeds", help="test MAE over several training seeds (mean ± std) for the leaderboard",
                        description="Retrain each NAME with seeds 1..N-1 in scratch folders (seed 0 is the committed "
                        "run) and write results/NAME/<benchmark>/seeds.json; the leaderboard shows mean ± std.")
    sd.add_argument("names", nargs="+", metavar="NAME")
    sd.add_argument("--n", type=int, default=5, help="number of seeds including the committed seed 0 (default 5)")
    sd.add_argument("--parallel", type=int, default=1, metavar="P", help="seed runs at once (default 1)")
    sd.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1, help="CPU workers, shared by the parallel runs")
    _add_common(sd, data=True, models=True)
    sd.set_defaults(func=cmd_seeds)

    ex = sub.add_parser("export", help="write a JARVIS-Leaderboard contribution folder for one model",
                        description="Write DIR/kspacingbench_NAME/ with the model's submission for the official "
                        "benchmark, an upstream metadata.json and a run.sh that reproduces it from upstream's layout. "
                        "Needs an author email in models/NAME/model.yaml and a run on the full official split.")
    ex.add_argument("name", metavar="NAME")
    ex.add_argument("dir", metavar="DIR")
    ex.add_argument("--benchmark", default=None, help="definition to export (default: the official one)")
    _add_common(ex, models=True)
    ex.set_defaults(func=cmd_export)

    from harness.predict import add_parser as add_predict_parser  # light import; heavy ones are lazy

    add_predict_parser(sub)
    sub._choices_actions = [a for a in sub._choices_actions if a.dest != "run-model"]
    return p


def main(argv: list[str] | None = None) -> int:
    from harness import numeric_env

    numeric_env.apply()  # before numpy loads: the same kernels on every machine (see numeric_env.py)
    # spglib ≥ 2.5 prints its internal tolerance retries ("ssm_get_exact_positions failed") to
    # stderr unless told not to; they are not failures (spglib#338) and read like ones to users.
    os.environ.setdefault("SPGLIB_WARNING", "OFF")
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
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
