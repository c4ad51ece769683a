"""Compatibility fixes for crabnet 2.0.8 on current torch, applied from our code
(site-packages is never edited).

The SWA bug
-----------
``crabnet.utils.optim.SWA`` and ``crabnet.utils.utils.Lookahead`` subclass
``torch.optim.Optimizer`` but never call ``Optimizer.__init__``. So their instances
lack the per-instance hook registries that ``__init__`` creates
(``_optimizer_step_pre_hooks``, ``_optimizer_step_post_hooks``, the state-dict hook
dicts) and ``_zero_grad_profile_name``.

What happens in one process with torch 2.13:

1. First ``CrabNet.fit``: ``CyclicLR(self.optimizer)`` wraps the *instance's* bound
   ``step`` (``patch_track_step_called``), capturing the plain ``SWA.step`` function.
   Training then calls ``optimizer.zero_grad()``; ``Optimizer.zero_grad`` sees no
   ``_zero_grad_profile_name`` and calls ``_patch_step_function()``, which replaces the
   *class* attribute ``SWA.step`` by ``Optimizer.profile_hook_step(SWA.step)`` (marked
   ``hooked``). The first fit still works: its scheduler wrapper holds the old function.
2. Second ``CrabNet.fit``: a new SWA instance; ``CyclicLR`` now captures the hooked
   class-level ``step``, whose wrapper iterates ``self._optimizer_step_pre_hooks``, which
   this instance never got -> ``AttributeError: 'SWA' object has no attribute
   '_optimizer_step_pre_hooks'`` (raised from the lr_scheduler's step wrapper).

The fix: ``CompatSWA`` / ``CompatLookahead`` run the original constructors and then
create the base-class state ``Optimizer.__init__`` would have created (empty hook
registries, the profiling patch). ``install()`` makes crabnet's own ``CrabNet.fit`` /
``load_network`` use them (it rebinds the names in the ``crabnet.crabnet_`` module
namespace), so plain ``CrabNet`` works for any number of fits; our training loop
(:mod:`modellib.crabnet.train`) constructs them directly.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from crabnet.utils.optim import SWA
from crabnet.utils.utils import Lookahead

_HOOK_DICTS = (
    "_optimizer_step_pre_hooks",
    "_optimizer_step_post_hooks",
    "_optimizer_state_dict_pre_hooks",
    "_optimizer_state_dict_post_hooks",
    "_optimizer_load_state_dict_pre_hooks",
    "_optimizer_load_state_dict_post_hooks",
)


def ensure_optimizer_base_state(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Give an Optimizer subclass instance that skipped ``Optimizer.__init__`` the state
    that ``__init__`` creates. Idempotent; leaves existing hooks alone."""
    for name in _HOOK_DICTS:
        if name not in opt.__dict__:
            setattr(opt, name, OrderedDict())
    opt._patch_step_function()  # sets _zero_grad_profile_name; hooks the class step once
    opt.defaults.setdefault("differentiable", False)
    return opt


class CompatSWA(SWA):
    """crabnet's SWA with the torch ``Optimizer`` base state initialised."""

    def __init__(self, optimizer, swa_start=None, swa_freq=None, swa_lr=None):
        super().__init__(optimizer, swa_start=swa_start, swa_freq=swa_freq, swa_lr=swa_lr)
        ensure_optimizer_base_state(self)


class CompatLookahead(Lookahead):
    """crabnet's Lookahead with the torch ``Optimizer`` base state initialised."""

    def __init__(self, base_optimizer, alpha=0.5, k=6):
        super().__init__(base_optimizer, alpha=alpha, k=k)
        ensure_optimizer_base_state(self)


_installed = False


def install() -> None:
    """Make ``crabnet.crabnet_.CrabNet`` build the compatible wrappers. Idempotent."""
    global _installed
    if _installed:
        return
    import crabnet.crabnet_ as cn

    cn.SWA = CompatSWA
    cn.Lookahead = CompatLookahead
    _installed = True
