"""The fast kernels (nnlite.kernels, Numba on the CPU) against the plain NumPy references.

Every kernel must compute what its readable reference computes: on random
shapes with strides, padding, groups, overlapping pools, ties and odd sizes,
in float32 and float64. The kernels do the reference's arithmetic in the
reference's order, so they are compared bit for bit. The layers are then run
end to end both ways (``nnlite.kernels.use_reference``) and must agree too.
"""
import numpy as np
import pytest

import nnlite as nn
from nnlite import functional as F
from nnlite import kernels
from nnlite.kernels import conv_blocked

cpu = pytest.importorskip("nnlite.kernels.cpu", reason="Numba is not installed")

DTYPES = [np.float32, np.float64]


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.fixture(autouse=True)
def default_path():
    """Every test here starts on the default (kernel) path, whatever NNLITE_KERNELS says:
    the tests compare the two paths, and choose the plain one themselves."""
    previous = kernels.use_reference(False)
    yield
    kernels.use_reference(previous)


@pytest.fixture
def reference_path():
    """Run the block with the plain references forced, then restore the setting."""
    previous = kernels.use_reference(True)
    yield
    kernels.use_reference(previous)


# ------------------------------------------------------------------ col2im
COL2IM_CASES = [  # (N, C, Hp, Wp), (KH, KW), (SH, SW)
    ((2, 3, 7, 9), (3, 3), (1, 1)),
    ((3, 2, 9, 8), (3, 2), (2, 3)),       # strides, rectangular kernel
    ((1, 1, 23, 23), (11, 11), (4, 4)),   # AlexNet conv1 geometry, one channel
    ((4, 5, 6, 6), (1, 1), (1, 1)),       # 1x1 kernel
    ((2, 2, 5, 7), (5, 3), (1, 2)),       # kernel as tall as the image
    ((5, 1, 8, 8), (2, 2), (3, 3)),       # stride > kernel: pixels no window covers
]
DILATED_CASES = [  # (N, C, Hp, Wp), (KH, KW), (SH, SW), (DH, DW)
    ((2, 3, 9, 9), (3, 3), (1, 1), (2, 2)),
    ((1, 2, 11, 8), (3, 2), (2, 1), (3, 2)),      # rectangular, stride and dilation mixed
    ((2, 1, 7, 10), (2, 3), (3, 2), (1, 4)),      # dilation along one axis only
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s", COL2IM_CASES)
def test_col2im_equals_reference(shape, k, s, dtype):
    rng = np.random.default_rng(hash((shape, k, s)) % 2**32)
    N, C, Hp, Wp = shape
    OH, OW = (Hp - k[0]) // s[0] + 1, (Wp - k[1]) // s[1] + 1
    dcols = randn(rng, (C * k[0] * k[1], N * OH * OW), dtype)
    got = cpu.col2im(dcols, shape, *k, *s)
    want = F.col2im(dcols, shape, *k, *s)
    assert got.dtype == want.dtype == dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s", COL2IM_CASES)
def test_im2col_equals_reference(shape, k, s, dtype):
    x = randn(np.random.default_rng(hash((shape, s)) % 2**32), shape, dtype)
    got = cpu.im2col(x, *k, *s)
    want = F.im2col(x, *k, *s)
    assert got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s,d", DILATED_CASES)
def test_dilated_im2col_and_col2im_equal_reference(shape, k, s, d, dtype):
    rng = np.random.default_rng(hash((shape, k, s, d)) % 2**32)
    x = randn(rng, shape, dtype)
    cols = cpu.im2col(x, *k, *s, *d)
    np.testing.assert_array_equal(cols, F.im2col(x, *k, *s, *d))
    dcols = randn(rng, cols.shape, dtype)
    np.testing.assert_array_equal(cpu.col2im(dcols, shape, *k, *s, *d),
                                  F.col2im(dcols, shape, *k, *s, *d))
    # the definition, written out: cols[(c, i, j), (n, oh, ow)] = x[n, c, oh*SH + i*DH, ow*SW + j*DW]
    N, C = shape[:2]
    OH = (shape[2] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    OW = (shape[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    by_tap = cols.reshape(C, k[0], k[1], N, OH, OW)
    for i in range(k[0]):
        for j in range(k[1]):
            want = x[:, :, i * d[0]::s[0], j * d[1]::s[1]][:, :, :OH, :OW].transpose(1, 0, 2, 3)
            np.testing.assert_array_equal(by_tap[:, i, j], want)


def test_im2col_reads_a_non_contiguous_input():
    x = randn(np.random.default_rng(2), (3, 4, 9, 16), np.float32)[:, 1:3, :, ::2]
    np.testing.assert_array_equal(cpu.im2col(x, 3, 3, 2, 1), F.im2col(x, 3, 3, 2, 1))


def test_col2im_is_the_adjoint_of_im2col():
    # <im2col(x), d> == <x, col2im(d)> for any x, d: the defining property.
    rng = np.random.default_rng(3)
    x = randn(rng, (2, 3, 8, 7), np.float64)
    cols = cpu.im2col(x, 3, 2, 2, 1)
    d = randn(rng, cols.shape, np.float64)
    lhs = float((cols * d).sum())
    rhs = float((x * cpu.col2im(d, x.shape, 3, 2, 2, 1)).sum())
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


def test_col2im_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"col2im: expected dcols of shape \(18, 50\)"):
        cpu.col2im(np.zeros((18, 49), np.float32), (2, 2, 7, 7), 3, 3, 1, 1)


def test_col2im_accepts_a_non_contiguous_input():
    rng = np.random.default_rng(4)
    big = randn(rng, (2 * 9 * 2, 2 * 25), np.float32)
    dcols = big[::2, ::2]                                   # (18, 25), strided
    np.testing.assert_array_equal(cpu.col2im(dcols, (1, 2, 7, 7), 3, 3, 1, 1),
                                  F.col2im(dcols, (1, 2, 7, 7), 3, 3, 1, 1))


# --------------------------------------------------------------- max pool
POOL_CASES = [  # x shape, (KH, KW), (SH, SW), (PH, PW)
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0)),      # MaxPool2D(2): its own kernel
    ((2, 3, 7, 9), (2, 2), (2, 2), (0, 0)),      # ... with an odd last row and column
    ((1, 2, 6, 5), (2, 2), (2, 2), (1, 1)),      # ... with -inf padding
    ((2, 2, 9, 11), (3, 3), (2, 2), (0, 0)),     # overlapping (AlexNet)
    ((1, 3, 7, 9), (3, 3), (2, 2), (1, 1)),      # overlapping with -inf padding
    ((3, 1, 6, 7), (2, 3), (1, 2), (1, 1)),      # rectangular, stride 1 rows
    ((2, 2, 5, 5), (3, 3), (1, 1), (0, 0)),      # heavy overlap
    ((1, 2, 7, 7), (2, 2), (3, 3), (0, 0)),      # stride > kernel
]


def _pool_inputs(rng, shape, k, s, p, dtype, ties):
    x = (rng.integers(-2, 3, size=shape) if ties else rng.standard_normal(shape)).astype(dtype)
    xpad = F.pad_hw(x, p[0], p[1], float("-inf"))
    OH = (shape[2] + 2 * p[0] - k[0]) // s[0] + 1
    OW = (shape[3] + 2 * p[1] - k[1]) // s[1] + 1
    return xpad, OH, OW


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s,p", POOL_CASES)
def test_max_pool_equals_reference(shape, k, s, p, dtype, ties):
    rng = np.random.default_rng(hash((shape, k, s, p, ties)) % 2**32)
    xpad, OH, OW = _pool_inputs(rng, shape, k, s, p, dtype, ties)
    y = cpu.max_pool_forward(xpad, *k, *s, OH, OW)
    y_ref = F.max_pool_forward(xpad, *k, *s, OH, OW)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, y_ref)
    dy = randn(rng, y.shape, dtype)
    dx = cpu.max_pool_backward(dy, xpad, y, *k, *s)
    dx_ref = F.max_pool_backward(dy, xpad, y_ref, *k, *s)
    assert dx.dtype == dtype and dx.shape == xpad.shape
    np.testing.assert_array_equal(dx, dx_ref)


