"""Named compute profiles for the CrabNet family.

``paper``: the CrabNet paper's architecture and schedule (d_model 512, N 3, 4 heads,
batch 256, output network [1024, 512, 256, 128]), full pretraining data, up to 300
epochs with patience 20 on the validation MAE. Used automatically when CUDA is present.

``cpu``: d_model 128 / feed-forward 512 / output network [256, 128, 64] (the paper's
[1024, 512, 256, 128] head runs per element and cost 2.5x in throughput), 30 epochs on
the k-point task for every row (from scratch and both fine-tuning modes, so the rows
compare at equal budget), pretraining on 16,000 source formulas (1,000 for validation)
for 20 epochs. Measured (1 torch thread, training samples/s): cpu 1,170-1,370 all
weights, 2,460 head only; paper 132-158. That is about 30 minutes for the whole family
on an otherwise idle 2-core machine (estimate; on the shared machine, 2-3x slower).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

PROFILE_ENV = "KSPACING_CRABNET_PROFILE"


@dataclass(frozen=True)
class Profile:
    name: str
    # architecture (CrabNet/SubCrab arguments)
    d_model: int
    N: int
    heads: int
    dim_feedforward: int
    out_hidden: tuple[int, ...]
    batch_size: int
    # schedule on the k-point task
    epochs: int  # from scratch (crabnet_composition)
    finetune_epochs: int  # all weights, from a pretrained checkpoint
    head_epochs: int  # output network only
    epochs_step: int = 10  # crabnet's half LR cycle; epochs are rounded up to 2*epochs_step
    patience: int | None = None  # epochs without val-MAE improvement before stopping
    val_fraction: float = 0.1  # of the k-point train set, for SWA / early stopping
    # pretraining
    pretrain_epochs: int = 300
    pretrain_max_train: int | None = None  # subsample the source training set (None: all)
    pretrain_max_val: int | None = None  # subsample the source validation set
    dropout: float = 0.1

    def arch(self) -> dict:
        return {"d_model": self.d_model, "N": self.N, "heads": self.heads,
                "dim_feedforward": self.dim_feedforward, "out_hidden": list(self.out_hidden),
                "dropout": self.dropout}

    def as_dict(self) -> dict:
        d = asdict(self)
        d["out_hidden"] = list(self.out_hidden)
        return d


PROFILES: dict[str, Profile] = {
    "paper": Profile(
        name="paper", d_model=512, N=3, heads=4, dim_feedforward=2048,
        out_hidden=(1024, 512, 256, 128), batch_size=256,
        epochs=300, finetune_epochs=300, head_epochs=300, epochs_step=10, patience=20,
        pretrain_epochs=300, pretrain_max_train=None, pretrain_max_val=None,
    ),
    "cpu": Profile(
        name="cpu", d_model=128, N=3, heads=4, dim_feedforward=512,
        out_hidden=(256, 128, 64), batch_size=256,
        epochs=30, finetune_epochs=30, head_epochs=30, epochs_step=5, patience=None,
        pretrain_epochs=20, pretrain_max_train=16_000, pretrain_max_val=1_000,
    ),
}


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_profile(requested: str | None) -> str:
    """The profile to use. ``$KSPACING_CRABNET_PROFILE`` wins; then the one asked for
    (model.yaml ``options.profile``); ``auto``/None: ``paper`` when CUDA is available, else ``cpu``."""
    env = os.environ.get(PROFILE_ENV)
    name = env or requested or "auto"
    if name not in (*PROFILES, "auto"):
        raise ValueError(f"unknown CrabNet profile {name!r} (known: {', '.join(PROFILES)}, auto)")
    if name != "auto":
        return name
    return "paper" if cuda_available() else "cpu"


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown CrabNet profile {name!r} (known: {', '.join(PROFILES)})") from None
