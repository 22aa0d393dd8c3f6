"""The gradient checker itself must catch wrong gradients."""
import numpy as np
import pytest

from nnlite.gradcheck import assert_gradcheck, gradcheck, gradcheck_loss, relative_error
from nnlite.layer import Layer
from nnlite.parameter import Parameter


class Scale(Layer):
    """y = x * w (w per feature); correct backward."""

    def __init__(self, n, transpose_bug=False, name=None):
        super().__init__(name)
        self.w = Parameter(np.linspace(0.5, 1.5, n).astype(np.float32), name="w")
        self.transpose_bug = transpose_bug

    def forward(self, x, training=False):
        self._cache = x
        return x * self.w.data

    def backward(self, dy):
        x = self._saved()
        self.w.grad = (dy * x).sum(axis=0)
        dx = dy * self.w.data
        return dx[::-1] if self.transpose_bug else dx


def test_correct_layer_passes(rng):
    result = assert_gradcheck(Scale(4), rng.normal(size=(3, 4)))
    assert set(result.keys()) == {"input", "w"}
    assert result.max_error < 1e-8


def test_permuted_gradient_is_caught(rng):
    with pytest.raises(AssertionError, match="input: max rel error"):
        assert_gradcheck(Scale(4, transpose_bug=True), rng.normal(size=(3, 4)))


def test_gradcheck_casts_to_float64_and_leaves_input(rng):
    layer = Scale(3)
    x = rng.normal(size=(2, 3)).astype(np.float32)
    x0 = x.copy()
    gradcheck(layer, x)
    assert layer.w.data.dtype == np.float64
    assert np.array_equal(x, x0) and x.dtype == np.float32


def test_relative_error_floor_and_index():
    e = relative_error(np.array([1.0, 0.0, 2.0]), np.array([1.0, 1e-12, 2.2]))
    assert e.index == (2,) and abs(e.error - 0.2 / 2.2) < 1e-12
    assert "index (2,)" in str(e)


def test_gradcheck_loss_detects_wrong_gradient(rng):
    def good(z, t):
        return float(((z - t) ** 2).sum()), 2 * (z - t)

    def bad(z, t):
        return float(((z - t) ** 2).sum()), (z - t)

    z, t = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    assert gradcheck_loss(good, z, t).max_error < 1e-7
    assert gradcheck_loss(bad, z, t).max_error > 0.1


def test_dy_shape_mismatch_is_an_error(rng):
    with pytest.raises(ValueError, match="dy has shape"):
        gradcheck(Scale(2), rng.normal(size=(3, 2)), dy=np.ones((2, 2)))
