"""Kernel dispatch: one name, the fastest implementation that fits the arrays.

The layers call the functions of this module instead of their plain
references; each function has exactly the reference's signature and
result, and picks an implementation from its first array argument:

1. not a NumPy array (a CuPy array): :mod:`nnlite.kernels.gpu` (imported on
   first use; CUDA kernels), called with C-contiguous copies of any
   non-contiguous array arguments; where that module lacks the function, the
   plain reference, which runs on CuPy too;
2. a NumPy float32/float64 array, Numba importable and the reference path not
   forced: :mod:`nnlite.kernels.cpu` (Numba, compiled on first use and cached);
3. otherwise: the plain NumPy reference, the readable definition.

=====================  ==========================================  ======================
function               reference (the definition)                  used by
=====================  ==========================================  ======================
``im2col``             :func:`nnlite.conv.im2col`                  ``Conv2D.forward``
``col2im``             :func:`nnlite.conv.col2im`                  ``Conv2D.backward``
``max_pool_forward``   :func:`nnlite.pooling.max_pool_forward`     ``MaxPool2D.forward``
``max_pool_backward``  :func:`nnlite.pooling.max_pool_backward`    ``MaxPool2D.backward``
``lrn_forward``        :func:`nnlite.lrn.lrn_forward`              ``LocalResponseNorm``
``lrn_backward``       :func:`nnlite.lrn.lrn_backward`             ``LocalResponseNorm``
``adam_update``        :func:`nnlite.optim.adam_update`            ``Adam.step`` (CPU only)
=====================  ==========================================  ======================

Forcing the plain references (lessons that step through them, tests that
compare, or a machine where Numba misbehaves):

* ``NNLITE_KERNELS=reference`` in the environment, read at every call; or
* ``nnlite.kernels.use_reference(True)`` (returns the previous setting;
  ``use_reference(None)`` goes back to following the environment).

:func:`backend_for` says which implementation a given array would get.
"""
from __future__ import annotations

import os

import numpy

_FLOATS = (numpy.dtype("float32"), numpy.dtype("float64"))
_forced: bool | None = None      # None: follow NNLITE_KERNELS
_cpu_module = None               # the imported nnlite.kernels.cpu, False if Numba is missing
_gpu_module = None               # the imported nnlite.kernels.gpu, False if it does not exist


def use_reference(flag: bool | None = True) -> bool | None:
    """Force (``True``) or allow (``False``) the plain NumPy reference path.

    ``None`` restores the default: follow the ``NNLITE_KERNELS`` environment
    variable (``reference`` forces the plain path). Returns the previous
    setting, so ``old = use_reference(True); ...; use_reference(old)``.
    """
    global _forced
    if flag is not None and not isinstance(flag, bool):
        raise ValueError(f"use_reference expects True, False or None, got {flag!r}")
    previous, _forced = _forced, flag
    return previous


def reference_forced() -> bool:
    """True when the plain reference path is forced (by :func:`use_reference` or the environment)."""
    if _forced is not None:
        return _forced
    return os.environ.get("NNLITE_KERNELS", "").strip().lower() == "reference"


def _cpu():
    """``nnlite.kernels.cpu``, or None when Numba cannot be imported."""
    global _cpu_module
    if _cpu_module is None:
        try:
            from . import cpu as module
        except ImportError:  # Numba missing or broken: the references still work
            module = False
        _cpu_module = module
    return _cpu_module or None


def _gpu():
    """``nnlite.kernels.gpu``, or None when that module does not exist."""
    global _gpu_module
    if _gpu_module is None:
        try:
            from . import gpu as module
        except ModuleNotFoundError as e:
            if e.name != __name__ + ".gpu":
                raise            # the module exists but one of its imports is missing
            module = False
        _gpu_module = module
    return _gpu_module or None


def _reference(name: str):
    """The plain reference function called ``name`` (imported late: those modules import us)."""
    if name in ("im2col", "col2im"):
        from .. import conv
        f = getattr(conv, name)
    elif name in ("max_pool_forward", "max_pool_backward"):
        from .. import pooling
        f = getattr(pooling, name)
    elif name in ("lrn_forward", "lrn_backward"):
        from .. import lrn
        f = getattr(lrn, name)
    elif name == "adam_update":
        from ..optim import adam_update as f
    else:
        raise ValueError(f"nnlite.kernels: no kernel called {name!r}")
    return f


