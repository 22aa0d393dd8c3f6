"""Reference solutions of lessons/11_transposed_convolution.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 11.1]
def conv_matrix(w, H, W, stride=1, padding=0):
    """The (OH*OW, H*W) matrix M with conv(x).reshape(-1) == M @ x.reshape(-1)."""
    KH, KW = w.shape
    OH = (H - KH + 2 * padding) // stride + 1
    OW = (W - KW + 2 * padding) // stride + 1
    M = np.zeros((OH * OW, H * W))
    for i in range(OH):
        for j in range(OW):
            for u in range(KH):
                for v in range(KW):
                    r, c = i * stride + u - padding, j * stride + v - padding   # input pixel
                    if 0 <= r < H and 0 <= c < W:                               # not padding
                        M[i * OW + j, r * W + c] = w[u, v]
    return M

# %% [wrong 11.1]
def conv_matrix(w, H, W, stride=1, padding=0):
    """Places the kernel rotated by 180 degrees: a true convolution, not nnlite's correlation."""
    KH, KW = w.shape
    OH = (H - KH + 2 * padding) // stride + 1
    OW = (W - KW + 2 * padding) // stride + 1
    M = np.zeros((OH * OW, H * W))
    for i in range(OH):
        for j in range(OW):
            for u in range(KH):
                for v in range(KW):
                    r, c = i * stride + u - padding, j * stride + v - padding
                    if 0 <= r < H and 0 <= c < W:
                        M[i * OW + j, r * W + c] = w[KH - 1 - u, KW - 1 - v]
    return M

# %% [solution 11.2]
def conv_transpose_loops(x, w, stride=1):
    """y_full[h*s + u, w*s + v] += x[h, w] * w[u, v]: the scatter, no padding."""
    H, W = x.shape
    KH, KW = w.shape
    y = np.zeros(((H - 1) * stride + KH, (W - 1) * stride + KW))
    for h in range(H):
        for c in range(W):
            y[h * stride:h * stride + KH, c * stride:c * stride + KW] += x[h, c] * w
    return y

# %% [wrong 11.2]
def conv_transpose_loops(x, w, stride=1):
    """The right output size, but the stamps are not spaced by the stride."""
    H, W = x.shape
    KH, KW = w.shape
    y = np.zeros(((H - 1) * stride + KH, (W - 1) * stride + KW))
    for h in range(H):
        for c in range(W):
            y[h:h + KH, c:c + KW] += x[h, c] * w
    return y

# %% [solution 11.3]
def transpose_output_size(H, f, s, p, output_padding=0):
    """The output size of a transposed convolution along one axis."""
    return (H - 1) * s - 2 * p + f + output_padding

# %% [wrong 11.3]
def transpose_output_size(H, f, s, p, output_padding=0):
    """'Upsampling by the stride': H * s, forgetting the kernel and the padding."""
    return H * s + output_padding

# %% [solution 11.4]
def max_unpool(x, indices, H, W):
    """Scatter x (OH, OW) to the flat positions `indices` of a zero (H, W) map."""
    y = np.zeros(H * W, dtype=x.dtype)
    y[indices.reshape(-1)] = x.reshape(-1)
    return y.reshape(H, W)

# %% [wrong 11.4]
def max_unpool(x, indices, H, W):
    """Ignores the indices: every value goes to the top-left corner of its window."""
    OH, OW = x.shape
    y = np.zeros((H, W), dtype=x.dtype)
    y[::H // OH, ::W // OW] = x
    return y

# %% [solution 11.5]
def checkerboard_levels():
    """The sorted distinct values inside the kernel-3, stride-2 output of a constant input."""
    # along one axis a pixel is covered by 1 stamp (odd positions) or 2 (even ones);
    # in 2-D the counts multiply: 1*1, 1*2 = 2*1, 2*2
    return (1, 2, 4)

# %% [wrong 11.5]
def checkerboard_levels():
    """The one-axis counts only, as if the pattern were stripes."""
    return (1, 2)

# %% [solution 11.6]
def segmentation_metrics(pred, true):
    """(IoU, Dice, pixel accuracy) of two boolean masks of the same shape."""
    pred, true = np.asarray(pred, bool), np.asarray(true, bool)
    inter = np.logical_and(pred, true).sum()
    union = np.logical_or(pred, true).sum()
    sizes = pred.sum() + true.sum()
    iou = inter / union if union else 1.0
    dice = 2 * inter / sizes if sizes else 1.0
    return iou, dice, np.mean(pred == true)

# %% [wrong 11.6]
def segmentation_metrics(pred, true):
    """Dice computed as the IoU (forgets the 2 and divides by the union)."""
    pred, true = np.asarray(pred, bool), np.asarray(true, bool)
    inter = np.logical_and(pred, true).sum()
    union = np.logical_or(pred, true).sum()
    iou = inter / union if union else 1.0
    return iou, iou, np.mean(pred == true)
