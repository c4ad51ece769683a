"""One numeric environment for every model process, whatever the CPU.

numpy picks SIMD kernels at run time (AVX2, AVX-512, ...) and OpenBLAS picks a kernel per
CPU model; each sums in its own order, so the same structure gives features that differ
in the last bit from machine to machine, and a Voronoi "does this face exist" decision
or a tree split can flip on that bit. Measured here on 300 real structures: with
AVX-512 and OpenBLAS' SkylakeX kernel against a CPU without AVX-512 (emulated with the
variables below), 197 physics, 30 composition and 1,342 structural feature values
differed, and two structures changed Voronoi outcome.

Every model process therefore runs with numpy's run-time dispatch switched off down to
its compiled baseline, one fixed OpenBLAS kernel and single-threaded BLAS: the kernels
are then the same on every x86-64 machine (aarch64 has one set anyway). The features
are also rounded (harness/features/robust.py) for what no variable reaches (libm,
qhull). Slower BLAS does not matter here: featurization is per structure and small.
"""

from __future__ import annotations

import platform

# A kernel every x86-64 CPU that runs numpy 2 wheels (x86-64-v2) supports.
OPENBLAS_KERNEL = "Nehalem"


def dispatched_features() -> list[str]:
    """numpy's run-time dispatch targets this CPU has beyond the compiled baseline."""
    try:
        from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
    return [f for f in __cpu_dispatch__ if __cpu_features__.get(f) and f not in __cpu_baseline__]


def canonical_env() -> dict[str, str]:
    # Boosters and torch take their thread counts as explicit parameters; only BLAS is pinned here.
    env = {"OPENBLAS_NUM_THREADS": "1"}
    disable = dispatched_features()
    if disable:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(disable)
    if platform.machine() in ("x86_64", "AMD64"):
        env["OPENBLAS_CORETYPE"] = OPENBLAS_KERNEL
    return env


def describe() -> dict[str, str]:
    """What the current process runs with (for the run record)."""
    import os

    return {k: os.environ.get(k, "") for k in ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS")}
