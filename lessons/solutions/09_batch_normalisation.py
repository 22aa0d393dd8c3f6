"""Reference solutions of lessons/09_batch_normalisation.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 9.1]
def running_update(running_mean, running_var, x, momentum):
    """The running statistics after one training batch x (N, C), PyTorch's convention."""
    m = x.shape[0]
    mu = x.mean(axis=0)                                  # (C,)
    unbiased = x.var(axis=0) * m / (m - 1)               # (C,), divides by m - 1
    return ((1 - momentum) * running_mean + momentum * mu,
            (1 - momentum) * running_var + momentum * unbiased)

# %% [wrong 9.1]
def running_update(running_mean, running_var, x, momentum):
    """Keras' variance: the biased batch variance goes into the running one."""
    return ((1 - momentum) * running_mean + momentum * x.mean(axis=0),
            (1 - momentum) * running_var + momentum * x.var(axis=0))

# %% [solution 9.2]
def batches_to_90_percent(momentum):
    """The smallest number of identical batches after which running_mean >= 0.9 * mu."""
    k, remaining = 0, 1.0                                # remaining = (1 - momentum)**k
    while 1 - remaining < 0.9:
        remaining *= 1 - momentum
        k += 1
    return k

# %% [wrong 9.2]
def batches_to_90_percent(momentum):
    """A straight line: each batch adds `momentum` of the way."""
    return round(0.9 / momentum)

# %% [solution 9.3]
class MyBatchNorm(nn.Layer):
    """Batch normalisation of (N, C) input; PyTorch's momentum convention."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        C = num_features
        self.momentum, self.eps = momentum, eps
        self.gamma = nn.Parameter(np.ones(C, dtype=np.float32), name="gamma")
        self.beta = nn.Parameter(np.zeros(C, dtype=np.float32), name="beta")
        self.running_mean = nn.Buffer(np.zeros(C, dtype=np.float32), name="running_mean")
        self.running_var = nn.Buffer(np.ones(C, dtype=np.float32), name="running_var")

    def forward(self, x, training=False):
        if training:
            mu, var = x.mean(axis=0), x.var(axis=0)                       # (C,), biased
            m = x.shape[0]
            self.running_mean.data = ((1 - self.momentum) * self.running_mean.data
                                      + self.momentum * mu).astype(self.running_mean.dtype)
            self.running_var.data = ((1 - self.momentum) * self.running_var.data
                                     + self.momentum * var * m / (m - 1)).astype(self.running_var.dtype)
        else:
            mu, var = self.running_mean.data, self.running_var.data
        self.inv_sigma = 1 / np.sqrt(var + self.eps)                      # (C,)
        self.x_hat = (x - mu) * self.inv_sigma                            # (N, C)
        self.training = training
        return self.gamma.data * self.x_hat + self.beta.data

    def backward(self, dy):
        self.beta.grad = dy.sum(axis=0)
        self.gamma.grad = (dy * self.x_hat).sum(axis=0)
        scale = self.gamma.data * self.inv_sigma                          # gamma / sigma
        if not self.training:
            return scale * dy
        return scale * (dy - dy.mean(axis=0) - self.x_hat * (dy * self.x_hat).mean(axis=0))

# %% [wrong 9.3]
class MyBatchNorm(nn.Layer):
    """Treats the batch statistics as constants in training too: dx = gamma * dy / sigma."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        C = num_features
        self.momentum, self.eps = momentum, eps
        self.gamma = nn.Parameter(np.ones(C, dtype=np.float32), name="gamma")
        self.beta = nn.Parameter(np.zeros(C, dtype=np.float32), name="beta")
        self.running_mean = nn.Buffer(np.zeros(C, dtype=np.float32), name="running_mean")
        self.running_var = nn.Buffer(np.ones(C, dtype=np.float32), name="running_var")

    def forward(self, x, training=False):
        if training:
            mu, var = x.mean(axis=0), x.var(axis=0)
            m = x.shape[0]
            self.running_mean.data = ((1 - self.momentum) * self.running_mean.data
                                      + self.momentum * mu).astype(self.running_mean.dtype)
            self.running_var.data = ((1 - self.momentum) * self.running_var.data
                                     + self.momentum * var * m / (m - 1)).astype(self.running_var.dtype)
        else:
            mu, var = self.running_mean.data, self.running_var.data
        self.inv_sigma = 1 / np.sqrt(var + self.eps)
        self.x_hat = (x - mu) * self.inv_sigma
        return self.gamma.data * self.x_hat + self.beta.data

    def backward(self, dy):
        self.beta.grad = dy.sum(axis=0)
        self.gamma.grad = (dy * self.x_hat).sum(axis=0)
        return self.gamma.data * self.inv_sigma * dy

# %% [solution 9.4]
def bias_before_batch_norm(units):
    """(gradient of the loss w.r.t. each entry of b, the number of wasted parameters)."""
    return 0.0, units

# %% [wrong 9.4]
def bias_before_batch_norm(units):
    """Right gradient, but counts the bias as useful."""
    return 0.0, 0

# %% [solution 9.5]
def batch_norm_2d_counts(C):
    """(trainable parameters, running statistics) of nn.BatchNorm2D(C)."""
    return 2 * C, 2 * C          # gamma, beta; running_mean, running_var

# %% [wrong 9.5]
def batch_norm_2d_counts(C):
    """Counts one gamma and one beta per value of a 4x4 map, not per channel."""
    return 2 * C * 16, 2 * C
