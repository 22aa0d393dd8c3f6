"""Tests for nnlite.lrn: local response normalisation across channels (AlexNet).

Convention under test (stated in the LocalResponseNorm docstring): alpha is
divided by size, as in PyTorch and Caffe, and the window of channel c is
``c - size//2 .. c + (size-1)//2`` clipped to the existing channels.
"""
import json

import numpy as np
import pytest

import nnlite as nn
from nnlite.gradcheck import assert_gradcheck


def _x(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def lrn_loops(x, size, alpha, beta, k):
    """Direct per-channel loop: ``b_c = a_c / (k + alpha/size * sum_{c' in win(c)} a_c'^2)^beta``."""
    N, C, H, W = x.shape
    y = np.empty_like(x, dtype=np.float64)
    for c in range(C):
        lo, hi = max(0, c - size // 2), min(C - 1, c + (size - 1) // 2)
        s = k + (alpha / size) * (x[:, lo:hi + 1].astype(np.float64) ** 2).sum(axis=1)
        y[:, c] = x[:, c] / s ** beta
    return y


def lrn_tensorflow_loops(x, depth_radius, bias, alpha, beta):
    """TensorFlow's form: window of 2r+1 channels, alpha *not* divided by the window size."""
    C = x.shape[1]
    y = np.empty_like(x)
    for c in range(C):
        lo, hi = max(0, c - depth_radius), min(C - 1, c + depth_radius)
        y[:, c] = x[:, c] / (bias + alpha * (x[:, lo:hi + 1] ** 2).sum(axis=1)) ** beta
    return y


@pytest.mark.parametrize("C, size", [(3, 5), (5, 5), (8, 5), (6, 4), (4, 1), (7, 3), (2, 2)])
def test_forward_matches_loops(C, size):
    alpha, beta, k = 0.8, 0.75, 1.5
    layer = nn.LocalResponseNorm(size, alpha, beta, k)
    x = _x((2, C, 3, 4), seed=C + size)
    np.testing.assert_allclose(layer.forward(x), lrn_loops(x, size, alpha, beta, k), rtol=1e-13)


def test_alexnet_defaults_and_alpha_divided_by_size():
    layer = nn.LocalResponseNorm()
    assert (layer.size, layer.alpha, layer.beta, layer.k) == (5, 1e-4, 0.75, 2.0)
    # one sample, 3 channels, one pixel: by hand, window of channel 0 is channels 0..2
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    layer = nn.LocalResponseNorm(size=5, alpha=5.0, beta=1.0, k=1.0)
    s = 1.0 + (5.0 / 5) * (1 + 4 + 9)      # alpha / size = 1; every window holds all 3 channels
    np.testing.assert_allclose(layer.forward(x).ravel(), [1 / s, 2 / s, 3 / s], rtol=1e-15)
    # size 3: channel 0 sees 0..1, channel 1 sees 0..2, channel 2 sees 1..2
    layer = nn.LocalResponseNorm(size=3, alpha=3.0, beta=1.0, k=1.0)
    expected = [1 / (1 + 1 + 4), 2 / (1 + 1 + 4 + 9), 3 / (1 + 4 + 9)]
    np.testing.assert_allclose(layer.forward(x).ravel(), expected, rtol=1e-15)


def test_even_size_window_leans_backward():
    # size 2: win(c) = c-1 .. c (size//2 = 1 before, (size-1)//2 = 0 after), as PyTorch
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    y = nn.LocalResponseNorm(size=2, alpha=2.0, beta=1.0, k=1.0).forward(x).ravel()
    np.testing.assert_allclose(y, [1 / (1 + 1), 2 / (1 + 1 + 4), 3 / (1 + 4 + 9)], rtol=1e-15)


def test_conversion_from_tensorflow_convention():
    r, bias, alpha_tf, beta = 2, 2.0, 1e-2, 0.75
    x = _x((2, 7, 3, 3), seed=3)
    ours = nn.LocalResponseNorm(size=2 * r + 1, alpha=alpha_tf * (2 * r + 1), beta=beta, k=bias)
    np.testing.assert_allclose(ours.forward(x), lrn_tensorflow_loops(x, r, bias, alpha_tf, beta),
                               rtol=1e-13)


GRAD_CASES = {
    # alpha large enough that the cross-channel terms of the gradient matter
    "C3_smaller_than_size5": ((2, 3, 2, 3), dict(size=5, alpha=2.0, beta=0.75, k=1.0)),
    "C5_equal_to_size5": ((2, 5, 2, 2), dict(size=5, alpha=2.0, beta=0.75, k=1.0)),
    "C8_size5": ((1, 8, 2, 3), dict(size=5, alpha=1.5, beta=0.75, k=2.0)),
    "C6_even_size4": ((2, 6, 2, 2), dict(size=4, alpha=1.0, beta=0.5, k=1.0)),
    "size1": ((2, 3, 2, 2), dict(size=1, alpha=1.0, beta=1.3, k=0.5)),
    "alexnet_defaults": ((1, 7, 3, 3), dict()),
}


@pytest.mark.parametrize("case", sorted(GRAD_CASES))
def test_gradcheck_LocalResponseNorm(case):
    shape, kwargs = GRAD_CASES[case]
    assert_gradcheck(nn.LocalResponseNorm(**kwargs), _x(shape, seed=4) * 1.5, tol=1e-6)


def test_first_and_last_channel_gradients_by_hand():
    """Channel 0's gradient gets contributions only from channels whose window holds it."""
    size, alpha, beta, k = 3, 3.0, 1.0, 1.0
    layer = nn.LocalResponseNorm(size, alpha, beta, k)
    x = np.array([1.0, 2.0, 3.0, 0.5]).reshape(1, 4, 1, 1)
    layer.forward(x)
    eps = 1e-6
    for c in (0, 3):
        dy = np.zeros_like(x)
        dy[0, c] = 1.0
        dx = layer.backward(dy)
        numeric = np.zeros(4)
        for j in range(4):
            xp, xm = x.copy(), x.copy()
            xp[0, j] += eps
            xm[0, j] -= eps
            numeric[j] = (lrn_loops(xp, size, alpha, beta, k)[0, c] - lrn_loops(xm, size, alpha, beta, k)[0, c]).item() / (2 * eps)
        np.testing.assert_allclose(dx.ravel(), numeric, rtol=1e-7, atol=1e-10)
        far = [j for j in range(4) if abs(j - c) > 1]
        np.testing.assert_array_equal(dx.ravel()[far], 0.0)   # outside the window: no gradient


def test_float32_matches_float64_and_keeps_dtype():
    layer = nn.LocalResponseNorm()
    x = (_x((2, 6, 4, 4), seed=5) * 10).astype(np.float32)
    y = layer.forward(x)
    dx = layer.backward(_x(y.shape, seed=6, dtype=np.float32))
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(y, lrn_loops(x.astype(np.float64), 5, 1e-4, 0.75, 2.0), rtol=1e-5)


def test_errors_and_no_mutation():
    layer = nn.LocalResponseNorm()
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"LocalResponseNorm expected input \(N, C, H, W\), got shape \(3, 2, 2\)"):
        layer.forward(np.ones((3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="float32 or float64 input, got int64"):
        layer.forward(np.ones((1, 3, 2, 2), np.int64))
    with pytest.raises(ValueError, match=r"per-sample shape \(C, H, W\)"):
        layer.output_shape((3, 4))
    for kwargs, message in [(dict(size=0), "size must be a positive int"),
                            (dict(k=0.0), "k must be > 0"),
                            (dict(alpha=-1.0), "alpha must be >= 0"),
                            (dict(beta=float("inf")), "beta must be a finite number")]:
        with pytest.raises(ValueError, match=message):
            nn.LocalResponseNorm(**kwargs)
    x = _x((1, 4, 2, 2), dtype=np.float32)
    x0 = x.copy()
    y = layer.forward(x)
    dy = _x(y.shape, seed=1, dtype=np.float32)
    dy0 = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)
    with pytest.raises(ValueError, match="expected dy of shape"):
        layer.backward(np.ones((1, 4, 2, 3), np.float32))


def test_config_roundtrip():
    layer = nn.LocalResponseNorm(size=3, alpha=1e-3, beta=0.5, k=1.0)
    clone = nn.LocalResponseNorm(**json.loads(json.dumps(layer.get_config())))
    assert clone.get_config() == layer.get_config()
    x = _x((1, 5, 2, 2))
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))
