"""Numerical gradient checking by central differences in float64.

The analytic gradient that ``backward`` returns is compared, element by
element, with the central difference

    dL/dz_i  ~=  (L(z + eps e_i) - L(z - eps e_i)) / (2 eps)

where the scalar is ``L = sum(y * dy)`` for a *random* upstream gradient
``dy`` (an all-ones ``dy`` would hide transposed or permuted gradients).
To keep rounding out of the difference we form ``sum((y+ - y-) * dy)``
rather than ``L+ - L-``.

The error reported for each tensor is the largest relative error

    |a - n| / max(|a|, |n|, tiny)

with ``tiny = 1e-3`` by default: gradients smaller than ``tiny`` are compared
in absolute terms (otherwise an exact zero against 1e-12 of rounding would
read as a relative error of 1). With float64 and ``eps = 1e-6`` a correct
layer scores about 1e-9 or better; a wrong one scores about 1.

Usage from a notebook::

    >>> import nnlite as nn, numpy as np
    >>> result = nn.gradcheck(nn.Tanh(), np.random.default_rng(0).normal(size=(2, 3)))
    >>> result.max_error < 1e-6
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy

from .backend import get_array_module, to_numpy


@dataclass
class TensorError:
    """Worst element of one tensor: relative error, its index, and the values."""
    error: float
    index: tuple
    shape: tuple
    analytic: float
    numeric: float

    def __str__(self) -> str:
        return (f"max rel error {self.error:.3g} at index {self.index} of shape {self.shape} "
                f"(analytic {self.analytic:.6g}, numeric {self.numeric:.6g})")


@dataclass
class GradcheckResult:
    """Maximum relative error for the input (``"input"``) and each parameter."""
    errors: dict = field(default_factory=dict)

    @property
    def max_error(self) -> float:
        return max((e.error for e in self.errors.values()), default=0.0)

    def __getitem__(self, key) -> float:
        return self.errors[key].error

    def keys(self):
        return self.errors.keys()

    def __str__(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.errors.items())


def relative_error(analytic, numeric, tiny: float = 1e-3) -> TensorError:
    """Largest ``|a - n| / max(|a|, |n|, tiny)`` with its index."""
    a = numpy.asarray(to_numpy(analytic), dtype=numpy.float64)
    n = numpy.asarray(to_numpy(numeric), dtype=numpy.float64)
    if a.shape != n.shape:
        raise ValueError(f"analytic gradient has shape {a.shape}, numeric {n.shape}")
    if a.size == 0:
        return TensorError(0.0, (), a.shape, 0.0, 0.0)
    err = numpy.abs(a - n) / numpy.maximum(numpy.maximum(numpy.abs(a), numpy.abs(n)), tiny)
    err = numpy.where(numpy.isnan(err), numpy.inf, err)
    idx = numpy.unravel_index(int(numpy.argmax(err)), err.shape)
    return TensorError(float(err[idx]), tuple(int(i) for i in idx), a.shape,
                       float(a[idx]), float(n[idx]))


def _numeric_grad(f, z, dy, eps):
    """Central-difference gradient of ``sum(f() * dy)`` w.r.t. array ``z`` (in place)."""
    xp = get_array_module(z)
    grad = numpy.zeros(z.shape, dtype=numpy.float64)
    flat = z.reshape(-1)  # a view: writing into it perturbs z
    for i in range(flat.size):
        old = flat[i].copy() if xp is not numpy else flat[i]
        flat[i] = old + eps
        y_plus = f()
        flat[i] = old - eps
        y_minus = f()
        flat[i] = old
        grad.reshape(-1)[i] = float(xp.sum((y_plus - y_minus) * dy)) / (2 * eps)
    return grad


def gradcheck(layer, x, *, dy=None, eps: float = 1e-6, seed: int = 0, training: bool = False,
              tiny: float = 1e-3, check_input: bool = True) -> GradcheckResult:
    """Compare a layer's (or model's) analytic gradients with central differences.

    Args:
        layer: anything with ``forward(x, training)``, ``backward(dy)`` and
            ``parameters()`` (a layer or a :class:`~nnlite.Sequential`). It is
            cast to float64 **in place** (``layer.astype("float64")``).
        x: input array; a float64 copy is used, the caller's array is untouched.
        dy: upstream gradient; default a seeded standard-normal array.
        eps: finite-difference step.
        seed: seed for the default ``dy``.
        training: passed to ``forward`` (layers with randomness, such as
            dropout, must then be given a fixed mask).
        tiny: floor of the denominator of the relative error (see module doc).
        check_input: also check ``dx`` (set False for layers whose input is
            not differentiable, such as integer indices).

    Returns:
        :class:`GradcheckResult` mapping ``"input"`` and each parameter name to
        its max relative error (with index and values in ``.errors``).
    """
    layer.astype("float64")
    xp = get_array_module(x)
    x = xp.array(x, dtype=numpy.float64)  # own copy, perturbed in place below
    named = (layer.named_parameters() if hasattr(layer, "named_parameters")
             else [(p.name, p) for p in layer.parameters()])

    y = layer.forward(x.copy(), training=training)
    if dy is None:
        rng = numpy.random.default_rng(seed)
        dy = rng.standard_normal(y.shape)
    dy = xp.asarray(dy, dtype=numpy.float64)
    if dy.shape != y.shape:
        raise ValueError(f"dy has shape {dy.shape}, the layer output has {y.shape}")
    for _, p in named:
        p.zero_grad()
    dx = layer.backward(dy.copy())
    analytic = {name: p.grad.copy() for name, p in named}

    def f():
        return layer.forward(x, training=training)

    result = GradcheckResult()
    if check_input:
        result.errors["input"] = relative_error(dx, _numeric_grad(f, x, dy, eps), tiny)
    for name, p in named:
        result.errors[name] = relative_error(analytic[name], _numeric_grad(f, p.data, dy, eps), tiny)
    return result


def gradcheck_loss(loss, logits, target, *, eps: float = 1e-6, tiny: float = 1e-3) -> GradcheckResult:
    """Check a loss's ``dlogits`` against central differences of its scalar value.

    ``loss(logits, target)`` must return ``(value, dlogits)``.
    """
    xp = get_array_module(logits)
    z = xp.array(logits, dtype=numpy.float64)
    _, dz = loss(z.copy(), target)
    numeric = numpy.zeros(z.shape)
    flat = z.reshape(-1)
    for i in range(flat.size):
        old = float(flat[i])
        flat[i] = old + eps
        lp = float(loss(z, target)[0])
        flat[i] = old - eps
        lm = float(loss(z, target)[0])
        flat[i] = old
        numeric.reshape(-1)[i] = (lp - lm) / (2 * eps)
    return GradcheckResult({"input": relative_error(dz, numeric, tiny)})


def assert_gradcheck(layer, x, tol: float = 1e-6, **kwargs) -> GradcheckResult:
    """Run :func:`gradcheck` and raise ``AssertionError`` naming the worst element."""
    result = gradcheck(layer, x, **kwargs)
    bad = {k: v for k, v in result.errors.items() if not v.error < tol}
    if bad:
        lines = "\n".join(f"  {k}: {v}" for k, v in bad.items())
        raise AssertionError(f"gradient check failed for {getattr(layer, 'name', layer)} "
                             f"(tolerance {tol:g}):\n{lines}")
    return result
