"""Batch normalisation: BatchNorm1D (dense and sequence features) and BatchNorm2D (images).

Both normalise each channel ``c`` over every axis but the channel axis (the
*reduction axes*): ``(N,)`` for an ``(N, C)`` input, ``(N, L)`` for
``(N, C, L)`` and ``(N, H, W)`` for ``(N, C, H, W)`` (notation of
:mod:`nnlite.layer`). ``m`` below is the number of values per channel that
one batch holds: ``N``, ``N*L`` or ``N*H*W``.
"""
from __future__ import annotations

import numbers

import numpy

from . import kernels
from .backend import DEFAULT_DTYPE
from .layer import Layer
from .parameter import Buffer, Parameter


class _BatchNorm(Layer):
    r"""Batch normalisation over the reduction axes; the two public classes differ only in rank.

    **Forward, training** (``forward(x, training=True)`` on a layer that is
    not frozen): the statistics of *this batch*, per channel::

        mu[c]      = (1/m) sum_{n,h,w} x[n, c, h, w]
        var[c]     = (1/m) sum_{n,h,w} (x[n, c, h, w] - mu[c])**2       (biased: divide by m)
        sigma[c]   = sqrt(var[c] + eps)
        x_hat      = (x - mu) / sigma
        y          = gamma * x_hat + beta

    and the running statistics move towards the batch's (PyTorch's convention,
    ``momentum`` weighs the **new** batch)::

        running_mean = (1 - momentum) * running_mean + momentum * mu
        running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)   (unbiased)
        num_batches_tracked += 1

    With ``momentum=None`` the running statistics are the plain cumulative
    average of every batch so far (``momentum = 1 / num_batches_tracked``), as
    in PyTorch.

    **Forward, evaluation** (``training=False``), and **a frozen layer in
    either mode**: the running statistics take the place of the batch's, and
    nothing is updated::

        y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta

    A layer is *frozen* (:attr:`Layer.frozen`) when it has parameters and none
    of them is trainable: fine-tuning a pretrained body keeps the statistics
    it learnt, even inside ``fit(..., training=True)``. This is Keras'
    behaviour for a BatchNormalization layer with ``trainable=False``; in
    PyTorch one would call ``bn.eval()``. (With ``affine=False`` there are no
    parameters, so the layer is never frozen.)

    **Backward, training**. With ``L`` the loss and ``dy = dL/dy``::

        dbeta[c]  = sum_{n,h,w} dy
        dgamma[c] = sum_{n,h,w} dy * x_hat
        dx        = (gamma / sigma) * (dy - mean(dy) - x_hat * mean(dy * x_hat))

    where ``mean`` averages over the reduction axes (per channel). Derivation:
    write ``g = dL/dx_hat = gamma * dy``. ``x_hat_i = (x_i - mu) / sigma``
    depends on ``x_j`` directly and through ``mu`` and ``sigma``; with
    ``dmu/dx_j = 1/m`` and ``dsigma/dx_j = (x_j - mu) / (m * sigma) = x_hat_j / m``::

        dx_hat_i/dx_j = (delta_ij - 1/m) / sigma - x_hat_i * x_hat_j / (m * sigma)

        dL/dx_j = sum_i g_i * dx_hat_i/dx_j
                = (1/sigma) * (g_j - mean(g) - x_hat_j * mean(g * x_hat))

    and ``g = gamma * dy`` gives the line above: the plain affine gradient
    ``gamma * dy / sigma`` with the two directions that ``mu`` and ``sigma``
    remove from the batch (its mean and its component along ``x_hat``) taken
    out.

    **Backward, evaluation or frozen**: the statistics are constants, so the
    layer is the affine map ``y = (gamma / sigma) * x + const`` with
    ``sigma = sqrt(running_var + eps)``::

        dx = gamma * dy / sigma         dgamma, dbeta: as above (if they train)

    Gradients of parameters that are not trainable are not computed.

    **Other libraries.** PyTorch: the same ``momentum=0.1``, ``eps=1e-5``,
    unbiased running variance, and ``weight``/``bias`` for ``gamma``/``beta``.
    Keras' ``BatchNormalization(momentum=0.99)`` weighs the **old** value:
    ``moving = momentum * moving + (1 - momentum) * batch``, so Keras'
    ``momentum`` is ``1 - `` PyTorch's (Keras 0.99 = nnlite 0.01), its default
    ``epsilon`` is 1e-3, and its ``moving_variance`` is updated with the
    *biased* batch variance (no ``m / (m - 1)``). To mimic a Keras layer, pass
    ``momentum=1 - keras_momentum`` and ``eps=keras_epsilon``; the running
    variance then still differs by the factor ``m / (m - 1)`` per update.

    Args:
        num_features: C, the number of channels.
        momentum: weight of the new batch in the running statistics, in
            ``[0, 1]`` (PyTorch's convention), or None for a cumulative average.
        eps: added to the variance before the square root.
        affine: learn ``gamma`` (scale, starts at 1) and ``beta`` (shift,
            starts at 0); without it ``y = x_hat``.
        name: layer name.

    Parameters (when ``affine``): ``gamma`` ``(C,)`` and ``beta`` ``(C,)``.
    Buffers: ``running_mean`` ``(C,)`` (starts at 0), ``running_var`` ``(C,)``
    (starts at 1), ``num_batches_tracked`` (an int64 array of shape ``()``).
    """

    _ranks: tuple = ()          # accepted input ranks
    _what: str = ""             # the expected input in words, for error messages

    def __init__(self, num_features: int, momentum=0.1, eps: float = 1e-5, affine: bool = True,
                 name: str | None = None):
        super().__init__(name)
        cls = type(self).__name__
        if not (isinstance(num_features, int) and not isinstance(num_features, bool)
                and num_features > 0):
            raise ValueError(f"{cls}: num_features must be a positive int, got {num_features!r}")
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)
                                     or not 0.0 <= float(momentum) <= 1.0):
            raise ValueError(f"{cls}: momentum must be a number in [0, 1] (the weight of the new "
                             f"batch, PyTorch's convention; Keras' 0.99 is 0.01 here) or None, "
                             f"got {momentum!r}")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not float(eps) > 0:
            raise ValueError(f"{cls}: eps must be a positive number, got {eps!r}")
        self.num_features = num_features
        self.momentum = None if momentum is None else float(momentum)
        self.eps = float(eps)
        self.affine = bool(affine)
        C = num_features
        self.gamma = Parameter(numpy.ones(C, DEFAULT_DTYPE), name="gamma") if self.affine else None
        self.beta = Parameter(numpy.zeros(C, DEFAULT_DTYPE), name="beta") if self.affine else None
        self.running_mean = Buffer(numpy.zeros(C, DEFAULT_DTYPE), name="running_mean")
        self.running_var = Buffer(numpy.ones(C, DEFAULT_DTYPE), name="running_var")
        self.num_batches_tracked = Buffer(numpy.zeros((), dtype=numpy.int64), name="num_batches_tracked")

    # ------------------------------------------------------------ helpers
    def _check(self, x):
        C = self.num_features
        if getattr(x, "ndim", None) not in self._ranks:
            raise ValueError(f"{self.name} expected input {self._what.format(C=C)}, "
                             f"got shape {tuple(getattr(x, 'shape', ()))}")
        self._check_input(x, channels=C, what=self._what.format(C=C))

    @staticmethod
    def _axes(x) -> tuple:
        """The reduction axes: every axis but the channel axis 1."""
        return (0,) + tuple(range(2, x.ndim))

    @staticmethod
    def _per_channel(v, ndim: int):
        """``(C,)`` -> ``(1, C, 1, ...)`` to broadcast against an input of rank ``ndim``."""
        return v.reshape((1, -1) + (1,) * (ndim - 2))

    def _update_running(self, mu, var, m: int) -> None:
        self.num_batches_tracked.data += 1               # in place: stays an int64 array
        momentum = (1.0 / int(self.num_batches_tracked.data) if self.momentum is None
                    else self.momentum)
        rm, rv = self.running_mean, self.running_var
        unbiased = var * (m / (m - 1))                                    # (C,)
        rm.data = (1 - momentum) * rm.data + momentum * mu.astype(rm.dtype)
        rv.data = (1 - momentum) * rv.data + momentum * unbiased.astype(rv.dtype)

    # ----------------------------------------------------------- contract
    def forward(self, x, training: bool = False):
        self._check(x)
        N, C = x.shape[:2]
        m = x.size // C                                  # values per channel in this batch
        gamma = None if self.gamma is None else self.gamma.data
        beta = None if self.beta is None else self.beta.data
        use_batch = training and not self.frozen
        if use_batch:
            if m < 2:
                raise ValueError(f"{self.name} needs more than one value per channel in training "
                                 f"(got input {tuple(x.shape)}): the batch variance is undefined")
            # the statistics of this batch and x_hat, y: functional.batch_norm_forward, or
            # its Numba twin (three passes over x instead of about eight)
            y3, x_hat3, mu, var, inv_sigma = kernels.batch_norm_forward(
                x.reshape(N, C, -1), gamma, beta, self.eps)   # (N, C, M), M = m / N
            self._update_running(mu, var, m)
            self._cache = (x_hat3.reshape(x.shape), inv_sigma, True)
            return y3.reshape(x.shape)
        ndim = x.ndim                                    # the running statistics, constants
        mu = self.running_mean.data.astype(x.dtype, copy=False)
        var = self.running_var.data.astype(x.dtype, copy=False)
        inv_sigma = 1 / (var + self.eps) ** 0.5          # (C,), x's dtype
        x_hat = (x - self._per_channel(mu, ndim)) * self._per_channel(inv_sigma, ndim)
        y = x_hat.copy() if gamma is None else (
            self._per_channel(gamma, ndim) * x_hat + self._per_channel(beta, ndim))
        self._cache = (x_hat, inv_sigma, False)          # x_hat stays our cache
        return y

    def backward(self, dy):
        x_hat, inv_sigma, used_batch = self._saved()
        self._check_grad(dy, x_hat.shape)
        gamma = None if self.gamma is None else self.gamma.data
        beta_trains = self.beta is not None and self.beta.trainable
        gamma_trains = self.gamma is not None and self.gamma.trainable
        if used_batch:                                    # the batch statistics: see above
            N, C = dy.shape[:2]
            dx3, dgamma, dbeta = kernels.batch_norm_backward(
                dy.reshape(N, C, -1), x_hat.reshape(N, C, -1), gamma, inv_sigma)  # (N, C, M)
            dx = dx3.reshape(dy.shape)
        else:                                             # constant statistics: the affine map
            axes, ndim = self._axes(dy), dy.ndim
            scale = inv_sigma if gamma is None else gamma * inv_sigma     # gamma / sigma
            dx = self._per_channel(scale, ndim) * dy
            dbeta = dy.sum(axis=axes) if beta_trains else None            # (C,)
            dgamma = (dy * x_hat).sum(axis=axes) if gamma_trains else None   # (C,)
        if beta_trains:
            self.beta.grad = dbeta
        if gamma_trains:
            self.gamma.grad = dgamma
        return dx

    def output_shape(self, input_shape: tuple) -> tuple:
        shape = tuple(input_shape)
        if len(shape) + 1 not in self._ranks or shape[0] != self.num_features:
            raise ValueError(f"{self.name} expected a per-sample shape "
                             f"{self._what.format(C=self.num_features).replace('(N, ', '(')}, "
                             f"got {shape}")
        return shape

    def get_config(self) -> dict:
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps,
                "affine": self.affine, "name": self.name}


