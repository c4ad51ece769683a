"""Each model trains in its own process (``python -m harness run-model NAME``): a crash,
segfault or OOM kill fails that model alone, the others still run and the leaderboard is
still rebuilt. The parent only starts processes and reads their one-line outcomes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.runner import Outcome


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (a `kill -9` of
    `harness run` must not leave a model process writing files behind it). Linux only."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def child_command(name: str, benchmark: str, args: dict, outcome: Path) -> list[str]:
    cmd = [sys.executable, "-m", "harness", "run-model", name, "--benchmark", benchmark, "--outcome", str(outcome)]
    for flag in ("data_dir", "models_dir", "seed", "n_jobs", "profile", "dask_scheduler"):
        if args.get(flag) is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(args[flag])]
    return cmd


def run_in_process(name: str, benchmark: str, args: dict, env: dict | None = None) -> Outcome:
    """Run one model in a child process (``env``: extra environment, e.g. a scratch
    output root); whatever happens to it, return its Outcome."""
    with tempfile.TemporaryDirectory(prefix="kspacing-run-") as tmp:
        outcome = Path(tmp) / "outcome.json"
        # The child inherits stdout/stderr: its progress bars show as they happen.
        from harness.numeric_env import canonical_env

        proc = subprocess.run(child_command(name, benchmark, args, outcome),
                              env={**os.environ, **canonical_env(), **(env or {})}, preexec_fn=_die_with_parent)
        if outcome.is_file():
            try:
                return Outcome(**json.loads(outcome.read_text()))
            except (json.JSONDecodeError, TypeError):
                pass
        if proc.returncode < 0:
            why = (f"process killed by {_signal_name(proc.returncode)}"
                   + (" (out of memory?)" if -proc.returncode == signal.SIGKILL else ""))
        else:
            why = f"process exited with status {proc.returncode} before writing its outcome"
        return Outcome(name, False, f"{name}: {why}; nothing of this run was written for it")


def run_models(names: list[str], benchmark: str, args: dict, on_done=None) -> list[Outcome]:
    out = []
    for name in names:
        o = run_in_process(name, benchmark, args)
        if on_done is not None:
            on_done(o)
        out.append(o)
    return out
