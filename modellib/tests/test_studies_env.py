"""A study runs under the model processes' numeric environment, so that it loads the same
cached models and features as `python -m harness run` (unpinned, group_conformal fitted its
own metallicity model and 15 of 1,708 test materials got another metal label than the one
kspace_gbm's predict gives them)."""

from __future__ import annotations

import os
import subprocess
import sys

from harness import paths


def test_importing_the_studies_pins_the_numeric_environment():
    env = {k: v for k, v in os.environ.items() if k not in ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE")}
    code = "import modellib.studies; from harness import numeric_env; print(numeric_env.tag())"
    out = subprocess.run([sys.executable, "-c", code], cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    unpinned = subprocess.run([sys.executable, "-c", "import numpy; " + code], cwd=paths.REPO_ROOT, env=env,
                              capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] in ("pinned", "baseline")
    assert unpinned[-1] != out[-1] or out[-1] == "baseline"  # numpy first: too late to pin (the test can fail)
