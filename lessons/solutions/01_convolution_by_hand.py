"""Reference solutions of lessons/01_convolution_by_hand.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 1.1]
def correlate2d_valid(x, w):
    """Valid 2-D cross-correlation with explicit loops.

    x: (H, W) image, w: (KH, KW) kernel  ->  y: (H - KH + 1, W - KW + 1), with
    y[i, j] = sum_u sum_v w[u, v] * x[i + u, j + v]
    """
    H, W = x.shape
    KH, KW = w.shape
    OH, OW = H - KH + 1, W - KW + 1
    y = np.zeros((OH, OW), dtype=x.dtype)
    for i in range(OH):                  # every output row ...
        for j in range(OW):              # ... and column is one placement of the kernel
            total = 0.0
            for u in range(KH):          # the weighted sum over the KH x KW window
                for v in range(KW):
                    total += w[u, v] * x[i + u, j + v]
            y[i, j] = total
    return y

# %% [wrong 1.1]
def correlate2d_valid(x, w):
    """A true convolution (the kernel flipped): not what Conv2D computes."""
    H, W = x.shape
    KH, KW = w.shape
    y = np.zeros((H - KH + 1, W - KW + 1), dtype=x.dtype)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] = np.sum(w[::-1, ::-1] * x[i:i + KH, j:j + KW])
    return y

# %% [solution 1.2]
def output_size(N, f, s, p):
    """The number of kernel placements along an axis of N pixels (an int)."""
    return (N - f + 2 * p) // s + 1

# %% [wrong 1.2]
def output_size(N, f, s, p):
    """Forgets the floor: a fraction when the stride does not divide N - f + 2p."""
    return (N - f + 2 * p) / s + 1

# %% [solution 1.3]
def same_and_full_padding(f):
    """(p_same, p_full) for an odd kernel size f and stride 1."""
    return (f - 1) // 2, f - 1

# %% [solution 1.4]
def conv_params(C, F, f):
    """The number of weights and biases of nn.Conv2D(C, F, f)."""
    return F * (C * f * f + 1)

# %% [solution 1.5]
def transposed_kernel_output():
    """y[0, 2] for the T image and the transposed lecture kernel (a number)."""
    return -1 * 0 + 2 * 3 + 0 * 1      # kernel rows times the window's row sums 0, 3, 1

# %% [wrong 1.3]
def same_and_full_padding(f):
    """Pads by the whole kernel for "same": the image grows by f - 1 instead."""
    return f - 1, f - 1

# %% [wrong 1.4]
def conv_params(C, F, f):
    """Forgets the biases."""
    return F * C * f * f

# %% [wrong 1.5]
def transposed_kernel_output():
    """The untransposed kernel's y[0, 2] (the lecture's map), not the transposed one's."""
    return 3
