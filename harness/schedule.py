"""Each model trains in its own process (``python -m harness run-model NAME``): a crash,
segfault or OOM kill fails that model alone, the others still run and the leaderboard is
still rebuilt. The parent only starts processes, respects ``needs`` (a model that
reuses what another one builds, e.g. a shared pretraining, starts after it) and reads
their one-line outcomes. With ``parallel`` > 1, up to that many model processes run at
once (e.g. CrabNet on one core while a booster uses the other); their output then goes
to a log file each, so progress bars do not interleave."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
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


@dataclass
class _Running:
    name: str
    proc: subprocess.Popen
    tmp: tempfile.TemporaryDirectory
    log: object | None
    started: float

    @property
    def outcome_file(self) -> Path:
        return Path(self.tmp.name) / "outcome.json"


def _start(name: str, benchmark: str, args: dict, env: dict | None, log_path: Path | None) -> _Running:
    from harness.numeric_env import canonical_env

    tmp = tempfile.TemporaryDirectory(prefix="kspacing-run-")
    log = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "w")
    # Without a log the child inherits stdout/stderr: its progress bars show as they happen.
    proc = subprocess.Popen(child_command(name, benchmark, args, Path(tmp.name) / "outcome.json"),
                            env={**os.environ, **canonical_env(), **(env or {})}, preexec_fn=_die_with_parent,
                            stdout=log, stderr=subprocess.STDOUT if log else None)
    return _Running(name, proc, tmp, log, time.perf_counter())


def _finish(r: _Running) -> Outcome:
    rc = r.proc.wait()
    if r.log is not None:
        r.log.close()
    try:
        if r.outcome_file.is_file():
            try:
                return Outcome(**json.loads(r.outcome_file.read_text()))
            except (json.JSONDecodeError, TypeError):
                pass
        if rc < 0:
            why = f"process killed by {_signal_name(rc)}" + (" (out of memory?)" if -rc == signal.SIGKILL else "")
        else:
            why = f"process exited with status {rc} before writing its outcome"
        return Outcome(r.name, False, f"{r.name}: {why}; nothing of this run was written for it")
    finally:
        r.tmp.cleanup()


def run_in_process(name: str, benchmark: str, args: dict, env: dict | None = None) -> Outcome:
    """Run one model in a child process (``env``: extra environment, e.g. a scratch
    output root); whatever happens to it, return its Outcome."""
    return _finish(_start(name, benchmark, args, env, None))


def order(names: list[str], needs: dict[str, list[str]]) -> None:
    """Refuse needs on unknown models and cycles (one line)."""
    for n in names:
        for d in needs.get(n, []):
            if d not in names:
                raise HarnessError(f"models/{n}/model.yaml: needs: {d} is not among the models of this run")
    seen, done = set(), set()

    def visit(n, path):
        if n in done:
            return
        if n in seen:
            raise HarnessError(f"models/{n}/model.yaml: needs: cycle {' -> '.join(path + [n])}")
        seen.add(n)
        for d in needs.get(n, []):
            visit(d, path + [n])
        done.add(n)

    for n in names:
        visit(n, [])


def run_models(names: list[str], benchmark: str, args: dict, on_done=None, needs: dict | None = None,
               parallel: int = 1, log_dir: Path | None = None, on_start=None) -> list[Outcome]:
    """Run ``names`` (in this order of preference), at most ``parallel`` at once, each
    after the models it ``needs``. A model whose need failed fails without running."""
    needs = {n: [d for d in (needs or {}).get(n, []) if d in names] for n in names}
    order(names, needs)
    pending, running, results = list(names), [], {}
    while pending or running:
        for n in list(pending):
            if len(running) >= max(1, parallel):
                break
            failed = [d for d in needs[n] if d in results and not results[d].ok]
            if failed:
                pending.remove(n)
                results[n] = Outcome(n, False, f"{n}: not run: it needs {failed[0]}, which failed")
                if on_done is not None:
                    on_done(results[n])
                continue
            if all(d in results for d in needs[n]):
                pending.remove(n)
                log = None if parallel <= 1 or log_dir is None else Path(log_dir) / f"{n}.log"
                running.append(_start(n, benchmark, args, None, log))
                if on_start is not None:
                    on_start(n, log)
        if not running:
            continue
        time.sleep(0.2)
        for r in [r for r in running if r.proc.poll() is not None]:
            running.remove(r)
            results[r.name] = _finish(r)
            if on_done is not None:
                on_done(results[r.name])
    return [results[n] for n in names]
