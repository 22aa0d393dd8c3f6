"""Losses for segmentation masks: per-pixel binary cross-entropy and soft Dice, on logits.

A segmentation network ends in one logit map per image, shape (N, 1, H, W)
(or (N, H, W)); the target is a mask of the same shape with values in
[0, 1] (1 = lesion pixel). Both losses take the *logits* (no Sigmoid layer
at the end of the model) and follow :mod:`nnlite.losses`::

    value, dlogits = loss(logits, masks)      # value: float; dlogits: logits' shape and dtype

* :class:`PixelBCE` - binary cross-entropy of every pixel, averaged over all
  N*H*W pixels; ``pos_weight`` multiplies the lesion-pixel term, because
  lesion pixels are rare (a few per cent of a patch) and an unweighted loss
  is content with predicting "background" everywhere.
* :class:`SoftDice` - ``1 - Dice`` of each image with the probabilities in
  place of the hard mask, averaged over the images: it measures overlap, so
  it does not care how many background pixels there are.
* :class:`BCEDice` - their weighted sum, the usual choice for training.

Shapes: logits (N, ...) float32/float64 with at least 2 dimensions, N >= 1;
targets of the same shape (floats in [0, 1], integers or booleans).
"""
from __future__ import annotations


from .backend import get_array_module
from .losses import Loss


def _check(loss: Loss, logits, target):
    """Logits (N, ...) and the target as an array of their dtype and shape, values in [0, 1]."""
    if not (hasattr(logits, "shape") and hasattr(logits, "dtype")):
        raise ValueError(f"{loss.name} expected logits as an array, got {type(logits).__name__}")
    loss._check_pred(logits, "logit maps (N, 1, H, W) or (N, H, W)", ndims=(2, 3, 4, 5))
    t = loss._as_float_target(target, logits, "a mask of the logits' shape")
    if bool((t < 0).any()) or bool((t > 1).any()):
        raise ValueError(f"{loss.name} targets must lie in [0, 1] (a binary or soft mask)")
    return t


def _sigmoid(z):
    """``sigmoid(z)`` without overflow, in ``z``'s dtype, and ``e = exp(-|z|)``."""
    xp = get_array_module(z)
    e = xp.exp(-xp.abs(z))                              # in (0, 1]: never overflows
    sig = (xp.where(z >= 0, 1, e) / (1 + e)).astype(z.dtype, copy=False)
    return sig, e


class PixelBCE(Loss):
    r"""Per-pixel binary cross-entropy on logits, averaged over every pixel.

    For a logit ``z`` and a target ``t`` in [0, 1] at each pixel, with
    positive-class weight ``p`` (1 when not given)::

        l     = p t softplus(-z) + (1 - t) softplus(z)
              = p t (softplus(z) - z) + (1 - t) softplus(z)
        dl/dz = sigmoid(z) (p t + 1 - t) - p t
        L     = (1 / (N H W)) sum over all pixels of l

    with the stable ``softplus(z) = max(z, 0) + log(1 + exp(-|z|))``. With
    ``p = 1`` this is ``dl/dz = sigmoid(z) - t``. The mean is over all
    elements, as in PyTorch's ``BCEWithLogitsLoss(pos_weight=p)``; ``p``
    about ``#background / #lesion`` pixels balances the two classes.

    Args:
        pos_weight: optional scalar > 0 weighting the lesion (t = 1) term.
    """

    def __init__(self, pos_weight: float | None = None):
        if pos_weight is not None and not float(pos_weight) > 0:
            raise ValueError(f"PixelBCE pos_weight must be a positive number, got {pos_weight!r}")
        self.pos_weight = None if pos_weight is None else float(pos_weight)

    def get_config(self) -> dict:
        return {"pos_weight": self.pos_weight}

    def __call__(self, logits, target):
        t = _check(self, logits, target)
        z = logits
        xp = get_array_module(z)
        sig, e = _sigmoid(z)
        softplus = xp.maximum(z, 0) + xp.log1p(e)       # log(1 + exp(z)), all (N, ...)
        p = 1.0 if self.pos_weight is None else self.pos_weight
        pt = t * p                                      # Python float: dtype kept
        l = pt * (softplus - z) + (1 - t) * softplus
        dz = sig * (pt + (1 - t)) - pt
        total = float(z.size)
        return float(l.sum()) / total, dz / total


