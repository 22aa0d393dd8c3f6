"""Reference solutions of lessons/07_overfitting.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 7.1]
def early_stopping_epochs(val_losses, patience):
    """(stop_epoch, best_epoch), both counted from 1, of nn.EarlyStopping(patience)."""
    best, best_epoch, wait = float("inf"), 0, 0
    for epoch, loss in enumerate(val_losses, start=1):
        if loss < best:
            best, best_epoch, wait = loss, epoch, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch, best_epoch
    return len(val_losses), best_epoch

# %% [wrong 7.1]
def early_stopping_epochs(val_losses, patience):
    """Waits for `patience + 1` epochs without a new best (old nnlite): one epoch late."""
    best, best_epoch, wait = float("inf"), 0, 0
    for epoch, loss in enumerate(val_losses, start=1):
        if loss < best:
            best, best_epoch, wait = loss, epoch, 0
        else:
            wait += 1
            if wait > patience:
                return epoch, best_epoch
    return len(val_losses), best_epoch

# %% [solution 7.2]
def beta_99_75():
    """The overfitting ratio for 99% training and 75% validation accuracy."""
    return round(0.99 / 0.75, 3)

# %% [solution 7.3]
def l2_gradient(w, lam):
    """d(lam * sum(w ** 2)) / dw."""
    return 2 * lam * w

# %% [wrong 7.3]
def l2_gradient(w, lam):
    """The textbook convention with a factor 1/2 in the penalty: half of nnlite's gradient."""
    return lam * w

# %% [solution 7.4]
def dropout_kept_output():
    """What Dropout(0.5) outputs, in training, for a kept unit whose input is 3.0."""
    return 3.0 / (1 - 0.5)

# %% [solution 7.5]
def dihedral_versions():
    """The number of distinct images from rotations by k * 90 degrees and a mirror."""
    return 4 * 2

# %% [wrong 7.2]
def beta_99_75():
    """Validation over training: the inverse ratio."""
    return round(0.75 / 0.99, 3)

# %% [wrong 7.4]
def dropout_kept_output():
    """Forgets the inverted-dropout scaling."""
    return 3.0

# %% [wrong 7.5]
def dihedral_versions():
    """Only the rotations."""
    return 4
