"""``harness validate``'s submission checks: every submissions/<name>/ folder belongs to
a model folder, every file in it is named by a frozen benchmark key, holds exactly that
benchmark's test ids with physical predictions, and matches its run record."""

from __future__ import annotations

from pathlib import Path

from harness import benchmark as bm
from harness import leaderboard, submission
from harness.errors import HarnessError

ALLOWED_FILES = {"metadata.json", "run.sh"}


def submissions(output_dir: Path, models_dir: Path) -> tuple[int, list[str]]:
    """(number of submission files checked, one-line problems)."""
    output_dir = Path(output_dir)
    sub_dir, res_dir = output_dir / "submissions", output_dir / "results"
    try:
        defs = {d.key: d for d in bm.load_all(output_dir / "benchmarks")}
    except HarnessError as err:
        return 0, [str(err)]
    problems, n = [], 0
    for folder in sorted(p for p in sub_dir.glob("*") if p.is_dir()):
        if not (Path(models_dir) / folder.name).is_dir():
            problems.append(f"{folder}: no model folder {Path(models_dir).name}/{folder.name}/ (a submission must "
                            "come from a model folder of this repository)")
            continue
        files = sorted(folder.glob("*.csv.zip"))
        if not files:
            problems.append(f"{folder}: no submission file (<benchmark key>.csv.zip)")
        for f in files:
            own = defs.get(f.name.removesuffix(".csv.zip"))
            if own is None:
                problems.append(f"{f}: not named by a frozen benchmark key (known: {', '.join(sorted(defs))})")
                continue
            n += 1
            try:
                leaderboard.read_submission(f, own)
                leaderboard.checked_record(res_dir, folder.name, own, f)
            except HarnessError as err:
                problems.append(str(err))
        try:
            submission.read_metadata(folder / "metadata.json")
        except HarnessError as err:
            problems.append(str(err))
        for extra in sorted(p.name for p in folder.iterdir() if p.is_file()):
            if extra not in ALLOWED_FILES and not extra.endswith(".csv.zip"):
                problems.append(f"{folder / extra}: unexpected file in a submission folder")
    return n, problems
