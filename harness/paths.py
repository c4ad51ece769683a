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


BENCHMARKS_DIR = REPO_ROOT / "benchmarks"
MODELS_DIR = REPO_ROOT / "models"
SUBMISSIONS_DIR = REPO_ROOT / "submissions"
RESULTS_DIR = REPO_ROOT / "results"
LEADERBOARD_CSV = REPO_ROOT / "leaderboard.csv"
README = REPO_ROOT / "README.md"
