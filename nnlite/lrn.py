"""Local response normalisation across channels, as in AlexNet.

``lrn_forward`` and ``lrn_backward`` (in :mod:`nnlite.functional`, imported
here) are the readable references; the layer calls them through
:mod:`nnlite.kernels` (a Numba kernel on the CPU, CUDA on the GPU), which
``tests/test_kernels.py`` holds equal to them.
"""
from __future__ import annotations

import math
import numbers

from . import kernels
from .functional import channel_window_sum, lrn_backward, lrn_forward  # noqa: F401 (references)
from .layer import Layer


class LocalResponseNorm(Layer):
    """Local response normalisation across channels (AlexNet, section 3.3).

    Forward, for every sample n and position (h, w)::

        s_c = k + (alpha / size) * sum_{c' in win(c)} a_{c'}**2
        b_c = a_c / s_c**beta

        win(c) = c - size//2, ..., c + (size-1)//2, clipped to 0 .. C-1

    so near the first and last channels the window is shorter (missing
    channels count as zeros). For odd ``size`` the window is centred on c;
    for even ``size`` it holds one more channel before c than after it,
    exactly as PyTorch's ``nn.LocalResponseNorm`` (which pads the channel
    axis with size//2 zeros in front and (size-1)//2 behind).

    **Convention for alpha.** Here, as in PyTorch and Caffe, alpha is
    *divided by size*. TensorFlow's ``tf.nn.local_response_normalization(
    depth_radius=r, bias, alpha, beta)`` does not divide (and the AlexNet
    paper's printed formula does not either): it uses a window of 2r+1
    channels and ``s_c = bias + alpha * sum(...)``. To convert::

        LocalResponseNorm(size=2*r + 1, alpha=alpha_tf * (2*r + 1), beta=beta, k=bias)

    Backward. With ``P_c = s_c**-beta`` and ``db_c/da_j = delta_cj P_c -
    (2 alpha beta / size) a_c s_c**(-beta-1) a_j [j in win(c)]``::

        dx_j = dy_j * P_j - (2 * alpha * beta / size) * a_j *
               sum_{c : j in win(c)} dy_c * a_c * s_c**(-beta-1)

    and ``j in win(c)`` exactly when ``c`` lies in
    ``j - (size-1)//2, ..., j + size//2`` (the window flipped), so the sum
    is the same clipped channel sum with the two half-widths swapped.

    Args:
        size: number of neighbouring channels in the window (AlexNet: 5).
        alpha: scale of the sum of squares, divided by ``size`` (AlexNet: 1e-4).
        beta: exponent (AlexNet: 0.75).
        k: additive constant, > 0 so that ``s_c > 0`` (AlexNet: 2).
        name: layer name (default the class name).

    Shapes: x (N, C, H, W) -> y (N, C, H, W).
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                 k: float = 2.0, name=None):
        super().__init__(name)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"LocalResponseNorm: size must be a positive int, got {size!r}")
        for what, v in (("alpha", alpha), ("beta", beta), ("k", k)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"LocalResponseNorm: {what} must be a finite number, got {v!r}")
        if alpha < 0:
            raise ValueError(f"LocalResponseNorm: alpha must be >= 0, got {alpha!r}")
        if k <= 0:
            raise ValueError(f"LocalResponseNorm: k must be > 0 (so the base s_c stays "
                             f"positive), got {k!r}")
        self.size = size
        self.alpha, self.beta, self.k = float(alpha), float(beta), float(k)

    def forward(self, x, training: bool = False):
        self._check_input(x, ndim=4, what="(N, C, H, W)")
        y, s, p = kernels.lrn_forward(x, self.size, self.alpha, self.beta, self.k)
        self._cache = (x, s, p)
        return y

    def backward(self, dy):
        x, s, p = self._saved()
        self._check_grad(dy, x.shape)
        return kernels.lrn_backward(dy, x, s, p, self.size, self.alpha, self.beta)

    def output_shape(self, input_shape: tuple) -> tuple:
        if len(input_shape) != 3:
            raise ValueError(f"{self.name} expected a per-sample shape (C, H, W), "
                             f"got {tuple(input_shape)}")
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {"size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}
