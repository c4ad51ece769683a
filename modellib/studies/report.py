"""A study's two result files, written the same way by every study: <stem>.md (what
people read, naming the command that made it) and <stem>.json (what tests recompute)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness import atomic


def write(out: Path, stem: str, module: str, argv, res: dict, markdown) -> Path:
    """Write ``out/<stem>.md`` (``markdown(res, command)``) and ``out/<stem>.json``
    atomically; ``argv``: the study's arguments (None: the process's). Returns the .md path."""
    command = f"python -m {module}" + "".join(f" {x}" for x in (argv if argv is not None else sys.argv[1:]))
    atomic.write_text(Path(out) / f"{stem}.md", markdown(res, command))
    atomic.write_text(Path(out) / f"{stem}.json", json.dumps(res, indent=1) + "\n")
    return Path(out) / f"{stem}.md"


def script_main(argv, *, prog: str, description: str, out: Path, stem: str, run, markdown, plot=None,
                summary=None) -> int:
    """The command line of a model folder's study script (models/<name>/<study>.py): fit and
    write ``out/<stem>.md`` and ``.json`` (and ``plot(res, out/<stem>.png)``), or with
    ``--markdown-only`` rewrite the .md (and .png) from the committed .json without fitting.
    ``run(n_rep=, n_jobs=)`` returns the result dict; ``summary(res)`` its console line."""
    import argparse

    from harness.errors import HarnessError

    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--n-rep", type=int, default=None, help="val halvings per grid point (default: the bound study's 50)")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=out, help=f"output folder (default {out.parent.name}/{out.name})")
    ap.add_argument("--markdown-only", action="store_true",
                    help=f"rewrite {stem}.md{' and .png' if plot else ''} from the committed {stem}.json (no fits)")
    a = ap.parse_args(argv)
    src = a.out / f"{stem}.json"
    if a.markdown_only:
        try:
            res = json.loads(src.read_text())
            atomic.write_text(a.out / f"{stem}.md", markdown(res, res["command"]))
            if plot is not None:
                plot(res, a.out / f"{stem}.png")
        except (OSError, ValueError, KeyError) as err:
            print(f"error: {src}: {err}", file=sys.stderr)
            return 1
        print(f"[{stem}] rewrote {a.out / f'{stem}.md'} from {src}")
        return 0
    try:
        res = run(n_rep=a.n_rep, n_jobs=a.n_jobs)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    res["command"] = f"python {prog}" + "".join(f" {x}" for x in (argv if argv is not None else sys.argv[1:]))
    atomic.write_text(a.out / f"{stem}.md", markdown(res, res["command"]))
    atomic.write_text(src, json.dumps(res, indent=1) + "\n")
    if plot is not None:
        plot(res, a.out / f"{stem}.png")
    print(f"[{stem}] {summary(res) if summary else 'done'}; wrote {a.out / f'{stem}.md'}")
    return 0
