"""CrabNet family tools (the harness runs the rows themselves; these are for the
pretraining check, a quick evaluation of all five rows and throughput numbers).

  python -m modellib.crabnet pretrain [--source eform density] [--profile cpu] [--threads 1]
  python -m modellib.crabnet evaluate [--rows composition eform_finetune_all ...] [--threads 1]
  python -m modellib.crabnet throughput [--profile cpu paper] [--n 1024]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROWS = ("composition", "eform_finetune_all", "eform_finetune_head", "density_finetune_all", "density_finetune_head")


def _pretrain(args) -> int:
    import torch

    from modellib.crabnet import pretrain as pt
    from modellib.crabnet.profiles import get_profile, resolve_profile
    from harness.paths import REPO_ROOT

    if args.threads:
        torch.set_num_threads(args.threads)
    prof = get_profile(resolve_profile(args.profile))
    root = pt.default_root(None)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for source in args.source:
        t0 = time.perf_counter()
        ckpt = pt.ensure_pretrained(source, prof, args.seed, root, device=device)
        print(pt.check_message(ckpt["meta"]))
        pt.record_check(ckpt["meta"], REPO_ROOT / "pretraining.csv")
        print(f"{source}: {time.perf_counter() - t0:.0f} s this call (checkpoint {ckpt['meta']['checkpoint']})")
    return 0


def _evaluate(args) -> int:
    from harness.context import ModelContext
    from harness.metrics import regression_metrics
    from harness.paths import MODELS_DIR, cache_dir, default_data_dir
    from harness.registry import read_folder
    from harness.task import Task

    task = Task.load(default_data_dir(), cache_dir())
    print(task.coverage.summary())
    Xtr, ytr, Xte, yte = task.X("train"), task.y("train"), task.X("test"), task.y("test")
    out = []
    for row in args.rows:
        name = f"crabnet_{row}"
        model = read_folder(MODELS_DIR / name)
        ctx = ModelContext(cache_dir=cache_dir() / "models" / name, options={"profile": args.profile}, seed=args.seed,
                           n_jobs=args.threads or 2)
        est = model.load_module().make_model(ctx)
        if args.threads:
            est.set_params(n_threads=args.threads)
        t0 = time.perf_counter()
        est.fit(Xtr, ytr)
        fit_s = time.perf_counter() - t0
        pred = est.predict(Xte)
        m = regression_metrics(yte, pred)
        rec = {"model": name, "profile": est.profile_, **{k: round(v, 4) for k, v in m.items()},
               "n_train": len(ytr), "n_test": len(yte), "fit_seconds": round(fit_s, 1),
               "epochs_run": est.epochs_run_, "pretrained": est.pretrained_}
        out.append(rec)
        print(json.dumps(rec), flush=True)
    base = next((r for r in out if r["model"] == "crabnet_composition"), None)
    print(f"\n{'model':32s} {'MAE':>8s} {'RMSE':>8s} {'R2':>7s} {'dMAE vs composition':>20s} {'fit s':>7s}")
    for r in out:
        d = f"{r['mae'] - base['mae']:+.3f}" if base else "-"
        print(f"{r['model']:32s} {r['mae']:8.3f} {r['rmse']:8.3f} {r['r2']:7.3f} {d:>20s} {r['fit_seconds']:7.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


def _throughput(args) -> int:
    import pandas as pd
    import torch

    from modellib.crabnet.pretrain import MATBENCH_CV
    from modellib.crabnet.profiles import get_profile
    from modellib.crabnet.train import measure_throughput

    if args.threads:
        torch.set_num_threads(args.threads)
    df = pd.read_csv(MATBENCH_CV / "train0.csv").iloc[: args.n]
    for name in args.profile:
        p = get_profile(name)
        for mode in ("all", "head"):
            sps = measure_throughput(p.arch(), df, p.batch_size, mode=mode)
            print(f"{name:6s} {mode:4s} threads={torch.get_num_threads()}: {sps:7.0f} training samples/s")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m modellib.crabnet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pretrain", help="pretrain (cached) and record the check in pretraining.csv")
    p.add_argument("--source", nargs="+", default=["eform", "density"], choices=["eform", "density"])
    p.add_argument("--profile", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_pretrain)
    e = sub.add_parser("evaluate", help="train rows on the covered train ids, score on the covered test ids")
    e.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    e.add_argument("--profile", default="auto")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--json", default=None, help="also write the results here")
    e.set_defaults(func=_evaluate)
    t = sub.add_parser("throughput", help="training samples/s per profile")
    t.add_argument("--profile", nargs="+", default=["cpu", "paper"])
    t.add_argument("--n", type=int, default=1024)
    t.add_argument("--threads", type=int, default=None)
    t.set_defaults(func=_throughput)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
