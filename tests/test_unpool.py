"""Tests for nnlite.unpool: MaxUnpool2D (fed by MaxPool2D's indices) and Upsample2D."""
import json

import numpy as np
import pytest

import nnlite as nn
from nnlite.gradcheck import assert_gradcheck


def distinct(shape, seed=0):
    """All-different values in (-1, 1), at least ~1/size apart (no ties)."""
    n = int(np.prod(shape))
    return ((np.random.default_rng(seed).permutation(n) - n / 2) / n).reshape(shape)


def loop_unpool(x, indices, H, W):
    """Direct reference: write each value at its index, in row-major order (the last write stays)."""
    N, C, OH, OW = x.shape
    y = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    y[n, c, indices[n, c, oh, ow]] = x[n, c, oh, ow]
    return y.reshape(N, C, H, W)


def pooled(pool, shape, seed=0):
    """Run ``pool`` on a distinct input of ``shape``; return the unpool's input (pool-output shaped)."""
    pool.forward(distinct(shape, seed))
    return distinct(pool.indices.shape, seed + 1)


CASES = [  # kernel, stride, padding, pool input shape
    (2, 2, 0, (2, 3, 6, 8)),
    (2, 2, 0, (1, 2, 7, 9)),           # odd: the pool drops the last row/column
    (3, 2, 1, (2, 2, 7, 6)),           # overlapping with padding
    ((2, 3), (1, 2), 1, (1, 2, 5, 6)),
]


@pytest.mark.parametrize("k, s, p, shape", CASES)
def test_forward_puts_values_back_at_the_pool_indices(k, s, p, shape):
    pool = nn.MaxPool2D(k, s, p)
    unpool = nn.MaxUnpool2D(pool)
    x = pooled(pool, shape)
    y = unpool.forward(x)
    assert y.shape == shape and y.dtype == x.dtype
    np.testing.assert_array_equal(y, loop_unpool(x, pool.indices, *shape[2:]))
    assert unpool.output_shape(x.shape[1:]) == shape[1:]


def test_segnet_round_trip_keeps_the_maxima_and_zeros_the_rest():
    pool = nn.MaxPool2D(2)
    unpool = nn.MaxUnpool2D(pool)
    x = (distinct((2, 3, 6, 6)) + 2).astype(np.float32)       # positive: zeros never win
    y = unpool.forward(pool.forward(x))
    assert y.dtype == np.float32
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept])
    assert kept.sum() == 2 * 3 * 3 * 3                    # one per 2x2 window
    np.testing.assert_array_equal(pool.forward(y), pool.forward(x))


def test_overlapping_pool_keeps_the_last_duplicate():
    # 3x3 stride 1 on a 4x4 map whose maximum is at (1, 2): all four windows select it
    x_pool = np.zeros((1, 1, 4, 4))
    x_pool[0, 0, 1, 2] = 9.0
    x_pool[0, 0, 3, 0] = 1.0
    pool = nn.MaxPool2D(3, stride=1)
    pool.forward(x_pool)
    assert pool.indices.ravel().tolist() == [6, 6, 6, 6]
    unpool = nn.MaxUnpool2D(pool)
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y = unpool.forward(x)
    assert y[0, 0, 1, 2] == 4.0 and np.count_nonzero(y) == 1           # the last (oh, ow) wins
    dy = distinct(y.shape, seed=3)
    dx = unpool.backward(dy)
    np.testing.assert_array_equal(dx[0, 0], [[0.0, 0.0], [0.0, dy[0, 0, 1, 2]]])


# --------------------------------------------------------- gradient checks
@pytest.mark.parametrize("k, s, p, shape", CASES)
def test_gradcheck_MaxUnpool2D(k, s, p, shape):
    pool = nn.MaxPool2D(k, s, p)
    x = pooled(pool, shape, seed=4)
    assert_gradcheck(nn.MaxUnpool2D(pool), x, tol=1e-6)


def test_gradcheck_MaxUnpool2D_overlapping_with_duplicates():
    pool = nn.MaxPool2D(3, stride=1)
    x_pool = distinct((2, 2, 6, 6), seed=5) * 0.1
    x_pool[:, :, 2, 2] = 5.0                  # the maximum of up to nine windows per plane
    x_pool[0, 1, 4, 4] = 6.0
    pool.forward(x_pool)
    flat = pool.indices.reshape(4, -1)
    assert any(len(np.unique(row)) < row.size for row in flat)    # there are duplicates
    x = distinct(pool.indices.shape, seed=6)
    result = assert_gradcheck(nn.MaxUnpool2D(pool), x, tol=1e-6)
    assert result["input"] < 1e-6


