"""Dropout: randomly zero activations during training (inverted dropout)."""
from __future__ import annotations

import numbers

from .backend import as_generator, device_of, get_array_module, to_device
from .layer import Layer


def dropout_mask(keep, rate: float, dtype):
    """Scaled mask ``keep / (1 - rate)`` in ``dtype`` (0 or 1/(1-rate) per element).

    ``keep`` is cast to ``dtype`` *before* scaling by a Python float: a bool
    array times ``2.0`` would come out float64 in NumPy.
    """
    return keep.astype(dtype) * (1.0 / (1.0 - rate))


class Dropout(Layer):
    """Inverted dropout, element-wise, on an input of any shape.

    Training (``training=True``)::

        m ~ Bernoulli(1 - rate), independently for every element of x
        y  = x * m / (1 - rate)
        dx = dy * m / (1 - rate)

    Evaluation (``training=False``): ``y = x`` and ``dx = dy``, returned as
    copies: an output that aliased the input would change whenever the
    caller later changes ``x`` (a gradient check perturbs ``x`` in place and
    would then read a zero gradient). Scaling the kept activations by
    ``1 / (1 - rate)`` during training keeps the expectation unchanged,
    ``E[y] = x``, so nothing needs rescaling at test time.

    The mask is drawn from an explicit :class:`nnlite.backend.Generator`
    (keep an element when a uniform draw ``u >= rate``): the same seed gives
    the same sequence of masks. The keep mask of the last training forward
    is available as ``layer.mask`` (bool, the shape of x).

    Fixing the mask (gradient checks, debugging): ``layer.fix_mask(keep)``
    makes every training forward use ``keep`` (an array of x's full shape,
    batch axis included; nonzero/True = keep) instead of drawing a new one;
    ``layer.fix_mask(None)`` goes back to random masks. Without this a
    gradient check would compare against a different random mask on every
    finite-difference evaluation.

    Args:
        rate: probability of dropping an element, in [0, 1) (0.5 in the MIAS
            CNN; 0 makes the layer the identity).
        seed: int seed, None (fresh entropy), or a ``Generator`` to share.
        name: layer name (default the class name).

    Shapes: x (any shape) -> y (same shape and dtype).
    """

    def __init__(self, rate: float = 0.5, seed=None, name=None):
        super().__init__(name)
        if (isinstance(rate, bool) or not isinstance(rate, numbers.Real)
                or not 0.0 <= float(rate) < 1.0):
            raise ValueError(f"Dropout: rate must be a number in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
        self.rng = as_generator(seed)
        self.mask = None          # keep mask (bool) of the last training forward
        self._fixed_mask = None

    def fix_mask(self, keep) -> "Dropout":
        """Use ``keep`` (x's full shape; True/nonzero = keep) in every training
        forward until ``fix_mask(None)``; returns the layer."""
        self._fixed_mask = None if keep is None else (get_array_module(keep).asarray(keep) != 0)
        return self

    def forward(self, x, training: bool = False):
        self._check_input(x)
        if not training:
            self._cache = (None, x.shape)
            return x.copy()           # the identity, as a new array (never an alias of x)
        if self._fixed_mask is not None:
            keep = to_device(self._fixed_mask, device_of(x))
            if keep.shape != x.shape:
                raise ValueError(f"{self.name}: the fixed mask has shape {tuple(keep.shape)}, "
                                 f"the input {tuple(x.shape)}")
        else:
            keep = self.rng.random(x.shape, dtype=x.dtype, like=x) >= self.rate  # P = 1 - rate
        self.mask = keep
        m = dropout_mask(keep, self.rate, x.dtype)              # 0 or 1/(1-rate), x's dtype
        self._cache = (m, x.shape)
        return x * m

    def backward(self, dy):
        m, shape = self._saved()
        self._check_grad(dy, shape)
        if m is None:             # evaluation: identity (a copy, as in forward)
            return dy.copy()
        return dy * m

    def get_config(self) -> dict:
        return {"rate": self.rate, "seed": self.seed}