ARGMAX_CASES = [(2, 3, 8, 8), (2, 3, 7, 9), (1, 2, 3, 5), (3, 4, 12, 10)]   # odd sizes


@pytest.mark.parametrize("special", ["distinct", "ties", "nan", "signed_zero"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ARGMAX_CASES)
@pytest.mark.parametrize("k", [2, 3])                  # 2x2/2 and overlapping 3x3/2
def test_max_pool_argmax_pair_equals_reference(shape, dtype, special, k):
    rng = np.random.default_rng(hash((shape, special, k)) % 2**32)
    if special == "ties":
        x = rng.integers(-2, 3, size=shape).astype(dtype)
    elif special == "signed_zero":
        x = rng.choice(np.array([0.0, -0.0, -1.0], dtype), size=shape)
    else:
        x = randn(rng, shape, dtype)
    if special == "nan":
        x.reshape(-1)[rng.integers(0, x.size, size=max(1, x.size // 7))] = np.nan
    for p in (0, 1):                                    # with -inf padding too
        xpad = F.pad_hw(x, p, p, float("-inf"))
        OH, OW = (xpad.shape[2] - k) // 2 + 1, (xpad.shape[3] - k) // 2 + 1
        assert kernels.max_pool_argmax_available(xpad, k, k, 2, 2)
        y, arg = kernels.max_pool_forward_argmax(xpad, k, k, 2, 2, OH, OW)
        y_ref = F.max_pool_forward(xpad, k, k, 2, 2, OH, OW)
        assert y.dtype == dtype and arg.shape == y.shape
        np.testing.assert_array_equal(y, y_ref)
        dy = randn(rng, y.shape, dtype)
        dx = kernels.max_pool_backward_argmax(dy, arg, xpad.shape, k, k, 2, 2)
        dx_ref = F.max_pool_backward(dy, xpad, y_ref, k, k, 2, 2)
        assert dx.dtype == dtype and dx.shape == xpad.shape
        np.testing.assert_array_equal(dx, dx_ref)


def test_max_pool_argmax_only_for_2x2_and_3x3_stride_2_on_numba(reference_path):
    x = np.zeros((1, 1, 4, 4), np.float32)
    assert not kernels.max_pool_argmax_available(x, 2, 2, 2, 2)     # references forced
    kernels.use_reference(False)
    assert kernels.max_pool_argmax_available(x, 2, 2, 2, 2)
    assert kernels.max_pool_argmax_available(x, 3, 3, 2, 2)
    assert not kernels.max_pool_argmax_available(x, 3, 3, 1, 1)
    assert not kernels.max_pool_argmax_available(x, 2, 2, 1, 1)
    assert not kernels.max_pool_argmax_available(x, 3, 2, 2, 2)
    assert not kernels.max_pool_argmax_available(x.astype(np.int32), 2, 2, 2, 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,p,dy_shape", [(2, 0, (2, 3, 4, 3)), (3, 0, (2, 3, 4, 3)),
                                          (3, 1, (2, 3, 5, 4))])
def test_maxpool2d_layer_training_argmax_path_equals_reference_layer(dtype, k, p, dy_shape):
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, size=(2, 3, 9, 7)).astype(dtype)        # ties
    dy = randn(rng, dy_shape, dtype)
    results = []
    for force in (False, True):
        old = kernels.use_reference(force)
        try:
            layer = nn.MaxPool2D(k, stride=2, padding=p)
            y = layer.forward(x, training=True)
            assert (layer._argmax is not None) == (not force)
            results.append((y, layer.backward(dy), layer.indices))
        finally:
            kernels.use_reference(old)
    for fast, ref in zip(*results):
        np.testing.assert_array_equal(fast, ref)


def test_max_pool_ties_go_to_the_first_maximum():
    # One 2x3 window full of equal values: all of dy lands on its top-left element.
    xpad = np.full((1, 1, 2, 3), 7.0, np.float32)
    dx = cpu.max_pool_backward(np.array([[[[5.0]]]], np.float32), xpad,
                               cpu.max_pool_forward(xpad, 2, 3, 1, 1, 1, 1), 2, 3, 1, 1)
    np.testing.assert_array_equal(dx[0, 0], [[5, 0, 0], [0, 0, 0]])
    # The maximum in the second row only: it gets the gradient even though later in the scan.
    xpad[0, 0, 1, 2] = 9.0
    xpad[0, 0, 1, 0] = 9.0
    dx = cpu.max_pool_backward(np.array([[[[5.0]]]], np.float32), xpad,
                               cpu.max_pool_forward(xpad, 2, 3, 1, 1, 1, 1), 2, 3, 1, 1)
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 0], [5, 0, 0]])


