"""Reference solutions of lessons/06_optimizers.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 6.1]
class MyRMSProp:
    """RMSProp: s <- rho s + (1 - rho) g^2, p <- p - lr g / (sqrt(s) + eps)."""

    def __init__(self, params, lr=0.001, rho=0.9, eps=1e-7):
        self.params, self.lr, self.rho, self.eps = list(params), lr, rho, eps
        self.s = [np.zeros_like(p.data) for p in self.params]

    def step(self):
        for p, s in zip(self.params, self.s):
            s[...] = self.rho * s + (1 - self.rho) * p.grad ** 2
            p.data -= self.lr * p.grad / (np.sqrt(s) + self.eps)

# %% [wrong 6.1]
class MyRMSProp:
    """Forgets the (1 - rho) in the running mean: s grows to g^2 / (1 - rho)."""

    def __init__(self, params, lr=0.001, rho=0.9, eps=1e-7):
        self.params, self.lr, self.rho, self.eps = list(params), lr, rho, eps
        self.s = [np.zeros_like(p.data) for p in self.params]

    def step(self):
        for p, s in zip(self.params, self.s):
            s[...] = self.rho * s + p.grad ** 2
            p.data -= self.lr * p.grad / (np.sqrt(s) + self.eps)

# %% [solution 6.2]
def adam_first_step():
    """Delta theta of Adam's first step, lr 0.1, g = (3, -0.01)."""
    return [-0.1, 0.1]

# %% [solution 6.3]
def momentum_terminal_step():
    """The length of a late step of SGD(lr=0.01, momentum=0.9) with g = 1 throughout."""
    return 0.01 * 1 / (1 - 0.9)

# %% [solution 6.4]
def rmsprop_first_step():
    """The length of RMSProp's first step, lr 0.01, rho 0.9."""
    return 0.01 / np.sqrt(1 - 0.9)

# %% [solution 6.5]
def largest_stable_lr():
    """The learning rate above which GD on f = 25 theta^2 / 2 diverges."""
    return 2 / 25

# %% [wrong 6.5]
def largest_stable_lr():
    """1 / curvature: the rate that reaches the minimum in one step, not the limit."""
    return 1 / 25

# %% [wrong 6.2]
def adam_first_step():
    """-lr * g: plain gradient descent's step, not Adam's."""
    return [-0.1 * 3, 0.1 * 0.01]

# %% [wrong 6.3]
def momentum_terminal_step():
    """Forgets that the velocity accumulates: the plain step."""
    return 0.01

# %% [wrong 6.4]
def rmsprop_first_step():
    """Assumes a bias correction that nnlite's RMSProp does not make: exactly lr."""
    return 0.01
