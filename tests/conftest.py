"""Shared fixtures and helpers for the nnlite test suite."""
from collections import deque

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A seeded NumPy generator for test data (nnlite itself uses nnlite.backend.Generator)."""
    return np.random.default_rng(1234)


def two_blob_images(n=120, size=12, seed=0):
    """A small two-class image set that any CNN should separate: a bright square
    in the top-left quadrant (class 0) or the bottom-right quadrant (class 1),
    on noise. Returns float32 x (n, 1, size, size) and int64 labels."""
    g = np.random.default_rng(seed)
    x = g.normal(0.0, 0.3, size=(n, 1, size, size)).astype(np.float32)
    y = np.arange(n) % 2
    h = size // 2
    for i in range(n):
        r0 = g.integers(0, h - 3)
        c0 = g.integers(0, h - 3)
        if y[i] == 1:
            r0, c0 = r0 + h, c0 + h
        x[i, 0, r0:r0 + 3, c0:c0 + 3] += 1.5
    return x, y.astype(np.int64)


def flood_labels(mask, connectivity):
    """Reference labelling by breadth-first flood fill, components numbered in raster order."""
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    n = 0
    for r in range(h):
        for c in range(w):
            if mask[r, c] and not labels[r, c]:
                n += 1
                labels[r, c] = n
                queue = deque([(r, c)])
                while queue:
                    y, x = queue.popleft()
                    for dy, dx in steps:
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not labels[yy, xx]:
                            labels[yy, xx] = n
                            queue.append((yy, xx))
    return labels, n
