"""Kernel dispatch: one name, the fastest implementation that fits the arrays.

Each function here has exactly the signature and the result of its plain
reference in :mod:`nnlite.functional` and picks an implementation from its
first array argument:

1. not a NumPy array (a CuPy array): :mod:`nnlite.kernels.gpu` (imported on
   first use; CUDA kernels), called with C-contiguous copies of any
   non-contiguous array arguments; where that module lacks the function
   (im2col), the plain reference, which runs on CuPy too (and the CUDA
   functions run it themselves for the cases they lack: a dilated col2im,
   AMSGrad);
2. a NumPy float32/float64 array, Numba importable and the reference path not
   forced: :mod:`nnlite.kernels.cpu` (Numba, compiled on first use and cached);
3. otherwise: the plain NumPy reference, the readable definition.

The references are imported once, with this module, from
:mod:`nnlite.functional`, which imports no layer: nothing here imports a
layer module, and no layer module is imported back.

Forcing the plain references (lessons that step through them, tests that
compare, or a machine where Numba misbehaves):

* ``NNLITE_KERNELS=reference`` in the environment, read at every call; or
* :func:`use_reference` (``True``; returns the previous setting;
  ``use_reference(None)`` goes back to following the environment).

:func:`backend_for` says which implementation a given array would get.
"""
from __future__ import annotations

import os

import numpy

from .. import functional
from ..backend import get_array_module

_FLOATS = (numpy.dtype("float32"), numpy.dtype("float64"))
_forced: bool | None = None      # None: follow NNLITE_KERNELS
_cpu_module = None               # the imported nnlite.kernels.cpu, False if Numba is missing
_gpu_module = None               # the imported nnlite.kernels.gpu, False if it does not exist

#: name -> the plain reference (the definition) in nnlite.functional
REFERENCES = {name: getattr(functional, name) for name in (
    "im2col", "col2im", "max_pool_forward", "max_pool_backward", "lrn_forward",
    "lrn_backward", "batch_norm_forward", "batch_norm_backward", "adam_update")}


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
    """``nnlite.kernels.cpu``, or None when Numba cannot be imported (imported once)."""
    global _cpu_module
    if _cpu_module is None:
        try:
            from . import cpu as module
        except ImportError:  # Numba missing or broken: the references still work
            module = False
        _cpu_module = module
    return _cpu_module or None


def _gpu():
    """``nnlite.kernels.gpu``, or None when that module does not exist (imported once)."""
    global _gpu_module
    if _gpu_module is None:
        try:
            from . import gpu as module
        except ModuleNotFoundError as e:
            if e.name != __package__ + ".gpu":
                raise            # the module exists but one of its imports is missing
            module = False
        _gpu_module = module
    return _gpu_module or None


def _contiguous_args(f):
    """``f``, called with every non-contiguous array argument replaced by a C-contiguous copy."""
    def contiguous(a):
        flags = getattr(a, "flags", None)
        if flags is None or flags.c_contiguous:
            return a
        return get_array_module(a).ascontiguousarray(a)

    def call(*args):
        return f(*(contiguous(a) for a in args))
    call.__module__, call.__name__, call.__doc__ = f.__module__, f.__name__, f.__doc__
    return call


def _pick(name: str, a):
    """The implementation of ``name`` for an array like ``a`` (see the module docstring)."""
    reference = REFERENCES.get(name)
    if reference is None:
        raise ValueError(f"nnlite.kernels: no kernel called {name!r}")
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
    module = getattr(_pick(name, a), "__module__", "")
    if module.endswith(".kernels.gpu"):
        return "gpu"
    if module.endswith(".kernels.cpu"):
        return "numba"
    return "reference"


# ------------------------------------------------------------ the kernels
def im2col(x_padded, KH: int, KW: int, SH: int, SW: int, DH: int = 1, DW: int = 1):
    """Unfold receptive fields into ``(C*KH*KW, N*OH*OW)`` columns; see :func:`nnlite.functional.im2col`."""
    return _pick("im2col", x_padded)(x_padded, KH, KW, SH, SW, DH, DW)


def col2im(dcols, x_padded_shape, KH: int, KW: int, SH: int, SW: int, DH: int = 1, DW: int = 1):
    """Add ``(C*KH*KW, N*OH*OW)`` columns back onto ``(N, C, Hp, Wp)``; see :func:`nnlite.functional.col2im`.

    (The CUDA kernel runs the reference for a dilated case, ``DH`` or ``DW`` > 1.)
    """
    return _pick("col2im", dcols)(dcols, x_padded_shape, KH, KW, SH, SW, DH, DW)


