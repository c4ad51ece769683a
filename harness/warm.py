"""A warm run: a model whose inputs have not changed since its saved fit is not refitted.

The inputs of a fit are the project code it executed, its model folder, the benchmark
definition, the structure store, the seed, the library versions and the numeric
environment. The fingerprint records all of them in the artifact's own record (the cache
sidecar, never the committed run.json); the code part is the sha256 of every project
source file loaded in the model's process by the end of its fit (harness/, modellib/,
models/): a fit can only depend on code it loaded, and a change to any of those files
changes its hash. n_jobs is left out: predictions do not depend on it
(tests/test_machine_independence.py). The saved outputs are reused only when the
committed submission, val and run-record files are still the ones the artifact's record
describes; ``run --retrain`` always refits."""

from __future__ import annotations

import sys
from pathlib import Path

from harness import numeric_env, paths, record

SOURCE_ROOTS = ("harness", "modellib", "models")


def loaded_project_files() -> list[str]:
    """Repository-relative paths of the project's .py files loaded in this process."""
    root = paths.REPO_ROOT
    out = set()
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if not f or not f.endswith(".py"):
            continue
        try:
            rel = Path(f).resolve().relative_to(root)
        except ValueError:
            continue
        if rel.parts and rel.parts[0] in SOURCE_ROOTS:
            out.add(rel.as_posix())
    return sorted(out)


def _hashes(files: list[str]) -> dict[str, str | None]:
    root = paths.REPO_ROOT
    return {f: record.sha256_file(root / f) if (root / f).is_file() else None for f in files}


def fingerprint(task, folder, ctx, files: list[str]) -> dict:
    """What the fit depended on (``files``: the project sources it loaded)."""
    own = sorted(p for p in Path(folder.path).iterdir() if p.is_file() and p.suffix in (".py", ".yaml", ".yml", ".json"))
    return {"code": _hashes(files), "model_folder": {p.name: record.sha256_file(p) for p in own},
            "definition_sha256": task.benchmark.definition_sha256, "store_sha256": task.provenance.get("sha256"),
            "seed": ctx.seed, "options": dict(ctx.options), "versions": record.library_versions(),
            "numeric_env": numeric_env.tag()}


def reusable(task, folder, ctx, art: Path | None, outputs: dict[str, Path], committed: Path) -> dict | None:
    """The saved fit's record when nothing it depended on changed and the committed files
    (``outputs``: sha256 key -> file; ``committed``: run.json) are the ones it describes;
    else None."""
    if art is None or not art.is_file() or not committed.is_file():
        return None
    try:
        side = record.read(art.parent / record.SIDECAR_FILE)
        old = side.get("fingerprint")
        if not old or old != fingerprint(task, folder, ctx, sorted(old.get("code", {}))):
            return None
        if record.sha256_file(art) != side["sha256"].get("artifact"):
            return None
        for key, f in outputs.items():
            if side["sha256"].get(key) is not None and (not f.is_file() or record.sha256_file(f) != side["sha256"][key]):
                return None
        if not record.same_predictions(record.read(committed), side):
            return None
    except (OSError, KeyError, TypeError, ValueError, record.HarnessError):
        return None
    return side
