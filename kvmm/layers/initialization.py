"""Skipping random initialisation when pretrained weights are about to be loaded.

Drawing ~10^8 random numbers costs seconds (most of a model's build time) and every value
is overwritten by the checkpoint anyway. Inside :func:`no_init`, kvmm layers create their
variables with zeros instead; the initializers recorded in configs do not change.
"""

from __future__ import annotations

import contextlib
import contextvars

_SKIP_INIT = contextvars.ContextVar("kvmm_skip_init", default=False)


@contextlib.contextmanager
def no_init():
    """Build kvmm layers with zero-filled variables (weights will be loaded next)."""
    token = _SKIP_INIT.set(True)
    try:
        yield
    finally:
        _SKIP_INIT.reset(token)


def initializer(default):
    """``default``, or ``"zeros"`` inside :func:`no_init`. Call it when the variable is
    created (in ``build``), or when constructing a Keras sub-layer."""
    return "zeros" if _SKIP_INIT.get() else default
