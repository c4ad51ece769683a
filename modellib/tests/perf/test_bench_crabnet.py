"""Training throughput (samples/s) of the CrabNet profiles: one plain epoch of
crabnet's ``_train`` on a small real slice of Matbench mp_e_form. The number is kept
in the benchmark's extra_info (``--benchmark-json``); small on purpose (CI time)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from modellib.crabnet.pretrain import MATBENCH_CV
from modellib.crabnet.profiles import get_profile
from modellib.crabnet.train import measure_throughput

# cpu: 4 batches; paper: 2 batches (about 180 samples/s on 2 cores)
SIZES = {"cpu": 1024, "paper": 512}
# One torch thread: on a 2-core machine shared with other jobs, 2 threads oversubscribe
# and the number measures the contention (measured here: 10-20x slower), not CrabNet.
THREADS = 1


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_bench_crabnet_training_throughput(benchmark, profile):
    p = get_profile(profile)
    df = pd.read_csv(MATBENCH_CV / "train0.csv").iloc[: SIZES[profile]]
    sps = benchmark.pedantic(measure_throughput, args=(p.arch(), df, p.batch_size), rounds=1, iterations=1)
    benchmark.extra_info.update(samples_per_s=round(sps, 1), profile=profile, threads=torch.get_num_threads(),
                                n_samples=len(df), batch_size=p.batch_size)
    print(f"\nCrabNet profile {profile}: {sps:.0f} training samples/s ({torch.get_num_threads()} threads)")
    assert sps > 0
