"""CrabNet family (modellib/crabnet): SWA fix, determinism, head-only fine-tuning,
checkpoint round-trips and resume, the pretraining check, formula errors, density.

Real small slices (k-point structures from the offline store, Matbench mp_e_form rows
shipped with crabnet) and a tiny network, so this file stays well under a minute or two.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch

import modellib.crabnet  # noqa: F401  (installs the SWA fix)
from modellib.crabnet import pretrain as pt
from modellib.crabnet import profiles
from modellib.crabnet.estimator import CrabNetRegressor
from modellib.crabnet.formulas import FormulaError, validate
from modellib.crabnet.train import (
    TrainingInterrupted,
    formula_frame,
    predict_formulas,
    state_from_bytes,
    train_crabnet,
)

TINY = profiles.Profile(
    name="test-tiny", d_model=32, N=1, heads=2, dim_feedforward=64, out_hidden=(32, 16), batch_size=64,
    epochs=4, finetune_epochs=4, head_epochs=4, epochs_step=1, pretrain_epochs=2,
    pretrain_max_train=512, pretrain_max_val=128,
)
EFORM = pd.read_csv(pt.MATBENCH_CV / "train0.csv")


@pytest.fixture(scope="module", autouse=True)
def tiny_profile():
    profiles.PROFILES[TINY.name] = TINY
    yield TINY.name
    profiles.PROFILES.pop(TINY.name, None)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def kslice(task):
    """300 real k-point training structures and 80 test structures."""
    return task.X("train").iloc[:300], task.y("train")[:300], task.X("test").iloc[:80]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    # Shaped like the harness's <cache>/models/<name>, so pretrained checkpoints go to
    # <cache>/crabnet/pretrained and are shared between tests.
    return tmp_path_factory.mktemp("cache") / "models" / "crabnet_test"


def _est(cache, **kw) -> CrabNetRegressor:
    kw.setdefault("pretraining_csv", None)
    return CrabNetRegressor(profile=TINY.name, cache_dir=str(cache), progress=False, n_threads=1, **kw)


# -- the SWA / torch 2.13 fix --------------------------------------------------------


def test_compat_swa_has_the_optimizer_base_state():
    from crabnet.utils.optim import SWA
    from crabnet.utils.utils import Lamb, Lookahead
    from torch.optim.lr_scheduler import CyclicLR

    from modellib.crabnet.compat import CompatLookahead, CompatSWA

    p = torch.nn.Parameter(torch.zeros(3))
    raw = SWA(Lookahead(Lamb([p])))
    assert "_optimizer_step_pre_hooks" not in raw.__dict__  # the root cause: no Optimizer.__init__
    fixed = CompatSWA(CompatLookahead(Lamb([p])))
    assert isinstance(fixed._optimizer_step_pre_hooks, OrderedDict)
    for _ in range(2):  # the class-level hooked step + the scheduler's wrapper, twice
        opt = CompatSWA(CompatLookahead(Lamb([p])))
        sched = CyclicLR(opt, base_lr=1e-4, max_lr=1e-3, cycle_momentum=False, step_size_up=2)
        p.grad = torch.ones(3)
        opt.step()
        opt.zero_grad()
        sched.step()


@pytest.mark.filterwarnings("ignore:.*pin_memory")
@pytest.mark.filterwarnings("ignore:.*enable_nested_tensor")
def test_two_plain_crabnet_fits_in_one_process(tmp_path, monkeypatch):
    """crabnet's own CrabNet.fit, twice in one process (failed with AttributeError
    '_optimizer_step_pre_hooks' on torch 2.13 before the fix)."""
    from crabnet.crabnet_ import CrabNet

    monkeypatch.chdir(tmp_path)  # plain CrabNet writes ./figures; keep it out of the repo
    df = EFORM.iloc[:200]
    for _ in range(2):
        m = CrabNet(d_model=32, N=1, heads=2, dim_feedforward=64, epochs=2, epochs_step=1, batch_size=64,
                    verbose=False, losscurve=False, learningcurve=False, save=False, random_state=0)
        m.fit(df.iloc[:160].copy(), df.iloc[160:].copy())
        assert np.all(np.isfinite(m.predict(df.iloc[160:].copy())))


# -- estimator ------------------------------------------------------------------------


def test_two_fits_give_identical_predictions_and_write_nothing_to_cwd(kslice, model_cache, tmp_path, monkeypatch):
    X, y, Xt = kslice
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    a = _est(model_cache).fit(X, y)
    b = _est(model_cache).fit(X, y)
    pa, pb = a.predict(Xt), b.predict(Xt)
    np.testing.assert_array_equal(pa, pb)
    assert pa.shape == (len(Xt),) and np.all(np.isfinite(pa))
    assert a.profile_ == TINY.name and a.epochs_run_ == TINY.epochs
    assert list(cwd.iterdir()) == []  # no ./models/trained_models, no ./figures


def test_pickle_round_trip_gives_identical_predictions(kslice, model_cache, tmp_path):
    X, y, Xt = kslice
    est = _est(model_cache).fit(X, y)
    before = est.predict(Xt)
    joblib.dump(est, tmp_path / "m.joblib")
    again = joblib.load(tmp_path / "m.joblib")
    np.testing.assert_array_equal(again.predict(Xt), before)


def test_head_only_finetuning_changes_only_the_output_network(kslice, model_cache, tmp_path):
    X, y, _ = kslice
    csv = tmp_path / "pretraining.csv"
    head = _est(model_cache, pretrain="eform", finetune="head", pretraining_csv=str(csv)).fit(X, y)
    root = pt.default_root(model_cache)
    assert root == model_cache / "pretrained"
    ckpt = pt.ensure_pretrained("eform", TINY, 0, root, progress=False)  # cached: loaded, not retrained
    pre, tuned = ckpt["model_state"], state_from_bytes(head.model_state_)
    assert pre.keys() == tuned.keys()
    head_keys = [k for k in pre if k.startswith("output_nn.")]
    body_keys = [k for k in pre if not k.startswith("output_nn.")]
    assert head_keys and body_keys
    for k in body_keys:
        assert torch.equal(pre[k], tuned[k]), f"frozen weight {k} changed"
    assert all(not torch.equal(pre[k], tuned[k]) for k in head_keys if k.endswith("weight"))
    # all-weights fine-tuning from the same checkpoint moves the encoder too
    full = state_from_bytes(_est(model_cache, pretrain="eform", finetune="all").fit(X, y).model_state_)
    assert any(not torch.equal(pre[k], full[k]) for k in body_keys if k.startswith("encoder.transformer"))
    # the pretraining check was recorded with the reference numbers
    rec = pd.read_csv(csv)
    assert rec.loc[0, "reference_mae_matbench"] == pt.MATBENCH_CRABNET_MAE
    assert rec.loc[0, "reference_mae_seed"] == pt.SEED_CRABNET_MAE
    assert bool(rec.loc[0, "exceeds_1_25x_matbench"]) is True  # a 2-epoch tiny net is far off


def test_pretrained_checkpoint_is_cached_and_round_trips(model_cache):
    root = pt.default_root(model_cache)
    a = pt.ensure_pretrained("eform", TINY, 0, root, progress=False)
    folder = Path(a["meta"]["checkpoint"]).parent
    assert (folder / "final.pt").is_file() and not (folder / "resume.pt").exists()
    b = pt.ensure_pretrained("eform", TINY, 0, root, progress=False)
    assert a["meta"] == b["meta"]
    f = EFORM["formula"].iloc[-50:]
    np.testing.assert_array_equal(predict_formulas(a["arch"], a["model_state"], a["scaler_state"], f),
                                  predict_formulas(b["arch"], b["model_state"], b["scaler_state"], f))


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    arch = TINY.arch()
    tr, va = EFORM.iloc[:256][["formula", "target"]], EFORM.iloc[256:320][["formula", "target"]]
    kw = dict(epochs=4, batch_size=64, epochs_step=1, seed=3, progress=False)
    ck = tmp_path / "resume.pt"
    with pytest.raises(TrainingInterrupted):
        train_crabnet(arch, tr, va, checkpoint=ck, fingerprint="k", stop_after=2, **kw)
    assert ck.is_file()
    resumed = train_crabnet(arch, tr, va, checkpoint=ck, fingerprint="k", **kw)
    assert resumed.resumed_from == 2 and not ck.exists()
    straight = train_crabnet(arch, tr, va, **kw)
    assert resumed.history == straight.history
    for k, v in straight.model_state.items():
        assert torch.equal(v, resumed.model_state[k]), k


def test_checkpoint_of_another_configuration_is_not_used(tmp_path):
    arch = TINY.arch()
    tr, va = EFORM.iloc[:128][["formula", "target"]], EFORM.iloc[128:160][["formula", "target"]]
    kw = dict(epochs=2, batch_size=64, epochs_step=1, progress=False)
    ck = tmp_path / "resume.pt"
    with pytest.raises(TrainingInterrupted):
        train_crabnet(arch, tr, va, checkpoint=ck, fingerprint="a", stop_after=1, **kw)
    with pytest.warns(UserWarning, match="another configuration"):
        r = train_crabnet(arch, tr, va, checkpoint=ck, fingerprint="b", **kw)
    assert r.resumed_from == 0


# -- pretraining check ----------------------------------------------------------------


def _meta(mae, source="eform"):
    return {"source": source, "dataset": "matbench_mp_e_form_fold0", "unit": "eV/atom", "profile": "cpu", "seed": 0,
            "n_train": 100, "n_val": 10, "n_test": 50, "epochs_run": 20, "stopped": "epochs", "test_mae": mae,
            "train_seconds": 1.0, "samples_per_s": 1.0, "checkpoint": "x", "note": "n"}


def test_pretraining_check_reports_the_reference_numbers(tmp_path):
    csv = tmp_path / "pretraining.csv"
    msg = pt.check_message(_meta(0.2))
    assert "0.0862" in msg and "0.0842" in msg and "0.2000" in msg and "FLAG" in msg
    assert "FLAG" not in pt.check_message(_meta(0.09))
    pt.record_check(_meta(0.2), csv)
    pt.record_check(_meta(0.09), csv)  # same (source, profile, seed): replaced, not appended
    pt.record_check(_meta(0.5, "density") | {"unit": "g/cm^3"}, csv)
    df = pd.read_csv(csv)
    assert list(df.columns) == pt.PRETRAINING_CSV_COLUMNS
    e = df[df["source"] == "eform"].iloc[0]
    assert len(df) == 2 and e["test_mae"] == 0.09 and not bool(e["exceeds_1_25x_matbench"])
    assert e["reference_mae_matbench"] == 0.0862 and e["reference_mae_seed"] == 0.0842
    assert not list(tmp_path.glob(".pretraining.csv.*"))  # atomic write left no temp file
    text = csv.read_text()
    pt.record_check(_meta(0.09) | {"train_seconds": 7.0, "samples_per_s": 3.0}, csv)  # same result, other timing
    assert csv.read_text() == text  # kept: a rerun with the same results leaves the file as it was


# -- formulas, density, profiles, model folders ----------------------------------------


def test_unknown_element_and_unparsable_formula_name_the_material(model_cache):
    with pytest.raises(FormulaError, match=r"JVASP-1 \('Xx2O'.*unknown element\(s\) Xx"):
        validate(["Xx2O", "NaCl"], ["JVASP-1", "JVASP-2"])
    with pytest.raises(FormulaError, match=r"JVASP-7.*unparsable"):
        validate(["NaCl", "(("], ["JVASP-6", "JVASP-7"])
    X = pd.DataFrame({"formula": ["NaCl"] * 20 + ["Qq3"]}, index=[f"id-{i}" for i in range(21)])
    with pytest.raises(FormulaError, match="id-20"):
        _est(model_cache).fit(X, np.arange(21.0))


def test_density_from_oqmd_volume(tmp_path, monkeypatch):
    from modellib.crabnet import density

    d = tmp_path / "oqmd"
    d.mkdir()
    (d / "train.csv").write_text("formula,target\nSi1,20.0\nSi2,20.04\nNa1Cl1,22.0\n")
    (d / "test.csv").write_text("formula,target\nSi4,21.0\n")
    monkeypatch.setattr(density, "OQMD_DIR", d)
    monkeypatch.delenv("MP_API_KEY", raising=False)
    df, prov = density.density_dataset(tmp_path / "cache", progress=False)
    got = dict(zip(df["formula"], df["target"]))
    assert set(got) == {"Si", "NaCl"} and prov["n"] == 2
    assert got["Si"] == pytest.approx(28.0855 * 1.66053906660 / 20.04, rel=1e-5)  # median of 20.0, 20.04, 21.0
    assert got["NaCl"] == pytest.approx((22.98977 + 35.453) * 1.66053906660 / (2 * 22.0), rel=1e-4)
    assert density.mp_density() is None  # no key: nothing fetched, nothing fails
    assert list((tmp_path / "cache").glob("oqmd_density-*.csv"))  # cached
    again, _ = density.density_dataset(tmp_path / "cache", progress=False)  # from the cache: identical
    pd.testing.assert_frame_equal(df, again)


def test_profiles(monkeypatch):
    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)
    monkeypatch.setattr(profiles, "cuda_available", lambda: False)
    assert profiles.resolve_profile("cpu") == "cpu" and profiles.resolve_profile("auto") == "cpu"
    assert profiles.resolve_profile("paper") == "paper"
    monkeypatch.setattr(profiles, "cuda_available", lambda: True)
    assert profiles.resolve_profile("auto") == profiles.resolve_profile(None) == "paper"  # auto: paper on CUDA
    assert profiles.resolve_profile("cpu") == "cpu"  # an explicit choice is kept
    monkeypatch.setenv(profiles.PROFILE_ENV, "cpu")
    assert profiles.resolve_profile("paper") == "cpu"
    monkeypatch.setenv(profiles.PROFILE_ENV, "nope")
    with pytest.raises(ValueError, match="nope"):
        profiles.resolve_profile("cpu")
    p = profiles.get_profile("paper")
    assert (p.d_model, p.N, p.heads, p.batch_size, p.out_hidden, p.patience) == (512, 3, 4, 256, (1024, 512, 256, 128), 20)


@pytest.mark.parametrize("row,pretrain,finetune", [
    ("composition", None, "all"), ("eform_finetune_all", "eform", "all"), ("eform_finetune_head", "eform", "head"),
    ("density_finetune_all", "density", "all"), ("density_finetune_head", "density", "head")])
def test_model_folders_build_the_right_estimator(row, pretrain, finetune, tmp_path, monkeypatch):
    from sklearn.base import clone

    from harness.context import ModelContext
    from harness.paths import MODELS_DIR
    from harness.registry import read_folder

    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)
    folder = read_folder(MODELS_DIR / f"crabnet_{row}")
    assert folder.meta["options"] == {"profile": "auto"}  # model.yaml, handed through by the harness unread
    est = folder.load_module().make_model(ModelContext(cache_dir=tmp_path, options=folder.meta["options"]))
    assert (est.pretrain, est.finetune) == (pretrain, finetune)
    assert est.profile == ("paper" if torch.cuda.is_available() else "cpu")
    forced = folder.load_module().make_model(ModelContext(cache_dir=tmp_path, options={"profile": "cpu"}))
    assert forced.profile == "cpu"
    assert clone(est).get_params() == est.get_params()


def test_formula_frame_is_what_crabnet_reads():
    df = formula_frame(["NaCl", "SiO2"], [1.0, 2.0])
    assert list(df.columns) == ["formula", "target"] and df["target"].tolist() == [1.0, 2.0]