def test_gradcheck_MaxUnpool2D_output_size():
    pool = nn.MaxPool2D(2)
    x = pooled(pool, (1, 2, 5, 7), seed=7)               # pool input 5x7 -> 2x3
    unpool = nn.MaxUnpool2D(pool, output_size=(6, 7))    # one more row; the same width
    assert unpool.output_shape((2, 2, 3)) == (2, 6, 7)
    y = unpool.forward(x)
    assert y.shape == (1, 2, 6, 7) and not y[:, :, 5].any()
    assert_gradcheck(unpool, x, tol=1e-6)


# ------------------------------------------------------ links and errors
def test_unpool_by_name_is_linked_by_resolve_links():
    model = nn.Sequential([nn.MaxPool2D(2, name="pool1"), nn.ReLU(), nn.MaxUnpool2D("pool1")])
    pool, unpool = model.layers[0], model.layers[2]
    assert unpool.children() == [] and unpool.named_layers() == []
    with pytest.raises(RuntimeError, match=r"MaxUnpool2D is not linked to its MaxPool2D 'pool1' yet"):
        unpool.forward(np.zeros((1, 1, 2, 2)))
    unpool.resolve_links(model)
    assert unpool.pool is pool
    x = distinct((2, 1, 4, 4))
    y = model.forward(x)
    np.testing.assert_array_equal(y, loop_unpool(np.maximum(pool.forward(x), 0), pool.indices, 4, 4))
    # by dotted path as well
    path = [p for p, layer in model.named_layers() if layer is pool][0]
    by_path = nn.MaxUnpool2D(path)
    by_path.resolve_links(model)
    assert by_path.pool is pool and by_path.get_config()["pool"] == path


def test_resolve_links_errors_name_the_choices():
    model = nn.Sequential([nn.MaxPool2D(2), nn.MaxPool2D(2), nn.MaxPool2D(1, name="p3")])
    with pytest.raises(ValueError, match=r"up: 2 MaxPool2D named 'MaxPool2D'.*unique name"):
        nn.MaxUnpool2D("MaxPool2D", name="up").resolve_links(model)
    with pytest.raises(ValueError, match=r"up: no MaxPool2D named 'pool9'.*p3"):
        nn.MaxUnpool2D("pool9", name="up").resolve_links(model)
    nn.MaxUnpool2D("p3").resolve_links(model)
    second = [p for p, layer in model.named_layers() if layer is model.layers[1]][0]
    assert nn.MaxUnpool2D(second).resolve_links(model) is None     # a dotted path is unique


