"""CrabNet training loop: crabnet 2.0.8's ``CrabNet.fit`` semantics (Lamb + Lookahead +
SWA, CyclicLR, RobustL1, SWA-based early stopping, final swap to the SWA weights),
driven epoch by epoch so that we can add what ``CrabNet.fit`` lacks:

* a tqdm bar (epoch, train loss, val MAE, ETA),
* patience on the per-epoch validation MAE,
* head-only training (encoder frozen),
* atomic per-epoch-chunk checkpoints and exact resume after an interruption,
* no writes into the current directory (crabnet's ``models/`` and ``figures/``).

It reuses crabnet's own ``_train`` (one epoch), ``predict``, data loaders and
optimizers; only the outer loop is ours.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from crabnet.crabnet_ import CrabNet
from crabnet.kingcrab import SubCrab
from crabnet.utils.utils import Lamb, RobustL1, Scaler
from torch.optim.lr_scheduler import CyclicLR
from tqdm.auto import tqdm

from modellib.crabnet.compat import CompatLookahead, CompatSWA, install

install()

CHECKPOINT_VERSION = 1


class QuietCrabNet(CrabNet):
    """``CrabNet`` that never writes into the current directory: crabnet's
    ``_track_stats`` (``figures/lc_data/*.csv``) and the default ``save_network``
    (``models/trained_models/*.pth``) are disabled; ``save_network`` needs an explicit
    path."""

    def _track_stats(self, epochs, checkin, learningcurve, epoch):  # noqa: D401
        return None

    def save_network(self, model_name: str | None = None):
        raise RuntimeError("QuietCrabNet.save_network is disabled; use modellib.crabnet.train.save_weights")

    def load_network(self, model_data):
        if isinstance(model_data, (str, os.PathLike)):
            raise RuntimeError("QuietCrabNet.load_network(path) is disabled (it reads ./models/trained_models)")
        return super().load_network(model_data)


def make_crab(arch: dict, batch_size: int, device: torch.device | str = "cpu", criterion=None) -> QuietCrabNet:
    crab = QuietCrabNet(
        d_model=arch["d_model"], N=arch["N"], heads=arch["heads"],
        dim_feedforward=arch["dim_feedforward"], out_hidden=list(arch["out_hidden"]),
        dropout=arch.get("dropout", 0.1), batch_size=batch_size, compute_device=torch.device(device),
        verbose=False, losscurve=False, learningcurve=False, save=False, random_state=None,
        criterion=criterion,
    )
    return crab


def build_model(arch: dict, device: torch.device | str = "cpu") -> SubCrab:
    # Built here, not by CrabNet.fit: crabnet 2.0.8's CrabNet accepts ``out_hidden`` but
    # never passes it on to SubCrab (always [1024, 512, 256, 128]); SubCrab takes it.
    with quiet():
        model = SubCrab(
            compute_device=torch.device(device), out_dims=3, d_model=arch["d_model"], d_extend=0,
            N=arch["N"], heads=arch["heads"], out_hidden=list(arch["out_hidden"]),
            dim_feedforward=arch["dim_feedforward"], dropout=arch.get("dropout", 0.1),
        )
    return model.to(device)


@contextlib.contextmanager
def quiet():
    """Silence the warnings crabnet triggers on every batch/model on CPU (pin_memory
    without an accelerator; nested-tensor fast path off with norm_first)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pin_memory.*")
        warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
        yield


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class RecordingLoss:
    """Wraps crabnet's criterion to keep the epoch's mean training loss."""

    def __init__(self, base=RobustL1):
        self.base = base
        self.reset()

    def reset(self):
        self.total, self.n = 0.0, 0

    def __call__(self, prediction, uncertainty, target):
        loss = self.base(prediction, uncertainty, target)
        k = int(target.numel())
        self.total += float(loss.detach()) * k
        self.n += k
        return loss

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")


def formula_frame(formulas, targets=None) -> pd.DataFrame:
    formulas = list(formulas)
    y = np.zeros(len(formulas)) if targets is None else np.asarray(targets, dtype=float)
    return pd.DataFrame({"formula": formulas, "target": y})


def state_to_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def state_from_bytes(data: bytes, device="cpu") -> dict:
    return torch.load(io.BytesIO(data), map_location=device, weights_only=False)


def _atomic_torch_save(obj, path: Path) -> None:
    from harness.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


@dataclass
class TrainResult:
    model_state: dict  # SubCrab state_dict (final weights: SWA average when available)
    scaler_state: dict  # {"mean": float, "std": float}
    history: list[dict] = field(default_factory=list)
    epochs_run: int = 0
    stopped: str = ""  # why training ended
    seconds: float = 0.0
    samples_per_s: float = float("nan")
    resumed_from: int = 0


def _setup(arch, train_df, val_df, *, epochs, batch_size, epochs_step, init_state, mode, seed, device):
    """CrabNet.fit's set-up (model, loaders, scaler, Lamb+Lookahead+SWA, CyclicLR)."""
    if mode not in ("all", "head"):
        raise ValueError(f"mode must be 'all' or 'head', not {mode!r}")
    device = torch.device(device)
    seed_everything(seed)
    recorder = RecordingLoss()
    crab = make_crab(arch, batch_size, device, criterion=recorder)
    crab.model = build_model(arch, device)
    if init_state is not None:
        crab.model.load_state_dict(init_state)
    crab.d_extend = 0
    crab.epochs_step = int(epochs_step)
    crab.n_elements = "infer"
    crab._load_trainval_data(batch_size, train_df.copy(), val_df.copy(), None, None)
    crab.epochs, crab.checkin, crab.stepsize = crab._get_epochs_checkin_stepsize(int(epochs), None)
    crab.step_count = 0
    crab._select_criterion(recorder)

    if mode == "head":
        for p in crab.model.encoder.parameters():
            p.requires_grad_(False)
        params = list(crab.model.output_nn.parameters())
    else:
        params = list(crab.model.parameters())  # as CrabNet.fit does
    base_optim = Lamb(params=params, lr=crab.lr, betas=crab.betas, eps=crab.eps,
                      weight_decay=crab.weight_decay, adam=crab.adam, min_trust=crab.min_trust)
    lookahead = CompatLookahead(base_optimizer=base_optim, alpha=crab.alpha, k=crab.k)
    crab.optimizer = CompatSWA(lookahead)
    crab.lr_scheduler = CyclicLR(crab.optimizer, base_lr=crab.base_lr, max_lr=crab.max_lr,
                                 cycle_momentum=False, step_size_up=crab.stepsize)
    crab.loss_curve = {"train": [], "val": []}
    crab.stepping = True
    crab.swa_start = 2
    crab.xswa, crab.yswa, crab.lr_list = [], [], []
    crab.discard_n = 3

    return crab, recorder, base_optim, lookahead, params


def train_crabnet(*args, **kwargs) -> "TrainResult":
    """See :func:`_train_crabnet`."""
    with quiet():
        return _train_crabnet(*args, **kwargs)


def _train_crabnet(
    arch: dict,
    train_df: pd.DataFrame,
    val_df: pd.DataFrame,
    *,
    epochs: int,
    batch_size: int,
    epochs_step: int = 10,
    patience: int | None = None,
    init_state: dict | None = None,
    mode: str = "all",
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint: Path | None = None,
    checkpoint_every: int = 1,
    fingerprint: str = "",
    desc: str = "crabnet",
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a SubCrab on ``train_df`` (formula, target), selecting SWA weights on
    ``val_df``. ``mode``: ``all`` (every weight) or ``head`` (only ``output_nn``; the
    encoder is frozen and kept in eval mode). ``init_state``: SubCrab state_dict to
    start from (transfer). ``checkpoint``: file for per-chunk resume state (written
    atomically every ``checkpoint_every`` epochs; removed when training finishes).
    ``stop_after``: stop (as if interrupted) after that many epochs in total - for
    tests of resume."""
    t_start = time.perf_counter()
    crab, recorder, base_optim, lookahead, params = _setup(
        arch, train_df, val_df, epochs=epochs, batch_size=batch_size, epochs_step=epochs_step,
        init_state=init_state, mode=mode, seed=seed, device=device)

    history: list[dict] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = _load_checkpoint(Path(checkpoint), fingerprint)
        if state is not None:
            start = _restore(state, crab, base_optim, lookahead, params)
            history = state["history"]
    resumed_from = start

    n_train = len(crab.train_loader.dataset)
    total = crab.epochs
    bar = tqdm(total=total, initial=start, desc=desc, unit="epoch", disable=not progress, dynamic_ncols=True)
    stopped = "epochs"
    if start > 0:
        bar.set_postfix_str(f"resumed at epoch {start}")
    train_loader = crab.train_loader
    train_seconds = 0.0
    epoch = start - 1
    try:
        for epoch in range(start, total):
            if stopped != "epochs":
                break
            if crab.optimizer.discard_count >= crab.discard_n:
                stopped = "swa-discard"
                break
            if patience is not None and history and epoch - _best_epoch(history) > patience:
                stopped = "patience"
                break
            if stop_after is not None and epoch >= stop_after:
                stopped = "interrupted"
                break
            crab.epoch = epoch
            if mode == "head":
                crab.model.encoder.eval()
            recorder.reset()
            t0 = time.perf_counter()
            long_epoch = progress and len(train_loader) >= 100
            crab.train_loader = tqdm(train_loader, desc=f"epoch {epoch + 1}/{total}", leave=False,
                                     unit="batch", disable=not long_epoch)
            try:
                crab._train()
            finally:
                crab.train_loader = train_loader
            train_seconds += time.perf_counter() - t0
            crab.lr_list.append(crab.optimizer.param_groups[0]["lr"])
            pred_v, true_v = crab.predict(loader=crab.data_loader, return_true=True)
            val_mae = float(np.mean(np.abs(np.nan_to_num(pred_v, nan=np.nanmean(true_v)) - true_v)))
            history.append({"epoch": epoch + 1, "train_loss": recorder.mean, "val_mae": val_mae,
                            "lr": float(crab.optimizer.param_groups[0]["lr"]),
                            "swa_discards": int(crab.optimizer.discard_count)})
            bar.update(1)
            bar.set_postfix(loss=f"{recorder.mean:.4f}", val_mae=f"{val_mae:.4g}")
            if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0):
                _atomic_torch_save(_capture(crab, base_optim, lookahead, params, epoch + 1, history, fingerprint),
                                   Path(checkpoint))
        else:
            epoch = total - 1
    finally:
        bar.close()
    if stopped == "interrupted":
        raise TrainingInterrupted(epoch)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No SWA weights to swap")
        crab.optimizer.swap_swa_sgd()  # final weights = SWA average (as CrabNet.fit)
    pred_v, true_v = crab.predict(loader=crab.data_loader, return_true=True)
    final_val = float(np.mean(np.abs(pred_v - true_v)))
    epochs_run = len(history)
    seconds = time.perf_counter() - t_start
    fresh = epochs_run - resumed_from
    sps = fresh * n_train / train_seconds if train_seconds > 0 else float("nan")
    result = TrainResult(
        model_state={k: v.detach().cpu().clone() for k, v in crab.model.state_dict().items()},
        scaler_state={"mean": float(crab.scaler.mean), "std": float(crab.scaler.std)},
        history=history + [{"epoch": epochs_run, "final_val_mae_swa": final_val}],
        epochs_run=epochs_run, stopped=stopped, seconds=seconds, samples_per_s=sps,
        resumed_from=resumed_from,
    )
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
    return result


class TrainingInterrupted(RuntimeError):
    def __init__(self, epoch: int):
        super().__init__(f"training stopped after epoch {epoch + 1} (stop_after)")
        self.epoch = epoch


def _best_epoch(history: list[dict]) -> int:
    vals = [h["val_mae"] for h in history]
    return int(np.argmin(vals))  # 0-based epoch index of the best val MAE


def _capture(crab, lamb, lookahead, params, next_epoch, history, fingerprint) -> dict:
    def per_param(state):
        return [{k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in state.get(p, {}).items()}
                for p in params]

    swa = crab.optimizer
    return {
        "version": CHECKPOINT_VERSION,
        "fingerprint": fingerprint,
        "next_epoch": next_epoch,
        "model": {k: v.detach().clone() for k, v in crab.model.state_dict().items()},
        "model_training": crab.model.training,
        "lamb": per_param(lamb.state),
        "lookahead": per_param(lookahead.state),
        "swa": per_param(swa.state),
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in lamb.param_groups],
        "swa_scalars": {k: getattr(swa, k) for k in ("minimum_mae", "maximum_mae", "maes", "discard_count",
                                                     "mae_avg", "minimum_found") if hasattr(swa, k)},
        "scheduler": crab.lr_scheduler.state_dict(),
        "lr_list": list(crab.lr_list),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "history": list(history),
    }


def _load_checkpoint(path: Path, fingerprint: str) -> dict | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a damaged checkpoint is discarded, never trusted
        warnings.warn(f"{path}: unreadable checkpoint ({type(err).__name__}); starting over")
        return None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION or state.get("fingerprint") != fingerprint:
        warnings.warn(f"{path}: checkpoint from another configuration; starting over")
        return None
    return state


def _restore(state, crab, lamb, lookahead, params) -> int:
    crab.model.load_state_dict(state["model"])
    crab.model.train(state["model_training"])
    for store, saved in ((lamb.state, state["lamb"]), (lookahead.state, state["lookahead"]),
                         (crab.optimizer.state, state["swa"])):
        for p, s in zip(params, saved):
            if s:
                store[p] = {k: (v.to(p.device) if torch.is_tensor(v) else v) for k, v in s.items()}
    for g, saved in zip(lamb.param_groups, state["groups"]):
        g.update(saved)
    for k, v in state["swa_scalars"].items():
        setattr(crab.optimizer, k, v)
    crab.lr_scheduler.load_state_dict(state["scheduler"])
    crab.lr_list = list(state["lr_list"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return int(state["next_epoch"])


def predict_formulas(arch: dict, model_state: dict, scaler_state: dict, formulas, batch_size: int = 1024,
                     device="cpu") -> np.ndarray:
    """Predictions of a trained SubCrab for a list of formulas (validated upstream)."""
    formulas = list(formulas)
    if not formulas:
        return np.zeros(0)
    crab = make_crab(arch, batch_size, device)
    crab.model = build_model(arch, device)
    crab.model.load_state_dict(model_state)
    crab.scaler = Scaler(torch.zeros(3))
    crab.scaler.load_state_dict({"mean": torch.tensor(scaler_state["mean"]), "std": torch.tensor(scaler_state["std"])})
    crab.n_elements = "infer"
    with quiet():
        pred = crab.predict(formula_frame(formulas))
    return np.asarray(pred, dtype=float)


def measure_throughput(arch: dict, train_df: pd.DataFrame, batch_size: int, mode: str = "all",
                       init_state: dict | None = None, device="cpu", seed: int = 0) -> float:
    """Training samples/s of one plain epoch (crabnet's ``_train``, no SWA evaluation)."""
    with quiet():
        crab, *_ = _setup(arch, train_df, train_df.iloc[: max(1, len(train_df) // 10)], epochs=2,
                          batch_size=batch_size, epochs_step=1, init_state=init_state, mode=mode,
                          seed=seed, device=device)
        crab.epoch = 0
        t0 = time.perf_counter()
        crab._train()
        dt = time.perf_counter() - t0
    return len(crab.train_loader.dataset) / dt
