"""crabnet_density_finetune_all: see modellib/crabnet (shared by the five CrabNet rows)."""

from modellib.crabnet.estimator import make_model as _make


def make_model(ctx):
    return _make(ctx, pretrain="density", finetune="all")
