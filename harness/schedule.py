"""Each model trains in its own process (``python -m harness run-model NAME``): a crash,
segfault or OOM kill fails that model alone, the others still run and the leaderboard is
still rebuilt. The parent only starts processes, respects ``needs`` (a model that
reuses what another one builds, e.g. a shared pretraining, starts after it), ``after``
(a model that reads a cache another one fills starts after it, whatever its outcome) and
reads their one-line outcomes. With a Dask client each model is a task on the cluster
instead: the worker starts the same process. With ``parallel`` > 1, up to that many model processes run at
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
    for flag in ("data_dir", "models_dir", "seed", "n_jobs", "dask_scheduler"):
        if args.get(flag) is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(args[flag])]
    if args.get("retrain"):
        cmd.append("--retrain")
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


def _outcome(name: str, rc: int, outcome_file: Path) -> Outcome:
    if outcome_file.is_file():
        try:
            return Outcome(**json.loads(outcome_file.read_text()))
        except (json.JSONDecodeError, TypeError):
            pass
    if rc < 0:
        why = f"process killed by {_signal_name(rc)}" + (" (out of memory?)" if -rc == signal.SIGKILL else "")
    else:
        why = f"process exited with status {rc} before writing its outcome"
    return Outcome(name, False, f"{name}: {why}; nothing of this run was written for it")


def _finish(r: _Running) -> Outcome:
    rc = r.proc.wait()
    if r.log is not None:
        r.log.close()
    try:
        return _outcome(r.name, rc, r.outcome_file)
    finally:
        r.tmp.cleanup()


def run_in_process(name: str, benchmark: str, args: dict, env: dict | None = None) -> Outcome:
    """Run one model in a child process (``env``: extra environment, e.g. a scratch
    output root); whatever happens to it, return its Outcome."""
    return _finish(_start(name, benchmark, args, env, None))


# ------------------------------------------------------------------ Dask: each model a task


def run_model_task(name: str, argv: list[str], env: dict, log_path: str | None) -> dict:
    """What a Dask worker runs for one model: the same ``python -m harness run-model``
    process as locally (a crash still fails that model alone, not the worker), with the
    worker's own Python. Returns the Outcome as a dict. The worker must see the same
    checkout, data and output folders at the same paths (a shared filesystem)."""
    with tempfile.TemporaryDirectory(prefix="kspacing-run-") as tmp:
        outcome = Path(tmp) / "outcome.json"
        cmd = [sys.executable, *argv, "--outcome", str(outcome)]
        log = open(log_path, "w") if log_path else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(cmd, env={**os.environ, **env}, preexec_fn=_die_with_parent, stdout=log,
                                    stderr=subprocess.STDOUT)
            rc = proc.wait()
        finally:
            if log_path:
                log.close()
        return _outcome(name, rc, outcome).as_dict()


class _DaskRun:
    """A model running as a task on a Dask cluster (quacks like _Running for the loop)."""

    def __init__(self, client, name: str, benchmark: str, args: dict, env: dict, log_path: Path | None):
        import uuid

        from harness.numeric_env import canonical_env

        argv = child_command(name, benchmark, args, Path("-"))[1:-2]  # drop the interpreter and --outcome
        self.name = name
        self.future = client.submit(run_model_task, name, argv, {**_forwarded_env(), **canonical_env(), **env},
                                    str(log_path) if log_path else None, key=f"model-{name}-{uuid.uuid4().hex[:8]}",
                                    pure=False)

    def done(self) -> bool:
        return self.future.done()

    def outcome(self) -> Outcome:
        try:
            return Outcome(**self.future.result())
        except Exception as err:  # the task itself failed (worker lost, ...): this model fails alone
            return Outcome(self.name, False, f"{self.name}: dask task failed ({type(err).__name__}: {err})")


def _forwarded_env() -> dict:
    """The harness settings of this process (data, cache, output, models folders), for a
    worker started elsewhere."""
    return {k: v for k, v in os.environ.items() if k.startswith("KSPACING_")}


class _LocalRun:
    def __init__(self, name, benchmark, args, env, log_path):
        self.name = name
        self.r = _start(name, benchmark, args, env, log_path)

    def done(self) -> bool:
        return self.r.proc.poll() is not None

    def outcome(self) -> Outcome:
        return _finish(self.r)


# ------------------------------------------------------------------ the schedule


def order(names: list[str], needs: dict[str, list[str]], after: dict[str, list[str]] | None = None) -> None:
    """Refuse needs on unknown models and cycles (through needs and after; one line)."""
    for n in names:
        for d in needs.get(n, []):
            if d not in names:
                raise HarnessError(f"models/{n}/model.yaml: needs: {d} is not among the models of this run")
    edges = {n: list(needs.get(n, [])) + [d for d in (after or {}).get(n, []) if d in names] for n in names}
    seen, done = set(), set()

    def visit(n, path):
        if n in done:
            return
        if n in seen:
            raise HarnessError(f"models/{n}/model.yaml: needs: cycle {' -> '.join(path + [n])}")
        seen.add(n)
        for d in edges.get(n, []):
            visit(d, path + [n])
        done.add(n)

    for n in names:
        visit(n, [])


def run_models(names: list[str], benchmark: str, args: dict, on_done=None, needs: dict | None = None,
               parallel: int = 1, log_dir: Path | None = None, on_start=None, after: dict | None = None,
               client=None) -> list[Outcome]:
    """Run ``names`` (in this order of preference), at most ``parallel`` at once, each
    after the models it ``needs`` (a failed need fails it without running) and after the
    models it runs ``after`` (whatever their outcome: e.g. they fill a cache it reads).
    ``client``: a dask.distributed Client; each model is then a task on its cluster
    (the same child process, started by a worker), else a local process."""
    needs = {n: [d for d in (needs or {}).get(n, []) if d in names] for n in names}
    after = {n: [d for d in (after or {}).get(n, []) if d in names] for n in names}
    order(names, needs, after)
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
            if all(d in results for d in needs[n] + after[n]):
                pending.remove(n)
                log = None if parallel <= 1 or log_dir is None else Path(log_dir) / f"{n}.log"
                if log is not None:
                    log.parent.mkdir(parents=True, exist_ok=True)
                running.append(_DaskRun(client, n, benchmark, args, {}, log) if client is not None
                               else _LocalRun(n, benchmark, args, None, log))
                if on_start is not None:
                    on_start(n, log)
        if not running:
            continue
        time.sleep(0.2)
        for r in [r for r in running if r.done()]:
            running.remove(r)
            results[r.name] = r.outcome()
            if on_done is not None:
                on_done(results[r.name])
    return [results[n] for n in names]
