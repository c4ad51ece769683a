"""crabnet_eform_finetune_head: see harness/crabnet (shared by the five CrabNet rows)."""

from harness.crabnet.estimator import make_model as _make


def make_model(ctx):
    return _make(ctx, pretrain="eform", finetune="head")
