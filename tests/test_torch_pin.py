"""The model processes' numeric environment reaches torch (harness/numeric_env.py): under
canonical_env() torch runs ATen's AVX2 kernels and MKL's COMPATIBLE branch, on one thread
as CrabNet does, which is what makes CrabNet's training the same on Intel and AMD CPUs.

The first pin (MKL's AVX2 branch) passed a same-machine check but not a second CPU: MKL
ignores that branch on non-Intel CPUs, so on an AMD EPYC the "pinned" GEMM was the native
one and crabnet_composition retrained to 6.6837 against 6.6404 from an Intel Xeon. The
tests below would have caught it: the pinned GEMM must differ from the native one on every
AVX2 CPU (the branch is SSE2), and must equal the digest recorded on the EPYC, on any CPU."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from harness import numeric_env, paths

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the pin is x86-64's")

# sha256 (first 16 hex) of a 333x271 @ 271x190 float32 GEMM of fixed inputs, one thread,
# under canonical_env(): recorded on an AMD EPYC (session 6). MKL documents its COMPATIBLE
# branch as giving these bits on every Intel and AMD x86-64 CPU.
GEMM_DIGEST = "42d3162e28d7fbde"

CHILD = r"""
import hashlib, numpy as np, torch
from harness import numeric_env
torch.set_num_threads(1)
a = torch.from_numpy(np.sin(np.arange(333 * 271, dtype=np.float64) * 0.7071).reshape(333, 271).astype(np.float32))
b = torch.from_numpy(np.cos(np.arange(271 * 190, dtype=np.float64) * 0.3183).reshape(271, 190).astype(np.float32))
gemm = hashlib.sha256((a @ b).numpy().tobytes()).hexdigest()[:16]
torch.manual_seed(0)
layer = torch.nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, dropout=0.0)
x = torch.randn(8, 12, 64)
for _ in range(3):
    layer(x).pow(2).sum().backward()
print(numeric_env.torch_tag(), gemm, hashlib.sha256(b"".join(p.grad.numpy().tobytes() for p in layer.parameters())).hexdigest())
"""


def _cpuinfo(field: str) -> str:
    """The first ``field`` line of /proc/cpuinfo ('' where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith(field)), "")
    except OSError:
        return ""


def _child(env_extra: dict) -> tuple[str, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in numeric_env.TORCH_PIN}
    out = subprocess.run([sys.executable, "-c", CHILD], env={**env, **env_extra}, capture_output=True, text=True,
                         check=True, cwd=str(paths.REPO_ROOT))
    tag, gemm, grads = out.stdout.split()
    return tag, gemm, grads


@pytest.fixture(scope="module")
def pinned():
    if "avx2" not in _cpuinfo("flags").split():
        pytest.skip("this CPU has no AVX2: torch falls back to its default paths")
    return _child(numeric_env.canonical_env())


def test_model_processes_run_torch_on_the_pinned_paths(pinned):
    assert pinned[0] == "AVX2|mkl_cbwr=COMPATIBLE,STRICT"
    assert _child(numeric_env.canonical_env()) == pinned  # deterministic


def test_the_pin_reaches_mkl_on_this_cpu(pinned):
    # COMPATIBLE is MKL's SSE2 branch: on any AVX2 CPU, Intel or not, its GEMM sums in
    # another order than the native one. The AVX2 branch failed this on AMD.
    _, native_gemm, native_grads = _child({})
    assert native_gemm != pinned[1]
    assert native_grads != pinned[2]


def test_the_pinned_gemm_has_the_bits_recorded_on_another_cpu(pinned):
    cpu = _cpuinfo("model name") or "this CPU"
    assert pinned[1] == GEMM_DIGEST, f"MKL's COMPATIBLE GEMM gives other bits on {cpu}: CrabNet rows will not reproduce here"
