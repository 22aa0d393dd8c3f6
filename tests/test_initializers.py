import numpy as np
import pytest

from nnlite.backend import Generator
from nnlite.conv import Conv2D
from nnlite.dense import Dense
from nnlite.initializers import (INITIALIZERS, get_initializer, glorot_normal, glorot_uniform,
                                 he_normal, he_uniform, zeros)

SHAPE = (400, 500)          # 200k draws: the sample variance is within ~1% of the truth
FAN_IN, FAN_OUT = 300, 100


@pytest.mark.parametrize("init, variance", [
    (he_normal, 2.0 / FAN_IN),
    (he_uniform, 2.0 / FAN_IN),
    (glorot_normal, 2.0 / (FAN_IN + FAN_OUT)),
    (glorot_uniform, 2.0 / (FAN_IN + FAN_OUT)),
])
def test_empirical_variance_and_mean(init, variance):
    w = init(SHAPE, FAN_IN, FAN_OUT, Generator(0), "float32")
    assert w.shape == SHAPE and w.dtype == np.float32
    assert abs(float(w.var(dtype=np.float64)) / variance - 1) < 0.03
    assert abs(float(w.mean(dtype=np.float64))) < 4 * np.sqrt(variance / w.size)


@pytest.mark.parametrize("init, fan_sum", [(he_uniform, FAN_IN), (glorot_uniform, FAN_IN + FAN_OUT)])
def test_uniform_bounds(init, fan_sum):
    w = init(SHAPE, FAN_IN, FAN_OUT, Generator(1), "float64")
    limit = np.sqrt(6.0 / fan_sum)
    assert w.dtype == np.float64
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit  # the whole interval is used


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_same_seed_same_weights(name):
    init = get_initializer(name)
    a = init((3, 4, 5), 20, 12, Generator(7), "float32")
    b = init((3, 4, 5), 20, 12, Generator(7), "float32")
    np.testing.assert_array_equal(a, b)
    if name != "zeros":
        c = init((3, 4, 5), 20, 12, Generator(8), "float32")
        assert not np.array_equal(a, c)


def test_zeros():
    z = zeros((2, 3), 1, 1, Generator(0), "float32")
    assert z.dtype == np.float32 and not z.any()


def test_get_initializer_names_and_errors():
    assert get_initializer("he_normal") is he_normal
    assert get_initializer("glorot_uniform") is glorot_uniform
    with pytest.raises(ValueError, match="unknown initializer 'xavier'"):
        get_initializer("xavier")
    with pytest.raises(ValueError):
        get_initializer(he_normal)
    with pytest.raises(ValueError, match="fan_in"):
        he_normal((2, 2), 0, 3, Generator(0))


def test_layers_use_their_fans():
    # Conv2D: fan_in = C/G*KH*KW = 8/2*3*3 = 36, He normal: Var = 2/36.
    conv = Conv2D(8, 512, 3, groups=2, seed=0)
    assert abs(conv.W.data.var() / (2 / 36) - 1) < 0.05
    # Dense with Glorot uniform: Var = 2/(fan_in + fan_out).
    dense = Dense(300, 200, weight_init="glorot_uniform", seed=0)
    assert abs(dense.W.data.var() / (2 / 500) - 1) < 0.05
    assert conv.W.data.dtype == dense.W.data.dtype == np.float32
    assert not conv.b.data.any() and not dense.b.data.any()
    with pytest.raises(ValueError, match="unknown initializer"):
        Dense(3, 4, weight_init="kaiming")
