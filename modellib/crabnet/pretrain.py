"""Pretraining on a source task (Matbench ``mp_e_form`` or density), cached and
resumable, and the check of the formation-energy pretraining against Matbench.

Checkpoints live in a shared folder (``<cache>/crabnet/pretrained/``; the harness's
per-model cache is ``<cache>/models/<name>``) so the four transfer rows reuse them. Each
is keyed by the source data's fingerprint, the profile (architecture and pretraining
schedule), the seed and the crabnet version. An interrupted pretraining resumes from
the last per-epoch checkpoint (``resume.pt``, written atomically).
"""

from __future__ import annotations

import io

import fcntl
import functools
import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import crabnet
from harness import atomic
from modellib.crabnet import formulas as fml
from modellib.crabnet.profiles import Profile
from modellib.crabnet.train import predict_formulas, train_crabnet

CRABNET_VERSION = "2.0.8"
MATBENCH_CV = Path(crabnet.__file__).parent / "data" / "matbench_cv" / "mp_e_form"
SOURCES = ("eform", "density")
PRETRAIN_VERSION = 1

# The pretraining check: CrabNet on Matbench mp_e_form (eV/atom).
MATBENCH_CRABNET_MAE = 0.0862  # Matbench leaderboard, CrabNet, mp_e_form (5-fold mean)
SEED_CRABNET_MAE = 0.0842  # the seed project's reproduction
FLAG_RATIO = 1.25
PRETRAINING_CSV_COLUMNS = [
    "source", "dataset", "profile", "seed", "n_train", "n_val", "n_test", "epochs_run", "stopped",
    "test_mae", "unit", "reference_mae_matbench", "reference_mae_seed", "ratio_to_matbench",
    "exceeds_1_25x_matbench", "train_seconds", "samples_per_s", "checkpoint", "note",
]


@dataclass
class SourceData:
    source: str
    dataset: str
    unit: str
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    fingerprint: str
    note: str = ""


def _frame_digest(*dfs: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for df in dfs:
        h.update(pd.util.hash_pandas_object(df[["formula", "target"]], index=False).values.tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def _subsample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None or len(df) <= n:
        return df.reset_index(drop=True)
    idx = np.random.RandomState(seed).permutation(len(df))[:n]
    return df.iloc[np.sort(idx)].reset_index(drop=True)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])[["formula", "target"]]


@functools.lru_cache(maxsize=1)
def _eform_fold0() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """Matbench mp_e_form fold 0 (train, val, test), checked once per process."""
    parts, skipped = [], 0
    for split in ("train", "val", "test"):
        df, k = fml.filter_valid(_read(MATBENCH_CV / f"{split}0.csv"), f"mp_e_form {split}0")
        parts.append(df)
        skipped += k
    return parts[0], parts[1], parts[2], skipped


def load_source(source: str, profile: Profile, seed: int, cache_root: Path | None = None,
                progress: bool = True) -> SourceData:
    """Train/val/test frames of a source task, subsampled per the profile."""
    if source == "eform":
        train, val, test, skipped = (x.copy() if isinstance(x, pd.DataFrame) else x for x in _eform_fold0())
        note = f"Matbench mp_e_form fold 0 (crabnet matbench_cv): train0 {len(train)}, val0 {len(val)}, test0 {len(test)}"
        if skipped:
            note += f"; skipped {skipped} unusable formulas"
        dataset, unit = "matbench_mp_e_form_fold0", "eV/atom"
    elif source == "density":
        from modellib.crabnet.density import density_dataset

        df, prov = density_dataset(cache_root / "data" if cache_root else None, progress=progress)
        df, skipped = fml.filter_valid(df, "density")
        perm = np.random.RandomState(12345).permutation(len(df))  # fixed held-out split
        n_test = len(df) // 10
        n_val = len(df) // 10
        test = df.iloc[np.sort(perm[:n_test])].reset_index(drop=True)
        val = df.iloc[np.sort(perm[n_test:n_test + n_val])].reset_index(drop=True)
        train = df.iloc[np.sort(perm[n_test + n_val:])].reset_index(drop=True)
        note = f"{prov['source']}: {len(df)} reduced formulas (median per formula); 80/10/10 split"
        if skipped:
            note += f"; skipped {skipped} unusable formulas"
        dataset, unit = "oqmd_density" + ("+mp" if prov.get("mp_formulas") else ""), "g/cm^3"
    else:
        raise ValueError(f"unknown pretraining source {source!r} (known: {', '.join(SOURCES)})")
    train = _subsample(train, profile.pretrain_max_train, seed)
    val = _subsample(val, profile.pretrain_max_val, seed + 1)
    return SourceData(source, dataset, unit, train, val, test, _frame_digest(train, val), note)


