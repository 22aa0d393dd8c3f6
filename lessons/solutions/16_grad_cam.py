"""Reference solutions of lessons/16_grad_cam.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 16.1]
def score_gradient(model, x, c, layer):
    """(A, dA): layer `layer`'s output and d y^c / d A, each (N, K, h, w)."""
    logits = model.forward(x, training=False, record=True)          # (N, classes)
    dy = np.zeros_like(logits)
    dy[:, c] = 1                                                     # d y^c / d logits
    model.backward(dy)
    return model.activations[layer], model.gradients[layer]

# %% [wrong 16.1]
def score_gradient(model, x, c, layer):
    """Starts backward from the softmax probabilities instead of a one-hot dy."""
    logits = model.forward(x, training=False, record=True)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    model.backward(e / e.sum(axis=1, keepdims=True))
    return model.activations[layer], model.gradients[layer]

# %% [solution 16.2]
def grad_cam_map(A, dA):
    """L^c (h, w) = ReLU(sum_k alpha_k A_k), alpha_k = mean over (i, j) of dA_k."""
    alpha = dA.mean(axis=(1, 2))                                     # (K,)
    return np.maximum((alpha[:, None, None] * A).sum(axis=0), 0)     # (h, w)

# %% [wrong 16.2]
def grad_cam_map(A, dA):
    """Drops the ReLU and weights by the absolute gradient: maps that lower the score count too."""
    alpha = np.abs(dA).mean(axis=(1, 2))
    return (alpha[:, None, None] * A).sum(axis=0)

# %% [solution 16.3]
def upsample_nearest(cam, factor):
    """(h, w) -> (h * factor, w * factor), each value repeated in a factor x factor block."""
    return np.repeat(np.repeat(cam, factor, axis=0), factor, axis=1)

# %% [wrong 16.3]
def upsample_nearest(cam, factor):
    """np.tile repeats the whole map side by side instead of each value."""
    return np.tile(cam, (factor, factor))

# %% [solution 16.4]
def cam_sides(H):
    """(side of layer 4's maps, side of layer 5's maps) for an H x H input."""
    after_first_pool = H // 2
    return after_first_pool, after_first_pool // 2

# %% [wrong 16.4]
def cam_sides(H):
    """Rounds the halvings up."""
    return -(-H // 2), -(-H // 4)
