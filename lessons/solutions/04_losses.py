"""Reference solutions of lessons/04_losses.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 4.1]
def softmax_cross_entropy(logits, labels):
    """(mean cross-entropy of softmax(logits) against integer labels, dL/dlogits)."""
    N = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)          # every exponent <= 0
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(N), labels].mean()
    dlogits = np.exp(log_p)                                        # p
    dlogits[np.arange(N), labels] -= 1                             # p - one_hot
    return loss, dlogits / N

# %% [wrong 4.1]
def softmax_cross_entropy(logits, labels):
    """Forgets that the loss is a mean: the gradient lacks its 1/N."""
    N = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    dlogits = np.exp(log_p)
    dlogits[np.arange(N), labels] -= 1
    return -log_p[np.arange(N), labels].mean(), dlogits

# %% [solution 4.2]
def cross_entropy_07():
    """The cross-entropy of the prediction [0.7, 0.2, 0.1] for class 0."""
    return -np.log(0.7)

# %% [solution 4.3]
def bce_at_zero():
    """The binary cross-entropy of the logit 0 for the target 1."""
    return np.log(2)

# %% [solution 4.4]
def gradient_uniform_logits():
    """dL/dz for the logits [0, 0, 0, 0] and label 2 (one example)."""
    return [0.25, 0.25, 0.25 - 1, 0.25]

# %% [wrong 4.4]
def gradient_uniform_logits():
    """t - p instead of p - t: the sign is flipped."""
    return [-0.25, -0.25, 1 - 0.25, -0.25]

# %% [solution 4.5]
def mse_123():
    """nnlite's MSE of the prediction [1, 2, 3] against the targets [1, 1, 1]."""
    return (0 ** 2 + 1 ** 2 + 2 ** 2) / 3

# %% [solution 4.6]
def float32_exp_limit():
    """The z above which np.exp(np.float32(z)) is inf."""
    return np.log(np.finfo(np.float32).max)

# %% [wrong 4.6]
def float32_exp_limit():
    """The float64 limit, not float32's."""
    return np.log(np.finfo(np.float64).max)

# %% [wrong 4.2]
def cross_entropy_07():
    """log base 10 instead of the natural log."""
    return -np.log10(0.7)

# %% [wrong 4.3]
def bce_at_zero():
    """Takes sigma(0) = 0.5 as the loss."""
    return 0.5

# %% [wrong 4.5]
def mse_123():
    """The sum of squares, not the mean."""
    return 0 ** 2 + 1 ** 2 + 2 ** 2