def default_root(model_cache_dir: Path | None) -> Path:
    """Checkpoint folder when the estimator is given none: ``model_cache_dir/pretrained``,
    or the shared ``<cache>/crabnet/pretrained`` without a model cache. (Model folders
    pass the shared folder explicitly: ``make_model`` uses ``ctx.shared_dir``.)"""
    if model_cache_dir is None:
        from harness.paths import cache_dir

        return cache_dir() / "crabnet" / "pretrained"
    return Path(model_cache_dir) / "pretrained"


def checkpoint_key(source: str, data: SourceData, profile: Profile, seed: int) -> str:
    from harness.numeric_env import torch_tag

    keyed = {
        "source": source, "data": data.fingerprint, "seed": seed, "crabnet": CRABNET_VERSION,
        "version": PRETRAIN_VERSION, "torch_kernels": torch_tag(),
        "profile": {k: v for k, v in profile.as_dict().items() if k in (
            "d_model", "N", "heads", "dim_feedforward", "out_hidden", "batch_size", "epochs_step",
            "patience", "pretrain_epochs", "pretrain_max_train", "pretrain_max_val", "dropout")},
    }
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # one pretraining per checkpoint at a time
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_pretrained(source: str, profile: Profile, seed: int, root: Path, device="cpu",
                      progress: bool = True, stop_after: int | None = None) -> dict:
    """The pretrained checkpoint for (source, profile, seed): loaded when cached, else
    trained (resuming from ``resume.pt`` when a previous run was interrupted) and
    evaluated on the source's test set. Returns a dict with model_state, scaler_state,
    arch and meta."""
    cache_root = Path(root).parent  # <cache>/crabnet
    data = load_source(source, profile, seed, cache_root=cache_root, progress=progress)
    key = checkpoint_key(source, data, profile, seed)
    folder = Path(root) / f"{source}-{profile.name}-seed{seed}-{key}"
    final = folder / "final.pt"
    with _locked(folder / ".lock"):
        if final.is_file():
            try:
                return torch.load(final, map_location="cpu", weights_only=False)
            except Exception:
                final.unlink(missing_ok=True)  # damaged: retrain
        arch = profile.arch()
        print(f"pretraining CrabNet on {data.dataset} (profile {profile.name}, seed {seed}): "
              f"train {len(data.train)}, val {len(data.val)}, up to {profile.pretrain_epochs} epochs -> {folder}")
        result = train_crabnet(
            arch, data.train, data.val, epochs=profile.pretrain_epochs, batch_size=profile.batch_size,
            epochs_step=profile.epochs_step, patience=profile.patience, seed=seed, device=device,
            checkpoint=folder / "resume.pt", fingerprint=key, desc=f"pretrain {source}",
            progress=progress, stop_after=stop_after,
        )
        pred = predict_formulas(arch, result.model_state, result.scaler_state, data.test["formula"], device=device)
        test_mae = float(np.mean(np.abs(pred - data.test["target"].to_numpy())))
        meta = {
            "source": source, "dataset": data.dataset, "unit": data.unit, "profile": profile.name, "seed": seed,
            "key": key, "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
            "epochs_run": result.epochs_run, "resumed_from": result.resumed_from, "stopped": result.stopped,
            "test_mae": test_mae, "train_seconds": round(result.seconds, 1),
            "samples_per_s": round(result.samples_per_s, 1), "note": data.note, "history": result.history,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "checkpoint": str(final),
        }
        ckpt = {"model_state": result.model_state, "scaler_state": result.scaler_state, "arch": arch, "meta": meta}
        with atomic.atomic_path(final) as tmp:
            torch.save(ckpt, tmp)
        atomic.write_text(folder / "meta.json", json.dumps(meta, indent=1))
        print(f"pretrained {source}: test MAE {test_mae:.4g} {data.unit} on {len(data.test)} held-out formulas "
              f"({result.epochs_run} epochs, {result.seconds:.0f} s)")
        return ckpt