def test_max_pool_nan_behaves_like_the_reference():
    rng = np.random.default_rng(5)
    xpad = randn(rng, (1, 2, 6, 6), np.float32)
    xpad[0, 0, 1, 1] = np.nan
    y = cpu.max_pool_forward(xpad, 2, 2, 2, 2, 3, 3)
    y_ref = F.max_pool_forward(xpad, 2, 2, 2, 2, 3, 3)
    np.testing.assert_array_equal(y, y_ref)                 # NaN in the same places
    assert np.isnan(y[0, 0, 0, 0]) and np.isfinite(y[0, 1]).all()
    dy = randn(rng, y.shape, np.float32)
    np.testing.assert_array_equal(cpu.max_pool_backward(dy, xpad, y, 2, 2, 2, 2),
                                  F.max_pool_backward(dy, xpad, y_ref, 2, 2, 2, 2))


# -------------------------------------------------------------------- LRN
LRN_CASES = [  # x shape, size
    ((2, 7, 4, 5), 5),
    ((1, 6, 3, 3), 4),        # even size: one more channel before than after
    ((3, 3, 2, 4), 5),        # window wider than the channel axis
    ((2, 5, 1, 1), 1),        # size 1: only the channel itself
    ((1, 8, 5, 3), 2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,size", LRN_CASES)
def test_lrn_equals_reference(shape, size, dtype):
    rng = np.random.default_rng(hash((shape, size)) % 2**32)
    x = 3 * randn(rng, shape, dtype)
    alpha, beta, k = 0.3, 0.75, 1.5          # large alpha: the window sum matters
    got = cpu.lrn_forward(x, size, alpha, beta, k)
    want = F.lrn_forward(x, size, alpha, beta, k)
    for a, b in zip(got, want):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)
    _, s, p = want
    dy = randn(rng, shape, dtype)
    dx = cpu.lrn_backward(dy, x, s, p, size, alpha, beta)
    dx_ref = F.lrn_backward(dy, x, s, p, size, alpha, beta)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, dx_ref)