class SoftDice(Loss):
    r"""Soft Dice loss on logits: one minus the Dice overlap of each image, averaged.

    With ``q = sigmoid(z)`` the predicted probabilities and ``t`` the mask of
    image ``i`` (sums over its pixels ``j``), and a smoothing term ``s``::

        I_i = sum_j q_ij t_ij,   Q_i = sum_j q_ij,   T_i = sum_j t_ij
        D_i = (2 I_i + s) / (Q_i + T_i + s)             (soft Dice, in (0, 1])
        L   = (1/N) sum_i (1 - D_i)

        dD_i/dq_ij = (2 t_ij (Q_i + T_i + s) - (2 I_i + s)) / (Q_i + T_i + s)^2
        dL/dz_ij   = -(1/N) dD_i/dq_ij * q_ij (1 - q_ij)

    Dice is computed **per image**, then averaged (a batch-wide Dice would
    let a large lesion hide a missed small one). ``s`` keeps the loss defined
    on an image with an empty mask: there ``D_i = s / (Q_i + s)``, which is 1
    only when nothing is predicted, so empty images push the prediction
    towards "no lesion". With hard 0/1 predictions and ``s -> 0`` it is
    ``1 - Dice``, the metric.

    Args:
        smooth: ``s`` > 0 (default 1 pixel).
    """

    def __init__(self, smooth: float = 1.0):
        if not float(smooth) > 0:
            raise ValueError(f"SoftDice smooth must be > 0, got {smooth!r}")
        self.smooth = float(smooth)

    def get_config(self) -> dict:
        return {"smooth": self.smooth}

    def __call__(self, logits, target):
        t = _check(self, logits, target)
        z = logits
        n = z.shape[0]
        axes = tuple(range(1, z.ndim))
        q, _ = _sigmoid(z)
        inter = (q * t).sum(axis=axes, keepdims=True)   # (N, 1, 1, 1) I_i
        denom = q.sum(axis=axes, keepdims=True) + t.sum(axis=axes, keepdims=True) + self.smooth
        dice = (2 * inter + self.smooth) / denom        # (N, 1, 1, 1) D_i
        dq = (2 * t * denom - (2 * inter + self.smooth)) / (denom * denom)
        dz = -(dq * (q * (1 - q))) / n
        return float((1 - dice).sum()) / n, dz.astype(z.dtype, copy=False)


class BCEDice(Loss):
    r"""``bce_weight * PixelBCE(pos_weight) + dice_weight * SoftDice(smooth)``.

    The cross-entropy gives every pixel a gradient from the first step (Dice
    alone has tiny gradients while the prediction is flat); Dice rewards
    overlap regardless of how small the lesion is. Gradients add::

        dL/dz = bce_weight dBCE/dz + dice_weight dDice/dz
    """

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0,
                 pos_weight: float | None = None, smooth: float = 1.0):
        if float(bce_weight) < 0 or float(dice_weight) < 0:
            raise ValueError(f"BCEDice weights must be >= 0, got {bce_weight}, {dice_weight}")
        self.bce_weight, self.dice_weight = float(bce_weight), float(dice_weight)
        self.bce = PixelBCE(pos_weight)
        self.dice = SoftDice(smooth)

    def get_config(self) -> dict:
        return {"bce_weight": self.bce_weight, "dice_weight": self.dice_weight,
                **self.bce.get_config(), **self.dice.get_config()}

    def __call__(self, logits, target):
        bce, dbce = self.bce(logits, target)
        dice, ddice = self.dice(logits, target)
        value = self.bce_weight * bce + self.dice_weight * dice
        return value, dbce * self.bce_weight + ddice * self.dice_weight
