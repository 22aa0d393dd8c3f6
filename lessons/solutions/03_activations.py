"""Reference solutions of lessons/03_activations.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 3.1]
def sigmoid_slope_at_0():
    """sigma'(0)."""
    return 0.5 * (1 - 0.5)

# %% [wrong 3.1]
def sigmoid_slope_at_0():
    """sigma(0) itself, not its slope."""
    return 0.5

# %% [solution 3.2]
def leaky_slope_at_minus_3():
    """The derivative of LeakyReLU(0.1) at x = -3."""
    return 0.1

# %% [solution 3.3]
def five_sigmoids_factor():
    """The largest factor 5 sigmoid derivatives in a row can multiply a gradient by."""
    return 0.25 ** 5

# %% [solution 3.4]
def tanh_from_sigmoid(x):
    """tanh(x), element-wise, computed from the sigmoid formula only."""
    return 2 / (1 + np.exp(-2 * x)) - 1

# %% [wrong 3.4]
def tanh_from_sigmoid(x):
    """2 sigma(x) - 1: the factor 2 inside the sigmoid is missing."""
    return 2 / (1 + np.exp(-x)) - 1

# %% [solution 3.5]
class SiLU(nn.Layer):
    """y = x * sigmoid(x), element-wise; dx = dy * f'(x)."""

    def forward(self, x, training=False):
        self.x = x
        self.s = 1 / (1 + np.exp(-x))                 # sigma(x), kept for backward
        return x * self.s

    def backward(self, dy):
        # f'(x) = sigma(x) + x sigma(x) (1 - sigma(x))   (product rule)
        return dy * (self.s + self.x * self.s * (1 - self.s))

# %% [wrong 3.5]
class SiLU(nn.Layer):
    """Forgets the product rule: f'(x) taken as sigma(x)."""

    def forward(self, x, training=False):
        self.s = 1 / (1 + np.exp(-x))
        return x * self.s

    def backward(self, dy):
        return dy * self.s

# %% [wrong 3.2]
def leaky_slope_at_minus_3():
    """The leaky ReLU's value at -3, not its slope."""
    return -0.3

# %% [wrong 3.3]
def five_sigmoids_factor():
    """Adds the five slopes instead of multiplying them."""
    return 5 * 0.25
