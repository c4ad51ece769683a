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
are also rounded (modellib/features/robust.py) for what no variable reaches (libm,
qhull). Slower BLAS does not matter here: featurization is per structure and small.

torch dispatches too: its ATen kernels (AVX2 or AVX-512) and MKL's GEMM (one code path per
CPU generation and vendor). CrabNet trained with the native kernels gave test MAE 6.556
on one x86-64 machine and 6.670 on another (crabnet_eform_finetune_all). Model processes
therefore pin ATen to its AVX2 kernels (ATEN_CPU_CAPABILITY: the same machine code on
every x86-64-v3 CPU, Intel or AMD) and MKL to its COMPATIBLE branch of conditional
numerical reproducibility (MKL_CBWR). An AVX2 branch was tried first and is not enough:
MKL offers branches other than AUTO and COMPATIBLE on Intel CPUs only and silently uses
AUTO elsewhere (oneMKL developer guide, "Specifying Code Branches"); crabnet_composition
trained under it on an AVX-512 Xeon (6.6404) and retrained on an AMD EPYC gave 6.6837,
every prediction changed. COMPATIBLE is SSE2 without the approximate rcpps/rsqrtps
instructions, with fixed blocking: the documented way to get the same bits on Intel and
AMD. It costs: GEMM about 3x, a small transformer's training step 2.6x slower here.
DNNL_MAX_CPU_ISA caps oneDNN, which CrabNet's ops do not reach (ONEDNN_VERBOSE is silent).
A CPU without AVX2 falls back to lower ATen paths, which the run record shows
(``torch_cpu_capability``).
"""

from __future__ import annotations

import os
import platform
import sys

# A kernel every x86-64 CPU that runs numpy 2 wheels (x86-64-v2) supports.
OPENBLAS_KERNEL = "Nehalem"
# numpy's run-time dispatch targets above its baseline (numpy 2.4 names, and older
# ones); names a CPU or numpy version does not know are ignored by numpy.
DISPATCH_TARGETS = ("X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR", "AVX2", "FMA3", "AVX512F", "AVX512CD",
                    "AVX512_SKX", "AVX512_CLX", "AVX512_CNL", "F16C", "AVX", "ASIMDHP", "ASIMDDP", "ASIMDFHM",
                    "SVE")


# torch's code paths on x86-64 (see the module docstring).
TORCH_PIN = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE,STRICT", "DNNL_MAX_CPU_ISA": "AVX2"}


def canonical_env() -> dict[str, str]:
    env = {"OPENBLAS_NUM_THREADS": "1", "NPY_DISABLE_CPU_FEATURES": " ".join(DISPATCH_TARGETS)}
    if platform.machine() in ("x86_64", "AMD64"):
        env["OPENBLAS_CORETYPE"] = OPENBLAS_KERNEL
        env.update(TORCH_PIN)
    return env


def torch_tag() -> str:
    """torch's kernels in this process, part of the CrabNet checkpoint keys: a checkpoint
    trained under other kernels is never reused."""
    import torch

    return f"{torch.backends.cpu.get_cpu_capability()}|mkl_cbwr={os.environ.get('MKL_CBWR', '')}"


def apply() -> bool:
    """Set the canonical environment for this process; effective only before numpy is
    imported (the CLI calls it first thing). Returns whether it took effect."""
    if "numpy" in sys.modules:
        return False
    os.environ.update(canonical_env())
    return True


def describe() -> dict:
    """What the current process runs with (for the run record)."""
    import numpy as np

    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    out = {"numpy_dispatch": [f for f in __cpu_dispatch__ if __cpu_features__.get(f)],  # [] when pinned
           "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""), "numpy": np.__version__}
    if "torch" in sys.modules:  # only models that use torch record (and depend on) its kernels
        out["torch_cpu_capability"] = torch_tag()
    return out


def tag() -> str:
    """Short name of the numeric environment, part of every feature-cache key: rows
    computed under other kernels are never mixed with the pinned ones."""
    import hashlib
    import json

    d = describe()
    if not d["numpy_dispatch"] and d["openblas_coretype"] in ("", OPENBLAS_KERNEL):
        return "pinned" if d["openblas_coretype"] else "baseline"
    return "native-" + hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]
