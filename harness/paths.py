"""Where things live. Every location can be moved with an environment variable
so that CI, tests and users on clusters can point the harness elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Structures store: jarvis-tools' figshare store dir. Unset -> jarvis-tools' own
# cache (downloads the full release when online).
DATA_DIR_ENV = "KSPACING_DATA_DIR"
# Parsed data, feature caches, checkpoints and fitted models (never inside the source tree).
CACHE_DIR_ENV = "KSPACING_CACHE_DIR"
# Published JARVIS-Leaderboard contributions, for the reference rows.
REFERENCE_DIR_ENV = "KSPACING_REFERENCE_DIR"

# The offline copies this project is developed against (see ../shared/data/README.md).
_SHARED = REPO_ROOT.parent / "shared" / "data"


def default_data_dir() -> Path | None:
    """$KSPACING_DATA_DIR, else ../shared/data/jarvis when present, else None
    (= jarvis-tools' default store, which downloads)."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    offline = _SHARED / "jarvis"
    return offline if offline.is_dir() else None


def default_reference_dir() -> Path:
    if os.environ.get(REFERENCE_DIR_ENV):
        return Path(os.environ[REFERENCE_DIR_ENV])
    return _SHARED / "jarvis_leaderboard" / "contributions"


def cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kspacing-bench"


# Model folders to discover (default models/); tests point it at temp folders.
MODELS_DIR_ENV = "KSPACING_MODELS_DIR"
# Root for everything a run writes besides caches: submissions/, results/,
# leaderboard.csv and README.md (its table). Default: the repository itself.
# Read once at import: set it before starting the process.
OUTPUT_DIR_ENV = "KSPACING_OUTPUT_DIR"

MODELS_DIR = Path(os.environ[MODELS_DIR_ENV]) if os.environ.get(MODELS_DIR_ENV) else REPO_ROOT / "models"
OUTPUT_DIR = Path(os.environ[OUTPUT_DIR_ENV]) if os.environ.get(OUTPUT_DIR_ENV) else REPO_ROOT
SUBMISSIONS_DIR = OUTPUT_DIR / "submissions"
RESULTS_DIR = OUTPUT_DIR / "results"
LEADERBOARD_CSV = OUTPUT_DIR / "leaderboard.csv"
README = OUTPUT_DIR / "README.md"


def output_is_repo() -> bool:
    """True when runs write into the repository's committed submissions/results."""
    return OUTPUT_DIR.resolve() == REPO_ROOT


# Read at call time (a scratch run sets $KSPACING_OUTPUT_DIR for itself and its model
# processes); the constants above are the import-time values for older callers.
def output_dir() -> Path:
    return Path(os.environ[OUTPUT_DIR_ENV]) if os.environ.get(OUTPUT_DIR_ENV) else REPO_ROOT


def benchmarks_dir() -> Path:
    """Frozen definitions: benchmarks/ of the output root (a scratch root has its own)."""
    return output_dir() / "benchmarks"


def submissions_dir() -> Path:
    return output_dir() / "submissions"


def results_dir() -> Path:
    return output_dir() / "results"


def models_dir() -> Path:
    return Path(os.environ[MODELS_DIR_ENV]) if os.environ.get(MODELS_DIR_ENV) else REPO_ROOT / "models"


def is_repo_output() -> bool:
    return output_dir().resolve() == REPO_ROOT


def run_cache_dir() -> Path:
    """Where runs into the current output root keep model caches and fitted artifacts:
    the cache itself for the repository, a folder of its own for any other root (a
    scratch run, `reproduce`), so predict never picks up a fit that is not the committed one."""
    if is_repo_output():
        return cache_dir()
    import hashlib

    return cache_dir() / "scratch" / hashlib.sha256(str(output_dir().resolve()).encode()).hexdigest()[:16]
