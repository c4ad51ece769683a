"""CrabNet (crabnet 2.0.8) for kspacing-bench: the composition model, pretraining on
Matbench mp_e_form / OQMD density, and the two transfer modes. See estimator.py."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # crabnet imports pyplot at import time

from modellib.crabnet.compat import install as _install_compat  # noqa: E402

_install_compat()

__all__ = ["CrabNetRegressor", "make_model"]


def __getattr__(name):  # lazy: importing the package must stay cheap
    if name in __all__:
        from modellib.crabnet import estimator

        return getattr(estimator, name)
    raise AttributeError(name)