# ------------------------------------------------------------------- Adam
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_equals_reference_bit_for_bit(dtype):
    rng = np.random.default_rng(6)
    p = randn(rng, (37, 11), dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    for t in range(1, 5):
        g = randn(rng, p.shape, dtype)
        g0 = g.copy()
        cpu.adam_update(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, t)
        F.adam_update(p2, g, m2, v2, 1e-2, 0.9, 0.999, 1e-8, t)
        np.testing.assert_array_equal(g, g0)                 # the gradient is only read
    for a, b in ((p, p2), (m, m2), (v, v2)):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_amsgrad_update_equals_reference_bit_for_bit(dtype):
    rng = np.random.default_rng(16)
    p = randn(rng, (23, 7), dtype)
    m, v, v_max = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    p2, m2, v2, v_max2 = p.copy(), m.copy(), v.copy(), v_max.copy()
    for t in range(1, 6):
        g = randn(rng, p.shape, dtype) * (4.0 if t == 2 else 0.1)   # one large gradient
        cpu.adam_update(p, g, m, v, 1e-2, 0.9, 0.99, 1e-8, t, v_max)
        F.adam_update(p2, g, m2, v2, 1e-2, 0.9, 0.99, 1e-8, t, v_max2)
    assert (v_max > v).any()                                  # the maximum is remembered
    for a, b in ((p, p2), (m, m2), (v, v2), (v_max, v_max2)):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)


def test_adam_reference_is_the_textbook_formula():
    # m_hat = m / (1 - beta1**t), v_hat = v / (1 - beta2**t), p -= lr m_hat / (sqrt(v_hat) + eps)
    rng = np.random.default_rng(17)
    p = rng.standard_normal(9)
    m, v = np.zeros(9), np.zeros(9)
    want, mm, vv = p.copy(), np.zeros(9), np.zeros(9)
    for t in range(1, 4):
        g = rng.standard_normal(9)
        F.adam_update(p, g, m, v, 0.1, 0.8, 0.95, 1e-3, t)
        mm = 0.8 * mm + 0.2 * g
        vv = 0.95 * vv + 0.05 * g * g
        want -= 0.1 * (mm / (1 - 0.8 ** t)) / (np.sqrt(vv / (1 - 0.95 ** t)) + 1e-3)
    np.testing.assert_allclose(p, want, rtol=1e-15, atol=1e-15)