def _contiguous_args(f):
    """``f``, called with every non-contiguous array argument replaced by a C-contiguous copy."""
    def contiguous(a):
        flags = getattr(a, "flags", None)
        if flags is None or flags.c_contiguous:
            return a
        from ..backend import get_array_module
        return get_array_module(a).ascontiguousarray(a)

    def call(*args):
        return f(*(contiguous(a) for a in args))
    call.__module__, call.__name__, call.__doc__ = f.__module__, f.__name__, f.__doc__
    return call


def _pick(name: str, a):
    """The implementation of ``name`` for an array like ``a`` (see the module docstring)."""
    reference = _reference(name)          # also rejects an unknown name
    if not isinstance(a, numpy.ndarray):
        gpu = _gpu()
        f = getattr(gpu, name, None) if gpu is not None else None
        if f is None:
            return reference
        # The GPU kernels may index raw memory: they get C-contiguous arrays (a no-op for the
        # layers' own arrays). adam_update works in place, so it gets the arrays as they are.
        return f if name == "adam_update" else _contiguous_args(f)
    if a.dtype in _FLOATS and not reference_forced():
        cpu = _cpu()
        if cpu is not None:
            return getattr(cpu, name)
    return reference


def backend_for(name: str, a) -> str:
    """``"gpu"``, ``"numba"`` or ``"reference"``: what ``name`` would run for an array like ``a``."""
    f = _pick(name, a)
    module = getattr(f, "__module__", "")
    if module.endswith(".kernels.gpu"):
        return "gpu"
    if module.endswith(".kernels.cpu"):
        return "numba"
    return "reference"


# ------------------------------------------------------------ the kernels
def im2col(x_padded, KH: int, KW: int, SH: int, SW: int):
    """Unfold receptive fields into ``(C*KH*KW, N*OH*OW)`` columns; see :func:`nnlite.conv.im2col`."""
    return _pick("im2col", x_padded)(x_padded, KH, KW, SH, SW)


def col2im(dcols, x_padded_shape, KH: int, KW: int, SH: int, SW: int):
    """Add ``(C*KH*KW, N*OH*OW)`` columns back onto ``(N, C, Hp, Wp)``; see :func:`nnlite.conv.col2im`."""
    return _pick("col2im", dcols)(dcols, x_padded_shape, KH, KW, SH, SW)


def max_pool_forward(xpad, KH, KW, SH, SW, OH, OW):
    """Window maxima ``(N, C, OH, OW)``; see :func:`nnlite.pooling.max_pool_forward`."""
    return _pick("max_pool_forward", xpad)(xpad, KH, KW, SH, SW, OH, OW)


def max_pool_backward(dy, xpad, y, KH, KW, SH, SW):
    """Gradient w.r.t. ``xpad``, ties to the first maximum; see :func:`nnlite.pooling.max_pool_backward`."""
    return _pick("max_pool_backward", dy)(dy, xpad, y, KH, KW, SH, SW)


def lrn_forward(x, size: int, alpha: float, beta: float, k: float):
    """``(y, s, p)``; see :func:`nnlite.lrn.lrn_forward`."""
    return _pick("lrn_forward", x)(x, size, alpha, beta, k)


def lrn_backward(dy, x, s, p, size: int, alpha: float, beta: float):
    """``dx``; see :func:`nnlite.lrn.lrn_backward`."""
    return _pick("lrn_backward", dy)(dy, x, s, p, size, alpha, beta)


def adam_update(p, g, m, v, lr: float, beta1: float, beta2: float, eps: float, t: int) -> None:
    """One in-place Adam step on ``p``, ``m``, ``v``; see :func:`nnlite.optim.adam_update`.

    The Numba kernel needs ``p``, ``m``, ``v`` contiguous and of one dtype;
    anything else takes the reference.
    """
    f = _pick("adam_update", p)
    if f.__module__.endswith(".kernels.cpu") and not (
            p.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous
            and p.dtype == m.dtype == v.dtype == g.dtype and g.shape == p.shape):
        f = _reference("adam_update")
    return f(p, g, m, v, lr, beta1, beta2, eps, t)


__all__ = ["use_reference", "reference_forced", "backend_for", "im2col", "col2im",
           "max_pool_forward", "max_pool_backward", "lrn_forward", "lrn_backward", "adam_update"]
