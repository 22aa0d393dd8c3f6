"""Reference solutions of lessons/08_small_cnn_end_to_end.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 8.1]
def recall(cm, k):
    """The recall of class k: the share of the true members of k predicted as k."""
    cm = np.asarray(cm)
    return cm[k, k] / cm[k].sum()

# %% [wrong 8.1]
def recall(cm, k):
    """The column instead of the row: that is the precision."""
    cm = np.asarray(cm)
    return cm[k, k] / cm[:, k].sum()

# %% [solution 8.2]
def second_conv_params():
    """The number of weights and biases of Conv2D(8, 16, 3)."""
    return 16 * (8 * 3 * 3 + 1)

# %% [solution 8.3]
def second_pool_shape():
    """(C, H, W) after the second MaxPool2D, for one 16x16 grey image."""
    return (16, 16 // 2 // 2, 16 // 2 // 2)

# %% [solution 8.4]
def flatten_features(size):
    """The length of Flatten's output for size x size grey images."""
    return 16 * (size // 2 // 2) * (size // 2 // 2)

# %% [wrong 8.4]
def flatten_features(size):
    """Forgets the 16 channels."""
    return (size // 4) ** 2

# %% [wrong 8.2]
def second_conv_params():
    """Forgets the biases."""
    return 16 * 8 * 3 * 3

# %% [wrong 8.3]
def second_pool_shape():
    """Only one pooling counted."""
    return (16, 8, 8)