def test_adam_optimizer_same_with_and_without_kernels():
    def run(force):
        model = nn.zoo.reduced_alexnet(input_shape=(1, 32, 32), channels=(4, 6, 8, 8, 6),
                                       hidden=8, seed=3)
        opt = nn.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
        old = kernels.use_reference(force)
        try:
            for _ in range(2):
                for p in model.parameters():
                    p.grad[...] = np.cos(np.arange(p.size, dtype=np.float32)).reshape(p.shape)
                opt.step()
        finally:
            kernels.use_reference(old)
        return [p.data.copy() for p in model.parameters()]
    for a, b in zip(run(False), run(True)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------- batch norm
# The batch-norm kernels sum in float64 and in SIMD lanes, NumPy's reference pairwise in
# the data's dtype: equal to rounding, not bit for bit. dx is a difference of nearly equal
# terms (with m = 2 it is ~0), so its tolerance is set by the size of those terms.
BATCH_NORM_SHAPES = [  # (N, C, M): M = H*W, L, or 1 for BatchNorm1D on (N, C)
    (2, 3, 1),            # N = 2, M = 1: two values per channel
    (7, 5, 1),            # BatchNorm1D on (N, C)
    (3, 4, 9),            # BatchNorm1D on (N, C, L)
    (2, 3, 35),           # odd plane (5x7)
    (5, 1, 13),           # one channel
    (32, 16, 64),         # many values per channel
] + [tuple(int(v) for v in np.random.default_rng(seed).integers((2, 1, 1), (9, 7, 50)))
     for seed in range(3)]                                   # random shapes


def _batch_norm_rtol(dtype):
    return 2e-6 if dtype == np.float32 else 1e-12


def _assert_close(got, want, rtol, scale=None):
    scale = np.abs(want).max() if scale is None else scale
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BATCH_NORM_SHAPES)
def test_batch_norm_equals_reference(shape, dtype, affine):
    rng = np.random.default_rng(hash((shape, affine)) % 2**32)
    C = shape[1]
    x3 = (2 * randn(rng, shape, np.float64) - 1).astype(dtype)
    gamma = rng.uniform(0.5, 2.0, C).astype(dtype) if affine else None
    beta = randn(rng, (C,), dtype) if affine else None
    rtol = _batch_norm_rtol(dtype)
    got = cpu.batch_norm_forward(x3, gamma, beta, 1e-5)
    want = F.batch_norm_forward(x3, gamma, beta, 1e-5)
    for name, a, b in zip(["y3", "x_hat3", "mu", "var", "inv_sigma"], got, want):
        assert a.dtype == dtype and a.shape == b.shape, name
        _assert_close(a, b, rtol)
    assert not np.shares_memory(got[0], got[1])              # y3 is not the cached x_hat3
    _, x_hat3, _, _, inv_sigma = want
    dy3 = randn(rng, shape, dtype)
    got = cpu.batch_norm_backward(dy3, x_hat3, gamma, inv_sigma)
    want = F.batch_norm_backward(dy3, x_hat3, gamma, inv_sigma)
    scale = inv_sigma if gamma is None else gamma * inv_sigma
    sums_scale = np.abs(dy3).sum(axis=(0, 2)).max()        # dgamma, dbeta may cancel to ~0
    for name, a, b, size in zip(["dx3", "dgamma", "dbeta"], got, want,
                                [np.abs(scale).max() * np.abs(dy3).max(), sums_scale, sums_scale]):
        assert a.dtype == dtype and a.shape == b.shape, name
        _assert_close(a, b, 4 * rtol, size)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(32, 4, 256), (9, 3, 1), (2, 2, 7)])
def test_batch_norm_variance_is_stable_for_a_large_offset(shape, dtype):
    # x = 1000 + noise(0.01): E[x^2] - E[x]^2 would lose about 10 digits to cancellation
    # (all of float32's; in float64 it would be off by ~1e-6). Two passes with float64 sums
    # keep the variance right to the data's rounding.
    rng = np.random.default_rng(hash(shape) % 2**32)
    x3 = (1000 + 0.01 * rng.standard_normal(shape)).astype(dtype)
    exact = x3.astype(np.longdouble)                   # the variance of the rounded data
    mu_exact = exact.mean(axis=(0, 2))
    var_exact = ((exact - mu_exact[:, None]) ** 2).mean(axis=(0, 2))
    _, x_hat3, mu, var, _ = cpu.batch_norm_forward(x3, None, None, 1e-20)   # eps << var
    np.testing.assert_allclose(mu, mu_exact.astype(np.float64),
                               rtol=1e-7 if dtype == np.float32 else 1e-15)
    np.testing.assert_allclose(var, var_exact.astype(np.float64),
                               rtol=2e-7 if dtype == np.float32 else 1e-12)
    # x_hat is as good as the rounded mean allows: one ulp of 1000 is 6e-5 (float32) of sigma 0.01
    np.testing.assert_allclose(x_hat3.var(axis=(0, 2), dtype=np.float64), 1,
                               rtol=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make,shape", [
    (lambda: nn.BatchNorm2D(3), (4, 3, 5, 7)),
    (lambda: nn.BatchNorm2D(2, affine=False), (2, 2, 3, 3)),
    (lambda: nn.BatchNorm1D(4, momentum=None), (6, 4)),
    (lambda: nn.BatchNorm1D(3), (2, 3, 5)),
], ids=["2d", "2d-no-affine", "1d", "1d-ncl"])
def test_batchnorm_layers_same_with_and_without_kernels(make, shape, dtype):
    rng = np.random.default_rng(13)
    x = (3 + 2 * randn(rng, shape, np.float64)).astype(dtype)
    dy = randn(rng, shape, dtype)
    gamma = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    beta = randn(rng, (shape[1],), dtype)
    results = []
    for force in (False, True):
        old = kernels.use_reference(force)
        try:
            layer = make().astype(dtype)
            if layer.affine:
                layer.gamma.data[...], layer.beta.data[...] = gamma, beta
            y = layer.forward(x, training=True)
            dx = layer.backward(dy)
            y_eval = layer.forward(x, training=False)     # uses the running statistics just set
        finally:
            kernels.use_reference(old)
        results.append([y, dx, y_eval, layer.running_mean.data, layer.running_var.data]
                       + [p.grad for p in layer.parameters()])
    rtol = 4 * _batch_norm_rtol(dtype)
    for fast, plain in zip(*results):
        assert fast.dtype == plain.dtype == dtype and fast.shape == plain.shape
        _assert_close(fast, plain, rtol)


