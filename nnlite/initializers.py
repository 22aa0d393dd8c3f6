"""Weight initialisers: He (Kaiming) and Glorot (Xavier), normal and uniform.

Every initialiser has the same signature::

    W = he_normal(shape, fan_in, fan_out, rng, dtype)   # rng: nnlite.backend.Generator

``fan_in`` is the number of inputs that feed one output unit and ``fan_out``
the number of outputs one input unit feeds:

=====================  ==========================  ============================
layer                  fan_in                      fan_out
=====================  ==========================  ============================
Dense (in -> out)      in_features                 out_features
Conv2D (groups G)      (C / G) * KH * KW           (F / G) * KH * KW
ConvTranspose2D        C * KH * KW / (SH * SW)     F * KH * KW
=====================  ==========================  ============================

The variances, chosen so that the scale of the signal is kept from layer to
layer:

* **He** (He et al. 2015), for ReLU networks, where half of the units are
  zeroed: ``Var(W) = 2 / fan_in``.
  ``he_normal``: ``N(0, 2 / fan_in)``;
  ``he_uniform``: ``U(-a, a)`` with ``a = sqrt(6 / fan_in)`` (a uniform on
  ``[-a, a]`` has variance ``a**2 / 3``).
* **Glorot** (Glorot & Bengio 2010), for tanh/sigmoid/linear units, the
  compromise between the forward (fan_in) and backward (fan_out) passes:
  ``Var(W) = 2 / (fan_in + fan_out)``.
  ``glorot_normal``: ``N(0, 2 / (fan_in + fan_out))``;
  ``glorot_uniform``: ``U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))``.
* ``zeros``: all zeros (biases).

Defaults in nnlite: ``Conv2D``, ``ConvTranspose2D`` and ``Dense`` use
``"he_normal"`` for ``W`` (the networks in this project are ReLU nets) and
zeros for ``b``; pass ``weight_init="glorot_uniform"`` for a tanh/sigmoid
layer or a final linear layer, as Keras does by default.

Randomness only comes from the explicit generator passed in, so the same
seed gives the same weights.
"""
from __future__ import annotations

import math

import numpy

from .backend import DEFAULT_DTYPE, Generator, resolve_dtype


def _check_fans(name: str, fan_in, fan_out) -> None:
    if not fan_in > 0 or not fan_out > 0:
        raise ValueError(f"{name}: fan_in and fan_out must be positive, got {fan_in}, {fan_out}")


def he_normal(shape, fan_in, fan_out, rng: Generator, dtype=DEFAULT_DTYPE):
    """Normal with mean 0 and variance ``2 / fan_in`` (He, for ReLU)."""
    _check_fans("he_normal", fan_in, fan_out)
    return rng.normal(shape, std=math.sqrt(2.0 / fan_in), dtype=resolve_dtype(dtype))


def he_uniform(shape, fan_in, fan_out, rng: Generator, dtype=DEFAULT_DTYPE):
    """Uniform on ``[-a, a]``, ``a = sqrt(6 / fan_in)``: variance ``2 / fan_in``."""
    _check_fans("he_uniform", fan_in, fan_out)
    a = math.sqrt(6.0 / fan_in)
    return rng.uniform(shape, low=-a, high=a, dtype=resolve_dtype(dtype))


def glorot_normal(shape, fan_in, fan_out, rng: Generator, dtype=DEFAULT_DTYPE):
    """Normal with mean 0 and variance ``2 / (fan_in + fan_out)`` (Glorot/Xavier)."""
    _check_fans("glorot_normal", fan_in, fan_out)
    return rng.normal(shape, std=math.sqrt(2.0 / (fan_in + fan_out)), dtype=resolve_dtype(dtype))


def glorot_uniform(shape, fan_in, fan_out, rng: Generator, dtype=DEFAULT_DTYPE):
    """Uniform on ``[-a, a]``, ``a = sqrt(6 / (fan_in + fan_out))``: variance ``2 / (fan_in + fan_out)``."""
    _check_fans("glorot_uniform", fan_in, fan_out)
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(shape, low=-a, high=a, dtype=resolve_dtype(dtype))


def zeros(shape, fan_in=None, fan_out=None, rng: Generator | None = None, dtype=DEFAULT_DTYPE):
    """All zeros (the fans and the generator are accepted for a uniform signature, and unused)."""
    return numpy.zeros(shape, dtype=resolve_dtype(dtype))


INITIALIZERS = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "zeros": zeros,
}


def get_initializer(name: str):
    """The initialiser called ``name`` (one of :data:`INITIALIZERS`); ValueError otherwise."""
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; choose one of {sorted(INITIALIZERS)}")
    return INITIALIZERS[name]
