"""Reference solutions of lessons/14_whole_mammogram.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 14.1]
def stored_to_display(stored, bits, photometric):
    """Stored integers -> float values in [0, 1], tissue bright."""
    values = np.asarray(stored, dtype=np.float64) / (2 ** bits - 1)
    return 1.0 - values if photometric == "MONOCHROME1" else values

# %% [wrong 14.1]
def stored_to_display(stored, bits, photometric):
    """Divides by the allocated 16 bits, whatever BitsStored says."""
    values = np.asarray(stored, dtype=np.float64) / 65535
    return 1.0 - values if photometric == "MONOCHROME1" else values

# %% [solution 14.2]
def otsu(values, bins=256):
    """Otsu's threshold of an array of values: the k maximising w0 w1 (mu0 - mu1)^2."""
    values = np.asarray(values, dtype=np.float64).ravel()
    counts, edges = np.histogram(values, bins=bins, range=(values.min(), values.max()))
    p = counts / counts.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    between = np.full(bins, -1.0)
    for k in range(bins - 1):
        w0 = p[:k + 1].sum()
        w1 = 1.0 - w0
        if w0 <= 0 or w1 <= 0:
            continue                                     # an empty class
        mu0 = (p[:k + 1] * centres[:k + 1]).sum() / w0
        mu1 = (p[k + 1:] * centres[k + 1:]).sum() / w1
        between[k] = w0 * w1 * (mu0 - mu1) ** 2
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float(edges[best[len(best) // 2] + 1])

# %% [wrong 14.2]
def otsu(values, bins=256):
    """Maximises the class-0 probability times the mean gap, forgetting w1."""
    values = np.asarray(values, dtype=np.float64).ravel()
    counts, edges = np.histogram(values, bins=bins, range=(values.min(), values.max()))
    p = counts / counts.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    between = np.full(bins, -1.0)
    for k in range(bins - 1):
        w0 = p[:k + 1].sum()
        w1 = 1.0 - w0
        if w0 <= 0 or w1 <= 0:
            continue
        mu0 = (p[:k + 1] * centres[:k + 1]).sum() / w0
        mu1 = (p[k + 1:] * centres[k + 1:]).sum() / w1
        between[k] = w0 * (mu0 - mu1) ** 2
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float(edges[best[len(best) // 2] + 1])

# %% [solution 14.3]
def bounding_box(mask):
    """(top, bottom, left, right) of the True pixels, bottom and right exclusive; None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1

# %% [wrong 14.3]
def bounding_box(mask):
    """Inclusive ends: image[top:bottom, left:right] then loses the last row and column."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])

# %% [solution 14.4]
def breast_side(img):
    """'L' if the intensity-weighted centre of mass is in the left half, else 'R'."""
    column_mass = np.asarray(img, dtype=np.float64).sum(axis=0)        # (W,)
    total = column_mass.sum()
    if total <= 0:
        return "L"
    centre = (column_mass * (np.arange(img.shape[1]) + 0.5)).sum() / total
    return "L" if centre <= img.shape[1] / 2 else "R"

# %% [wrong 14.4]
def breast_side(img):
    """The side of the brightest pixel: a label or a marker can win."""
    column = int(np.unravel_index(np.argmax(img), img.shape)[1])
    return "L" if column < img.shape[1] / 2 else "R"