def check_row(meta: dict) -> dict:
    row = {c: "" for c in PRETRAINING_CSV_COLUMNS}
    row.update({k: meta.get(k, "") for k in PRETRAINING_CSV_COLUMNS if k in meta})
    row["test_mae"] = round(float(meta["test_mae"]), 5)
    # the checkpoint folder's name (under <cache>/crabnet/pretrained), not a machine path
    row["checkpoint"] = Path(str(meta.get("checkpoint", ""))).parent.name
    if meta["source"] == "eform":
        ratio = float(meta["test_mae"]) / MATBENCH_CRABNET_MAE
        row.update(reference_mae_matbench=MATBENCH_CRABNET_MAE, reference_mae_seed=SEED_CRABNET_MAE,
                   ratio_to_matbench=round(ratio, 3), exceeds_1_25x_matbench=bool(ratio > FLAG_RATIO))
        if ratio > FLAG_RATIO:
            row["note"] = (f"profile {meta['profile']} does NOT reach Matbench level: MAE {meta['test_mae']:.4f} eV/atom "
                           f"= {ratio:.2f}x Matbench's CrabNet {MATBENCH_CRABNET_MAE} (seed {SEED_CRABNET_MAE}); "
                           + meta.get("note", ""))
    else:
        row.update(reference_mae_matbench="", reference_mae_seed="", ratio_to_matbench="", exceeds_1_25x_matbench="")
    return row


def check_message(meta: dict) -> str:
    if meta["source"] != "eform":
        return f"pretraining {meta['source']}: test MAE {meta['test_mae']:.4g} {meta['unit']} (no published reference)"
    ratio = meta["test_mae"] / MATBENCH_CRABNET_MAE
    msg = (f"pretraining check mp_e_form fold 0 (profile {meta['profile']}): MAE {meta['test_mae']:.4f} eV/atom | "
           f"Matbench CrabNet {MATBENCH_CRABNET_MAE} | seed {SEED_CRABNET_MAE} | ratio to Matbench {ratio:.2f}")
    if ratio > FLAG_RATIO:
        msg += (f"\n  FLAG: ratio > {FLAG_RATIO}: the {meta['profile']} profile does not reach Matbench level "
                f"(measured {meta['test_mae']:.4f} eV/atom on {meta['n_test']} test formulas, trained on "
                f"{meta['n_train']} formulas for {meta['epochs_run']} epochs)")
    return msg


TIMING_COLUMNS = ("train_seconds", "samples_per_s")


def record_check(meta: dict, csv_path: Path) -> pd.DataFrame:
    """Insert/replace the row for (source, profile, seed) in ``csv_path`` (atomically)."""
    row = check_row(meta)
    csv_path = Path(csv_path)
    if csv_path.is_file():
        old = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        same_key = ((old["source"] == str(row["source"])) & (old["profile"] == str(row["profile"]))
                    & (old["seed"] == str(row["seed"])))
        old = old[~same_key]
        df = pd.concat([old, pd.DataFrame([{k: str(v) for k, v in row.items()}])], ignore_index=True)
    else:
        df = pd.DataFrame([row])
    df = df.reindex(columns=PRETRAINING_CSV_COLUMNS).sort_values(["source", "profile", "seed"]).reset_index(drop=True)
    text = df.to_csv(index=False)
    if csv_path.is_file():
        # the same results as recorded: keep the file and its timings (a rerun leaves git status clean)
        result = [c for c in PRETRAINING_CSV_COLUMNS if c not in TIMING_COLUMNS]
        before = pd.read_csv(csv_path, dtype=str, keep_default_na=False).reindex(columns=result)
        after = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False).reindex(columns=result)
        if before.equals(after):
            return pd.read_csv(csv_path)
    atomic.write_text(csv_path, text)
    return df