def test_batch_norm_dispatch_numba_on_the_cpu_and_the_reference_elsewhere(reference_path):
    x3 = np.zeros((2, 3, 4), np.float32)
    assert kernels.backend_for("batch_norm_backward", x3) == "reference"    # forced
    kernels.use_reference(False)
    assert kernels.backend_for("batch_norm_forward", x3) == "numba"
    assert kernels.backend_for("batch_norm_backward", x3.astype(np.float64)) == "numba"
    assert kernels.REFERENCES["batch_norm_forward"] is F.batch_norm_forward
    from nnlite.kernels import gpu
    if not hasattr(gpu, "batch_norm_forward"):      # no CUDA kernel: CuPy takes the reference
        assert kernels.dispatch._pick("batch_norm_forward", object()) is F.batch_norm_forward
        assert kernels.dispatch._pick("batch_norm_backward", object()) is F.batch_norm_backward


# ---------------------------------------------------- layers, both paths
def _layer_both_ways(make_layer, x, seed=0):
    """forward + backward with the kernels and with the references: (outputs, grads) twice."""
    results = []
    for force in (False, True):
        layer = make_layer()
        for k, p in enumerate(layer.parameters()):     # a bias left at zero would hide a bias bug
            if not p.data.any():
                p.data[...] = randn(np.random.default_rng(100 + k), p.data.shape, p.data.dtype)
        old = kernels.use_reference(force)
        try:
            y = layer.forward(x, training=True)
            dy = randn(np.random.default_rng(seed), y.shape, x.dtype)
            dx = layer.backward(dy)
        finally:
            kernels.use_reference(old)
        results.append([y, dx] + [p.grad for p in layer.parameters()])
    return results


