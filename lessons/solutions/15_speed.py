"""Reference solutions of lessons/15_speed.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 15.1]
def conv_flops(N, C, F, OH, OW, KH, KW):
    """Floating-point operations of one convolution forward pass (2 per multiply-add)."""
    return 2 * N * F * OH * OW * C * KH * KW

# %% [wrong 15.1]
def conv_flops(N, C, F, OH, OW, KH, KW):
    """Counts multiply-adds, not FLOP: half the data-sheet convention."""
    return N * F * OH * OW * C * KH * KW

# %% [solution 15.2]
def best_time(fn, repeats=5):
    """Seconds of the fastest of `repeats` timed calls of fn(), after one warm-up call."""
    fn()                                            # warm-up: compiling, caches, allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)

# %% [wrong 15.2]
def best_time(fn, repeats=5):
    """No warm-up, and the mean: the first call's compile time is averaged in."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sum(times) / len(times)

# %% [solution 15.3]
def conv2d_im2col(x, W, b, stride=1, padding=0):
    """y (N, F, OH, OW) = the correlation of x (N, C, H, W) with W (F, C, KH, KW), plus b."""
    N = x.shape[0]
    F, _, KH, KW = W.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    OH = (x_pad.shape[2] - KH) // stride + 1
    OW = (x_pad.shape[3] - KW) // stride + 1
    cols = nn.functional.im2col(x_pad, KH, KW, stride, stride)     # (C*KH*KW, N*OH*OW)
    y = W.reshape(F, -1) @ cols + b[:, None]                       # (F, N*OH*OW)
    return y.reshape(F, N, OH, OW).transpose(1, 0, 2, 3)           # (N, F, OH, OW)

# %% [wrong 15.3]
def conv2d_im2col(x, W, b, stride=1, padding=0):
    """Reshapes (F, N*OH*OW) straight to (N, F, OH, OW): the values land in the wrong places."""
    N = x.shape[0]
    F, _, KH, KW = W.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    OH = (x_pad.shape[2] - KH) // stride + 1
    OW = (x_pad.shape[3] - KW) // stride + 1
    cols = nn.functional.im2col(x_pad, KH, KW, stride, stride)
    return (W.reshape(F, -1) @ cols + b[:, None]).reshape(N, F, OH, OW)

# %% [solution 15.4]
def im2col_ratio(H, K, stride, padding):
    """cols.size / x.size for one H x H channel."""
    O = (H - K + 2 * padding) // stride + 1
    return K * K * O * O / (H * H)

# %% [wrong 15.4]
def im2col_ratio(H, K, stride, padding):
    """K * K: right only for a stride-1 'same' convolution."""
    return K * K
