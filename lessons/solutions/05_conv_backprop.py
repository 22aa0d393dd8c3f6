"""Reference solutions of lessons/05_conv_backprop.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 5.1]
def input_gradient(delta, w):
    """dL/dx = the full convolution of delta (OH, OW) with w (KH, KW), by loops."""
    OH, OW = delta.shape
    KH, KW = w.shape
    dx = np.zeros((OH + KH - 1, OW + KW - 1), dtype=np.result_type(delta, w))
    for m in range(dx.shape[0]):
        for n in range(dx.shape[1]):
            for u in range(KH):
                for v in range(KW):
                    if 0 <= m - u < OH and 0 <= n - v < OW:    # delta is zero outside
                        dx[m, n] += delta[m - u, n - v] * w[u, v]
    return dx

# %% [wrong 5.1]
def input_gradient(delta, w):
    """The full *correlation* of delta with the unrotated w: the pasted kernels come out flipped."""
    KH, KW = w.shape
    return correlate2d(np.pad(delta, ((KH - 1, KH - 1), (KW - 1, KW - 1))), w)

# %% [solution 5.2]
def gradient_shapes():
    """delta's shape followed by W.grad's, as one tuple of 8 ints."""
    return (2, 8, 12 - 5 + 1, 12 - 5 + 1) + (8, 3, 5, 5)

# %% [solution 5.3]
def filter_gradient_1d():
    """dL/dw for x = [1, 2, 3, 4], w = [1, -1], delta = [1, 0, 2]: two numbers."""
    return [1 * 1 + 0 * 2 + 2 * 3, 1 * 2 + 0 * 3 + 2 * 4]

# %% [solution 5.4]
def input_gradient_1d():
    """dL/dx for the example of exercise 5.3: four numbers."""
    return [1 * 1, 0 * 1 + 1 * (-1), 2 * 1 + 0 * (-1), 2 * (-1)]

# %% [wrong 5.4]
def input_gradient_1d():
    """Correlates delta with w instead of convolving: w is not flipped."""
    return [1 * (-1), 1 * 1 + 0 * (-1), 0 * 1 + 2 * (-1), 2 * 1]

# %% [solution 5.5]
def dilated_size():
    """The side of the dilated delta for a 2x2 output and stride 2."""
    return (2 - 1) * 2 + 1

# %% [wrong 5.2]
def gradient_shapes():
    """Gives delta the input's spatial size."""
    return (2, 8, 12, 12) + (8, 3, 5, 5)

# %% [wrong 5.3]
def filter_gradient_1d():
    """Multiplies delta by the kernel instead of by the input."""
    return [1 * 1 + 0 * 1 + 2 * 1, 1 * -1 + 0 * -1 + 2 * -1]

# %% [wrong 5.5]
def dilated_size():
    """Inserts s zeros between the entries instead of s - 1."""
    return (2 - 1) * 3 + 1