def max_pool_forward(xpad, KH, KW, SH, SW, OH, OW):
    """Window maxima ``(N, C, OH, OW)``; see :func:`nnlite.functional.max_pool_forward`."""
    return _pick("max_pool_forward", xpad)(xpad, KH, KW, SH, SW, OH, OW)


def max_pool_backward(dy, xpad, y, KH, KW, SH, SW):
    """Gradient w.r.t. ``xpad``, ties to the first maximum; see :func:`nnlite.functional.max_pool_backward`."""
    return _pick("max_pool_backward", dy)(dy, xpad, y, KH, KW, SH, SW)


def max_pool_argmax_available(xpad, KH, KW, SH, SW) -> bool:
    """True when a pool can keep its windows' argmax from forward: 2x2/2 or 3x3/2, the Numba path.

    Then :func:`max_pool_forward_argmax` and :func:`max_pool_backward_argmax` compute
    exactly what :func:`max_pool_forward` and :func:`max_pool_backward` do (tested), the
    backward from ``dy`` and the argmax alone (forward + backward of the MIAS CNN's pool1
    at batch 64: 15.7 -> 4.9 ms; reduced AlexNet's pool1 at batch 128: 19 -> 11 ms).
    """
    return (KH == KW and SH == SW == 2 and KH in (2, 3)
            and backend_for("max_pool_forward", xpad) == "numba")


def max_pool_forward_argmax(xpad, KH, KW, SH, SW, OH, OW):
    """``(y, arg)``: the window maxima and argmax (Numba only; see :func:`max_pool_argmax_available`)."""
    return _cpu().max_pool_forward_argmax(xpad, KH, KW, SH, SW, OH, OW)


def max_pool_backward_argmax(dy, arg, xpad_shape, KH, KW, SH, SW):
    """Gradient w.r.t. ``xpad`` from :func:`max_pool_forward_argmax`'s ``arg``; as :func:`max_pool_backward`."""
    return _cpu().max_pool_backward_argmax(dy, arg, xpad_shape, KH, KW, SH, SW)


def lrn_forward(x, size: int, alpha: float, beta: float, k: float):
    """``(y, s, p)``; see :func:`nnlite.functional.lrn_forward`."""
    return _pick("lrn_forward", x)(x, size, alpha, beta, k)


def lrn_backward(dy, x, s, p, size: int, alpha: float, beta: float):
    """``dx``; see :func:`nnlite.functional.lrn_backward`."""
    return _pick("lrn_backward", dy)(dy, x, s, p, size, alpha, beta)


def batch_norm_forward(x3, gamma, beta, eps: float):
    """``(y3, x_hat3, mu, var, inv_sigma)`` of ``x3`` (N, C, M).

    See :func:`nnlite.functional.batch_norm_forward`.

    (No CUDA kernel: CuPy arrays take the reference.)
    """
    return _pick("batch_norm_forward", x3)(x3, gamma, beta, eps)


def batch_norm_backward(dy3, x_hat3, gamma, inv_sigma):
    """``(dx3, dgamma, dbeta)``; see :func:`nnlite.functional.batch_norm_backward`."""
    return _pick("batch_norm_backward", dy3)(dy3, x_hat3, gamma, inv_sigma)


def adam_update(p, g, m, v, lr: float, beta1: float, beta2: float, eps: float, t: int,
                v_max=None) -> None:
    """One in-place Adam step on ``p``, ``m``, ``v`` (and ``v_max``); see :func:`nnlite.functional.adam_update`.

    NumPy arrays get the fused Numba kernel, CuPy arrays the fused CUDA kernel
    (:mod:`nnlite.kernels.gpu`; AMSGrad there takes the reference). The Numba kernel
    needs ``p``, ``m``, ``v`` (and ``v_max``) contiguous and of one dtype; anything
    else takes the reference.
    """
    f = _pick("adam_update", p)
    if f.__module__.endswith(".kernels.cpu"):
        state = (p, m, v) if v_max is None else (p, m, v, v_max)
        if not (all(a.flags.c_contiguous and a.dtype == p.dtype for a in state)
                and g.dtype == p.dtype and g.shape == p.shape):
            f = REFERENCES["adam_update"]
    return f(p, g, m, v, lr, beta1, beta2, eps, t, v_max)


__all__ = ["REFERENCES", "use_reference", "reference_forced", "backend_for", "im2col",
           "col2im", "max_pool_forward", "max_pool_backward", "max_pool_argmax_available",
           "max_pool_forward_argmax", "max_pool_backward_argmax", "lrn_forward", "lrn_backward",
           "batch_norm_forward", "batch_norm_backward", "adam_update"]
