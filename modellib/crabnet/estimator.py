"""scikit-learn style CrabNet estimator on the reduced formula of each structure,
trained from scratch or fine-tuned from a pretrained checkpoint (all weights, or only
the output network with the encoder frozen)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin

from modellib.crabnet import formulas as fml
from modellib.crabnet.profiles import get_profile, resolve_profile
from modellib.crabnet.train import (
    formula_frame,
    predict_formulas,
    state_from_bytes,
    state_to_bytes,
    train_crabnet,
)

FINETUNE_MODES = ("all", "head")


@contextlib.contextmanager
def _torch_threads(n: int | None):
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class CrabNetRegressor(RegressorMixin, BaseEstimator):
    """CrabNet (crabnet 2.0.8) regressor on formulas.

    Parameters
    ----------
    profile : name of a compute profile (``cpu``, ``paper``; see profiles.py). Recorded
        as given; ``make_model`` passes the resolved name.
    pretrain : None (from scratch), ``eform`` (Matbench mp_e_form) or ``density``.
    finetune : ``all`` (every weight) or ``head`` (output network only; encoder frozen).
    seed : seeds numpy/torch/python and the train/validation split.
    cache_dir : the model's cache folder.
    pretrained_dir : where pretrained checkpoints are cached, shared by the models that
        reuse them (None: ``cache_dir/pretrained``, see pretrain.default_root).
    device : ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    n_threads : torch CPU threads during fit/predict (None: leave torch's setting).
    progress : tqdm bars.
    pretraining_csv : where to record the pretraining check (``auto``: the repository's
        pretraining.csv for the named profiles ``cpu``/``paper``; None: nowhere).
    """

    def __init__(self, profile: str = "cpu", pretrain: str | None = None, finetune: str = "all", seed: int = 0,
                 cache_dir: str | None = None, device: str = "auto", n_threads: int | None = None,
                 progress: bool = True, pretraining_csv: str | None = "auto", pretrained_dir: str | None = None):
        self.profile = profile
        self.pretrain = pretrain
        self.finetune = finetune
        self.seed = seed
        self.cache_dir = cache_dir
        self.device = device
        self.n_threads = n_threads
        self.progress = progress
        self.pretraining_csv = pretraining_csv
        self.pretrained_dir = pretrained_dir

    # -- fitting -----------------------------------------------------------------
    def _check_params(self):
        prof = get_profile(self.profile)
        if self.pretrain not in (None, "eform", "density"):
            raise ValueError(f"pretrain must be None, 'eform' or 'density', not {self.pretrain!r}")
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {FINETUNE_MODES}, not {self.finetune!r}")
        if self.pretrain is None and self.finetune != "all":
            raise ValueError("finetune='head' needs a pretrained encoder (pretrain='eform' or 'density')")
        return prof

    def _pretrained(self, prof, device):
        from modellib.crabnet import pretrain as pt
        from harness import paths

        root = Path(self.pretrained_dir) if self.pretrained_dir else pt.default_root(
            Path(self.cache_dir) if self.cache_dir else None)
        ckpt = pt.ensure_pretrained(self.pretrain, prof, self.seed, root, device=device, progress=self.progress)
        meta = ckpt["meta"]
        print(pt.check_message(meta))
        csv = self.pretraining_csv
        if csv == "auto":  # the committed record: only from runs into the repository (not scratch / --limit)
            csv = paths.REPO_ROOT / "pretraining.csv" if prof.name in ("cpu", "paper") and paths.is_repo_output() else None
        if csv:
            pt.record_check(meta, Path(csv))
        return ckpt

    def fit(self, X, y):
        prof = self._check_params()
        t0 = time.perf_counter()
        ids = list(X.index) if hasattr(X, "index") else list(range(len(X)))
        formulas = fml.reduced_formulas(X)
        fml.validate(formulas, ids, "training materials")
        y = np.asarray(y, dtype=float).ravel()
        if len(y) != len(formulas):
            raise ValueError(f"X has {len(formulas)} rows but y has {len(y)} values")
        if not np.all(np.isfinite(y)):
            bad = int(np.argmax(~np.isfinite(y)))
            raise ValueError(f"non-finite target for {ids[bad]} ({int((~np.isfinite(y)).sum())} in all)")
        if len(y) < 10:
            raise ValueError(f"CrabNet needs at least 10 training materials, got {len(y)}")
        device = _device(self.device)
        with _torch_threads(self.n_threads):
            init_state, self.pretrained_ = None, None
            if self.pretrain is not None:
                ckpt = self._pretrained(prof, device)
                init_state = ckpt["model_state"]
                self.pretrained_ = {k: ckpt["meta"][k] for k in ("source", "dataset", "key", "test_mae", "unit",
                                                                 "n_train", "epochs_run")}
            rng = np.random.RandomState(self.seed)
            perm = rng.permutation(len(y))
            n_val = max(1, int(round(prof.val_fraction * len(y))))
            val_idx, tr_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            f = np.asarray(formulas, dtype=object)
            train_df = formula_frame(f[tr_idx], y[tr_idx])
            val_df = formula_frame(f[val_idx], y[val_idx])
            if self.pretrain is None:
                epochs = prof.epochs
            else:
                epochs = prof.finetune_epochs if self.finetune == "all" else prof.head_epochs
            name = "crabnet" if self.pretrain is None else f"{self.pretrain}->{self.finetune}"
            result = train_crabnet(
                prof.arch(), train_df, val_df, epochs=epochs, batch_size=prof.batch_size,
                epochs_step=prof.epochs_step, patience=prof.patience, init_state=init_state,
                mode=self.finetune, seed=self.seed, device=device, desc=f"fit {name}", progress=self.progress,
            )
        self.profile_ = prof.name
        self.options_ = {"profile": prof.name}  # recorded in the run record
        self.arch_ = prof.arch()
        self.batch_size_ = prof.batch_size
        self.model_state_ = state_to_bytes(result.model_state)
        self.scaler_state_ = dict(result.scaler_state)
        self.history_ = result.history
        self.epochs_run_ = result.epochs_run
        self.stopped_ = result.stopped
        self.n_train_ = len(tr_idx)
        self.n_val_ = len(val_idx)
        self.train_samples_per_s_ = result.samples_per_s
        self.fit_seconds_ = time.perf_counter() - t0
        self._state_cache = None
        return self

    # -- prediction --------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        if not hasattr(self, "model_state_"):
            raise RuntimeError("CrabNetRegressor is not fitted")
        ids = list(X.index) if hasattr(X, "index") else list(range(len(X)))
        formulas = fml.reduced_formulas(X)
        fml.validate(formulas, ids, "materials to predict")
        device = _device(self.device)
        state = getattr(self, "_state_cache", None)
        if state is None:
            state = state_from_bytes(self.model_state_, device)
            self._state_cache = state
        with _torch_threads(self.n_threads):
            return predict_formulas(self.arch_, state, self.scaler_state_, formulas, device=device)

    def __getstate__(self):
        d = dict(super().__getstate__())
        d.pop("_state_cache", None)  # live tensors are rebuilt from model_state_ bytes
        # No absolute path in a saved model: predict needs neither folder (issue 13).
        d["cache_dir"] = d["pretrained_dir"] = None
        return d


THREADS_ENV = "KSPACING_CRABNET_THREADS"


def make_model(ctx, pretrain: str | None = None, finetune: str = "all") -> CrabNetRegressor:
    """Estimator for a model folder: ``ctx.options["profile"]`` (model.yaml; default
    ``auto``) is resolved here: ``paper`` on CUDA, else ``cpu``; $KSPACING_CRABNET_PROFILE wins.

    torch runs on 1 CPU thread unless ``$KSPACING_CRABNET_THREADS`` says otherwise:
    measured on the 2-core machine while other jobs ran, 2 threads were 6-7x *slower*
    (178 vs 1170 training samples/s, OpenMP oversubscription)."""
    import os

    return CrabNetRegressor(profile=resolve_profile(ctx.options.get("profile", "auto")), pretrain=pretrain,
                            finetune=finetune, seed=int(getattr(ctx, "seed", 0)), cache_dir=str(ctx.cache_dir),
                            pretrained_dir=str(Path(ctx.shared_dir) / "crabnet" / "pretrained"),
                            n_threads=int(os.environ.get(THREADS_ENV, "1")))
