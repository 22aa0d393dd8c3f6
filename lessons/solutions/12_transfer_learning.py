"""Reference solutions of lessons/12_transfer_learning.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 12.1]
def freeze_from(model, gamma):
    """Freeze the top-level layers before index gamma; let every other layer train."""
    for index, layer in enumerate(model.layers):
        for p in layer.parameters():
            p.trainable = index >= gamma          # gamma is the first layer that trains

# %% [wrong 12.1]
def freeze_from(model, gamma):
    """Off by one: freezes layer gamma too (gamma read as the last frozen layer)."""
    for index, layer in enumerate(model.layers):
        for p in layer.parameters():
            p.trainable = index > gamma

# %% [solution 12.2]
def head_params(features, hidden):
    """Trainable parameters of nn.transfer.build_head((features, H, W), hidden=hidden)."""
    if hidden is None:
        return features + 1                                   # Dense(features, 1)
    return features * hidden + hidden + hidden + 1            # Dense(features, hidden), Dense(hidden, 1)

# %% [wrong 12.2]
def head_params(features, hidden):
    """Forgets the biases."""
    if hidden is None:
        return features
    return features * hidden + hidden

# %% [solution 12.3]
def trainable_from(gamma):
    """Trainable parameters of fresh_transfer_model() after nn.transfer.fine_tune(model, gamma)."""
    model = fresh_transfer_model()
    return sum(layer.count_params(trainable_only=False) for layer in model.layers[gamma:])

# %% [wrong 12.3]
def trainable_from(gamma):
    """Counts the frozen layers instead of the trained ones."""
    model = fresh_transfer_model()
    return sum(layer.count_params(trainable_only=False) for layer in model.layers[:gamma])

# %% [solution 12.4]
def changed_names(before, after):
    """Sorted names whose arrays differ in any bit between the two snapshots."""
    return sorted(name for name in before if not np.array_equal(before[name], after[name]))

# %% [wrong 12.4]
def changed_names(before, after):
    """np.allclose forgives small changes: a frozen weight must not move at all."""
    return sorted(name for name in before if not np.allclose(before[name], after[name]))