CONV_CASES = [  # Conv2D kwargs, input shape
    (dict(in_channels=3, out_channels=4, kernel_size=3, padding=1), (2, 3, 7, 6)),
    (dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding="same", groups=2),
     (2, 4, 9, 8)),
    (dict(in_channels=6, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0),
          groups=3), (3, 6, 7, 7)),
    (dict(in_channels=1, out_channels=5, kernel_size=5, stride=2, padding=2), (2, 1, 12, 10)),
    (dict(in_channels=2, out_channels=3, kernel_size=4, padding="same", bias=False), (1, 2, 6, 5)),
    (dict(in_channels=2, out_channels=4, kernel_size=3, dilation=2, padding=1), (2, 2, 9, 8)),
    (dict(in_channels=4, out_channels=2, kernel_size=(2, 3), stride=(1, 2), dilation=(3, 1),
          padding="same", groups=2), (1, 4, 8, 7)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs,shape", CONV_CASES)
def test_conv2d_layer_same_with_and_without_kernels(kwargs, shape, dtype):
    # The fast path (conv_blocked + Numba) against the plain path written in Conv2D: the
    # same sums, in a different order of matrix products, so equal to rounding.
    x = randn(np.random.default_rng(7), shape, dtype)
    fast, plain = _layer_both_ways(lambda: nn.Conv2D(**kwargs, seed=2).astype(dtype), x)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    for a, b in zip(fast, plain):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_fast_path_in_blocks_equals_plain_path(monkeypatch, dtype):
    # Several blocks of samples (odd sizes, stride, padding, groups), frozen W too.
    monkeypatch.setitem(conv_blocked.SINGLE_BLOCK_BYTES, "cpu", 0)
    monkeypatch.setitem(conv_blocked.COLUMN_BLOCK_BYTES, "cpu", 1)       # one sample a block
    x = randn(np.random.default_rng(9), (3, 4, 9, 7), dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    for frozen in (False, True):
        def make():
            layer = nn.Conv2D(4, 6, 3, stride=2, padding=1, groups=2, seed=4).astype(dtype)
            layer.W.trainable = not frozen
            return layer
        fast, plain = _layer_both_ways(make, x)
        for a, b in zip(fast, plain):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv2d_one_sample_blocks_equal_plain_path(monkeypatch, case):
    # Thin columns on a large output plane: a sample is a block by itself, its output rows
    # y[n] and dy[n] as they are (no transposing pass). Limits 10**6 rows and 1 position:
    # every layer takes that path here.
    monkeypatch.setitem(conv_blocked.ONE_SAMPLE_MAX_ROWS, "cpu", 10**6)
    monkeypatch.setattr(conv_blocked, "ONE_SAMPLE_MIN_POSITIONS", 1)
    kwargs, shape = CONV_CASES[case]
    x = randn(np.random.default_rng(21), shape, np.float64)
    for frozen in (False, True):
        def make():
            layer = nn.Conv2D(**kwargs, seed=5).astype(np.float64)   # bias: _layer_both_ways
            layer.W.trainable = not frozen
            return layer
        fast, plain = _layer_both_ways(make, x)
        for a, b in zip(fast, plain):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13 * np.abs(b).max())


def test_conv2d_one_sample_blocks_for_thin_columns_on_large_planes():
    x = np.zeros((3, 1, 52, 52), np.float32)
    rows, positions = conv_blocked.ONE_SAMPLE_MAX_ROWS["cpu"], conv_blocked.ONE_SAMPLE_MIN_POSITIONS
    assert rows >= 25 and positions <= 48 * 48        # the MIAS CNN's conv1: 1 channel, 5x5, 48x48

    def blocks(C, K, side, groups=1):
        return conv_blocked.sample_blocks(x, 3, C, 32, K, K, side, side, groups)
    assert blocks(1, 5, 48) == [(0, 1), (1, 2), (2, 3)]
    assert blocks(2, 5, 48, groups=2) == [(0, 1), (1, 2), (2, 3)]   # 25 rows per group
    assert blocks(1, 5, 4) == [(0, 3)]                # a small plane: one block (it fits)
    assert blocks(32, 3, 16) == [(0, 3)]              # 288 rows: blocks by size (all fits)


@pytest.mark.parametrize("layer", ["max", "lrn"])
def test_pool_and_lrn_layers_same_with_and_without_kernels(layer):
    x = randn(np.random.default_rng(8), (3, 7, 9, 9), np.float32)
    make = (lambda: nn.MaxPool2D(3, stride=2, padding=1)) if layer == "max" else \
        (lambda: nn.LocalResponseNorm(5, alpha=0.5, beta=0.75, k=2.0))
    fast, plain = _layer_both_ways(make, x)
    for a, b in zip(fast, plain):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv2d_in_column_blocks_equals_one_block(monkeypatch, groups):
    # Conv2D unfolds the batch a block of samples at a time (conv.COLUMN_BLOCK_BYTES);
    # 1 byte means one sample per block, 1 GB one block for the whole batch.
    rng = np.random.default_rng(12)
    x = randn(rng, (5, 4, 7, 6), np.float32)
    dy = randn(rng, (5, 6, 4, 6), np.float32)
    results = []
    monkeypatch.setitem(conv_blocked.SINGLE_BLOCK_BYTES, "cpu", 0)
    for block_bytes in (1 << 30, 1):
        monkeypatch.setitem(conv_blocked.COLUMN_BLOCK_BYTES, "cpu", block_bytes)
        layer = nn.Conv2D(4, 6, 3, stride=(2, 1), padding=1, groups=groups, seed=3)
        y = layer.forward(x, training=True)
        assert layer._cache[0].shape == (5, 4, 9, 8)      # the padded input
        kept = layer._cache[1]                             # columns: kept only as one block
        assert len(kept) == (block_bytes > 1) and all(c.shape == (36, 120) for c in kept)
        dx = layer.backward(dy)
        assert layer._cache[1] == []                       # used once: their buffer became dcols
        np.testing.assert_array_equal(layer.backward(dy), dx)   # backward can run twice
        results.append((y, dx, layer.W.grad, layer.b.grad))
    for one, blocks in zip(*results):
        assert blocks.dtype == np.float32
        np.testing.assert_allclose(blocks, one, rtol=1e-5, atol=1e-5 * np.abs(one).max())


def test_conv2d_blocks_cover_the_batch_in_equal_parts(monkeypatch):
    monkeypatch.setitem(conv_blocked.COLUMN_BLOCK_BYTES, "cpu", 8 << 20)   # the rule, not the size
    x = np.zeros((64, 32, 24, 24), np.float32)     # (800 + 64) * 576 * 4 B = 1.9 MB a sample

    def blocks(a, N):                              # Conv2D(32, 64, 5, padding="same") on 24x24
        return conv_blocked.sample_blocks(a, N, 32, 64, 5, 5, 24, 24)
    assert blocks(x, 64) == [(4 * i, 4 * i + 4) for i in range(16)]   # 8 MB
    assert blocks(x, 14) == [(0, 3), (3, 7), (7, 10), (10, 14)]       # not 4+4+4+2
    assert blocks(x, 12) == [(0, 12)]                                 # 24 MB or less: one block
    assert blocks(x, 0) == []
    assert blocks(x.astype(np.float64), 64) == [(2 * i, 2 * i + 2) for i in range(32)]


# ------------------------------------------------------------- dispatch
def test_dispatch_picks_numba_for_float_numpy_arrays():
    x32, x64 = np.zeros((1, 1, 2, 2), np.float32), np.zeros((1, 1, 2, 2), np.float64)
    assert kernels.backend_for("max_pool_forward", x32) == "numba"
    assert kernels.backend_for("lrn_forward", x64) == "numba"
    assert kernels.backend_for("col2im", np.zeros((2, 2), np.int64)) == "reference"
    with pytest.raises(ValueError, match="no kernel called 'conv9d'"):
        kernels.backend_for("conv9d", x32)


def test_use_reference_forces_the_plain_path_and_restores(reference_path):
    x = np.zeros((1, 1, 2, 2), np.float32)
    assert kernels.reference_forced()
    assert kernels.backend_for("col2im", x) == "reference"
    assert kernels.use_reference(False) is True
    assert kernels.backend_for("col2im", x) == "numba"
    with pytest.raises(ValueError, match="use_reference expects True, False or None"):
        kernels.use_reference("yes")


def test_environment_variable_forces_the_plain_path(monkeypatch):
    previous = kernels.use_reference(None)          # follow the environment
    try:
        x = np.zeros((1, 1, 2, 2), np.float32)
        monkeypatch.setenv("NNLITE_KERNELS", "reference")
        assert kernels.backend_for("lrn_backward", x) == "reference"
        monkeypatch.setenv("NNLITE_KERNELS", "")
        assert kernels.backend_for("lrn_backward", x) == "numba"
    finally:
        kernels.use_reference(previous)


def test_dispatcher_holds_its_references_and_imports_no_layer():
    # The references are looked up once, in nnlite.functional; no layer module is imported.
    import ast
    import pathlib
    assert kernels.REFERENCES["im2col"] is F.im2col
    assert kernels.REFERENCES["adam_update"] is F.adam_update
    layer_modules = {"conv", "pooling", "lrn", "optim", "losses", "activations", "dense",
                     "sequential", "training", "serialization", "containers"}
    root = pathlib.Path(F.__file__).parent
    for path in [root / "functional.py", *sorted((root / "kernels").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[-1]} | {a.name for a in node.names}
                assert not names & layer_modules, f"{path.name} imports {names & layer_modules}"


def test_dispatched_dilated_im2col_and_amsgrad_take_a_covered_path():
    x = randn(np.random.default_rng(5), (1, 2, 7, 7), np.float32)
    np.testing.assert_array_equal(kernels.im2col(x, 3, 3, 1, 1, 2, 2), F.im2col(x, 3, 3, 1, 1, 2, 2))
    p = randn(np.random.default_rng(6), (5,), np.float32)
    p_non_contiguous_state = p.copy()
    m, v, v_max = (np.zeros(10, np.float32)[::2] for _ in range(3))   # strided: the reference
    kernels.adam_update(p_non_contiguous_state, p, m, v, 0.1, 0.9, 0.999, 1e-8, 1, v_max)
    want, m2, v2, v_max2 = p.copy(), np.zeros(5, np.float32), np.zeros(5, np.float32), np.zeros(5, np.float32)
    F.adam_update(want, p, m2, v2, 0.1, 0.9, 0.999, 1e-8, 1, v_max2)
    np.testing.assert_array_equal(p_non_contiguous_state, want)


def test_dispatched_results_equal_the_reference_results():
    # The public names route to the kernels and give the reference's answer.
    rng = np.random.default_rng(11)
    xpad = randn(rng, (2, 3, 6, 6), np.float32)
    y = kernels.max_pool_forward(xpad, 2, 2, 2, 2, 3, 3)
    np.testing.assert_array_equal(y, F.max_pool_forward(xpad, 2, 2, 2, 2, 3, 3))
    dcols = randn(rng, (3 * 4, 2 * 9), np.float32)
    np.testing.assert_array_equal(kernels.col2im(dcols, (2, 3, 4, 4), 2, 2, 1, 1),
                                  F.col2im(dcols, (2, 3, 4, 4), 2, 2, 1, 1))