class BatchNorm1D(_BatchNorm):
    """Batch normalisation of ``(N, C)`` features or ``(N, C, L)`` sequences, per channel C.

    Shapes: x ``(N, C)`` or ``(N, C, L)`` -> y, the same shape and dtype; the
    statistics are taken over ``N`` (``m = N``) or over ``N`` and ``L``
    (``m = N*L``). Use it after a :class:`~nnlite.Dense` layer.

    The math, its backward and the arguments follow (shared with BatchNorm2D):
    """
    __doc__ += _BatchNorm.__doc__.split("\n", 1)[1]
    _ranks = (2, 3)
    _what = "(N, {C}) or (N, {C}, L)"


class BatchNorm2D(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)`` feature maps, per channel C.

    Shapes: x ``(N, C, H, W)`` -> y, the same shape and dtype; the statistics
    of channel c are taken over ``N``, ``H`` and ``W`` (``m = N*H*W``), so
    every position of a feature map is normalised alike, as a convolution
    treats them. Use it after a :class:`~nnlite.Conv2D` layer.

    The math, its backward and the arguments follow (shared with BatchNorm1D):
    """
    __doc__ += _BatchNorm.__doc__.split("\n", 1)[1]
    _ranks = (4,)
    _what = "(N, {C}, H, W)"
