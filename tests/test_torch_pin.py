"""The model processes' numeric environment reaches torch (harness/numeric_env.py): under
canonical_env() torch runs its AVX2 code paths, which is what makes CrabNet's training the
same on every AVX2 CPU; on an AVX-512 CPU that gives other bits than the native kernels,
so the pin really takes effect (were the variables ignored, both runs would agree)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from harness import numeric_env, paths

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the pin is x86-64's")

CHILD = r"""
import hashlib, torch
from harness import numeric_env, paths
torch.manual_seed(0); torch.set_num_threads(1)
layer = torch.nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, dropout=0.0)
x = torch.randn(8, 12, 64)
for _ in range(3):
    layer(x).pow(2).sum().backward()
print(numeric_env.torch_tag(), hashlib.sha256(b"".join(p.grad.numpy().tobytes() for p in layer.parameters())).hexdigest())
"""


def _cpu_flags() -> set[str]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def _child(env_extra: dict) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in numeric_env.TORCH_PIN}
    out = subprocess.run([sys.executable, "-c", CHILD], env={**env, **env_extra}, capture_output=True, text=True,
                         check=True, cwd=str(paths.REPO_ROOT))
    tag, digest = out.stdout.split()
    return tag, digest


def test_model_processes_run_torch_on_its_avx2_paths():
    if "avx2" not in _cpu_flags():
        pytest.skip("this CPU has no AVX2: torch falls back to its default paths")
    tag, pinned = _child(numeric_env.canonical_env())
    assert tag == "AVX2|mkl_cbwr=AVX2,STRICT"
    assert _child(numeric_env.canonical_env()) == (tag, pinned)  # deterministic


def test_the_pin_changes_the_bits_on_an_avx512_cpu():
    if "avx512f" not in _cpu_flags():
        pytest.skip("no AVX-512 here: the native kernels are the AVX2 ones")
    _, native = _child({})
    _, pinned = _child(numeric_env.canonical_env())
    assert native != pinned