def test_clear_errors_naming_both_layers():
    with pytest.raises(ValueError, match="pool must be a MaxPool2D layer or its name"):
        nn.MaxUnpool2D(nn.AvgPool2D(2))
    with pytest.raises(ValueError, match="output_size must be an int or a pair"):
        nn.MaxUnpool2D("p", output_size=(2, 3, 4))
    pool = nn.MaxPool2D(2, name="pool1")
    unpool = nn.MaxUnpool2D(pool, name="unpool1")
    with pytest.raises(RuntimeError, match=r"unpool1: its MaxPool2D 'pool1' has not run forward yet"):
        unpool.forward(np.zeros((1, 1, 2, 2)))
    with pytest.raises(RuntimeError, match=r"unpool1: backward\(\) called before forward\(\)"):
        unpool.backward(np.zeros((1, 1, 4, 4)))
    pool.forward(np.zeros((2, 3, 4, 6), np.float32))
    with pytest.raises(ValueError, match=r"unpool1 expected input \(2, 3, 2, 3\) \(the output of "
                                         r"its MaxPool2D 'pool1'\), got \(2, 3, 3, 3\)"):
        unpool.forward(np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"unpool1 expected input \(N, C, OH, OW\), got shape \(2, 3\)"):
        unpool.forward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="output_size .* is too small"):
        nn.MaxUnpool2D(pool, output_size=(2, 2)).forward(pool.forward(distinct((2, 3, 4, 6))))
    y = unpool.forward(np.ones((2, 3, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"unpool1.backward expected dy of shape \(2, 3, 4, 6\)"):
        unpool.backward(np.zeros((2, 3, 4, 5), np.float32))
    assert unpool.backward(np.ones_like(y)).dtype == np.float32


def test_output_shape_before_the_pool_runs_uses_pytorchs_formula():
    pool = nn.MaxPool2D(2)
    unpool = nn.MaxUnpool2D(pool)
    assert unpool.output_shape((3, 3, 4)) == (3, 6, 8)         # (OH - 1)*S - 2P + K
    pool.forward(np.zeros((1, 3, 7, 9)))
    assert unpool.output_shape((3, 3, 4)) == (3, 7, 9)         # the pool's real input size
    assert nn.MaxUnpool2D(pool, output_size=8).output_shape((3, 3, 4)) == (3, 8, 8)


def test_config_is_json_and_saves_the_pool_name():
    pool = nn.MaxPool2D(2, name="enc_pool")
    unpool = nn.MaxUnpool2D(pool, output_size=(5, 6), name="dec_unpool")
    config = json.loads(json.dumps(unpool.get_config()))
    assert config == {"pool": "enc_pool", "output_size": [5, 6], "name": "dec_unpool"}
    clone = nn.MaxUnpool2D(**config)
    clone.resolve_links(nn.Sequential([pool]))
    assert clone.pool is pool and clone.get_config() == unpool.get_config()


def test_save_and_load_relink_the_pool(tmp_path):
    model = nn.Sequential([nn.MaxPool2D(2, name="pool1"), nn.MaxUnpool2D("pool1"),
                           nn.Upsample2D(2)])
    model.layers[1].resolve_links(model)
    x = distinct((2, 2, 4, 6)).astype(np.float32)
    y = model.forward(x)
    nn.save(model, tmp_path / "m")
    loaded = nn.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.forward(x), y)


@pytest.mark.parametrize("k, s, p, shape", CASES + [(3, 1, 0, (2, 2, 5, 5))])
def test_matches_pytorch_max_unpool2d(k, s, p, shape):
    torch = pytest.importorskip("torch")
    xin = np.round(distinct(shape, seed=8) * 4) / 4           # ties and shared maxima too
    pool = nn.MaxPool2D(k, s, p)
    unpool = nn.MaxUnpool2D(pool)
    x = distinct(pool.forward(xin).shape, seed=9)
    y = unpool.forward(x)
    dy = distinct(y.shape, seed=10)
    dx = unpool.backward(dy)
    _, it = torch.nn.functional.max_pool2d(torch.from_numpy(xin), k, s, p, return_indices=True)
    np.testing.assert_array_equal(pool.indices, it.numpy())
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.nn.functional.max_unpool2d(xt, it, k, s, p, output_size=shape[2:])
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    # PyTorch's gradient gathers at every index, also for the dropped duplicates (so its
    # backward is not the derivative of its forward there); ours is 0 for them
    keep = unpool._cache[1]                  # None: no overlap, so no duplicates
    kept = np.ones(dx.shape, bool) if keep is None else keep.reshape(dx.shape)
    np.testing.assert_array_equal(dx[kept], xt.grad.numpy()[kept])
    assert not dx[~kept].any()


# --------------------------------------------------------------- Upsample2D
def test_upsample_nearest_values_and_shape():
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    up = nn.Upsample2D((2, 3))
    y = up.forward(x)
    assert y.shape == (1, 1, 4, 9) and y.dtype == np.float32
    assert up.output_shape((1, 2, 3)) == (1, 4, 9)
    np.testing.assert_array_equal(y[0, 0, :2, :3], 0.0)
    np.testing.assert_array_equal(y[0, 0, 3], np.repeat([3.0, 4.0, 5.0], 3))
    h, w = np.meshgrid(np.arange(4), np.arange(9), indexing="ij")
    np.testing.assert_array_equal(y[0, 0], x[0, 0, h // 2, w // 3])


def test_upsample_backward_sums_each_block():
    up = nn.Upsample2D(2)
    up.forward(np.zeros((1, 1, 2, 2)))
    dy = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(up.backward(dy)[0, 0], [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7],
                                                          [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]])


@pytest.mark.parametrize("scale, shape", [(2, (2, 3, 3, 4)), ((1, 3), (1, 2, 2, 3)), (3, (1, 1, 2, 2))])
def test_gradcheck_Upsample2D(scale, shape):
    assert_gradcheck(nn.Upsample2D(scale), distinct(shape), tol=1e-6)


def test_upsample_errors_and_config():
    with pytest.raises(ValueError, match="mode must be 'nearest'"):
        nn.Upsample2D(2, mode="bilinear")
    with pytest.raises(ValueError, match="scale_factor must be >= 1"):
        nn.Upsample2D(0)
    with pytest.raises(ValueError, match="scale_factor must be an int or a pair"):
        nn.Upsample2D(1.5)
    with pytest.raises(ValueError, match=r"Upsample2D expected input \(N, C, H, W\), got shape \(2, 3\)"):
        nn.Upsample2D().forward(np.zeros((2, 3), np.float32))
    up = nn.Upsample2D((2, 3), name="up")
    clone = nn.Upsample2D(**json.loads(json.dumps(up.get_config())))
    assert clone.get_config() == up.get_config() == {"scale_factor": [2, 3], "mode": "nearest",
                                                     "name": "up"}


def test_upsample_matches_pytorch():
    torch = pytest.importorskip("torch")
    x = distinct((2, 3, 3, 4))
    up = nn.Upsample2D((2, 3))
    y = up.forward(x)
    dy = distinct(y.shape, seed=1)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.nn.functional.interpolate(xt, scale_factor=(2, 3), mode="nearest")
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(up.backward(dy), xt.grad.numpy(), rtol=1e-14)
