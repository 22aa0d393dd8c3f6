"""Reference solutions of lessons/02_pooling.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 2.1]
def max_pool_backward(x, dy, f):
    """dL/dx of non-overlapping f x f max pooling (stride f) of x (H, W), for dL/dy = dy."""
    dx = np.zeros_like(x)
    for i in range(dy.shape[0]):
        for j in range(dy.shape[1]):
            window = x[i * f:(i + 1) * f, j * f:(j + 1) * f]
            u, v = np.unravel_index(np.argmax(window), window.shape)   # first maximum
            dx[i * f + u, j * f + v] += dy[i, j]
    return dx

# %% [wrong 2.1]
def max_pool_backward(x, dy, f):
    """Spreads dy evenly over each window: the gradient of *average* pooling."""
    dx = np.zeros_like(x)
    for i in range(dy.shape[0]):
        for j in range(dy.shape[1]):
            dx[i * f:(i + 1) * f, j * f:(j + 1) * f] += dy[i, j] / f ** 2
    return dx

# %% [solution 2.2]
def alexnet_last_pool_size():
    """The output height of 3x3/2 pooling of a 13x13 map."""
    return (13 - 3) // 2 + 1

# %% [solution 2.3]
m = np.array([[0, 3, 1, 1],
              [2, 1, 0, 5],
              [4, 4, 2, 2],
              [1, 0, 6, 1]], dtype=np.float32)


def pooled_by_hand():
    """The 2x2 max pooling of m, worked out by hand: [[a, b], [c, d]]."""
    return [[3, 5],
            [4, 6]]

# %% [wrong 2.3]
m = np.array([[0, 3, 1, 1],
              [2, 1, 0, 5],
              [4, 4, 2, 2],
              [1, 0, 6, 1]], dtype=np.float32)


def pooled_by_hand():
    """Average pooling instead of max pooling."""
    return [[1.5, 1.75],
            [2.25, 2.75]]

# %% [solution 2.4]
def windows_containing_2_2():
    """How many 3x3/2 windows of a 7x7 map contain pixel (2, 2)."""
    return 2 * 2           # rows 0-2 and 2-4 contain row 2; likewise for the columns

# %% [solution 2.5]
def gap_head_params(C, K):
    """Weights and biases of the Dense layer after global average pooling of C maps."""
    return C * K + K

# %% [wrong 2.2]
def alexnet_last_pool_size():
    """Divides by the stride without the floor formula: 13 / 2, rounded up."""
    return 7

# %% [wrong 2.4]
def windows_containing_2_2():
    """Counts the windows along one axis only."""
    return 2

# %% [wrong 2.5]
def gap_head_params(C, K):
    """Forgets the biases."""
    return C * K
