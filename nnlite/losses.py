"""Loss functions: the scalar being minimised and its gradient for backprop.

A loss is called on the network output and the targets and returns both the
value and the gradient of that value with respect to the network output::

    value, dlogits = loss(logits, target)   # value: Python float
    model.backward(dlogits)                 # dlogits: same shape and dtype as logits

The value is a **mean over the batch**, so ``dlogits`` already carries the
``1/N`` factor and the learning rate does not depend on the batch size.

Cross-entropy losses take *logits* (the raw scores before softmax or sigmoid)
and fuse the activation with the logarithm: ``log(softmax(z))`` is computed as
``z - logsumexp(z)`` and ``log(sigmoid(z))`` as ``-softplus(-z)``, so nothing
overflows even for logits of 1e4, and the gradient takes its famous simple
form ``softmax(z) - t`` (resp. ``sigmoid(z) - t``). The model therefore ends
with a plain ``Dense`` layer, not a ``Softmax``/``Sigmoid`` layer.

Class weights follow PyTorch: with weights the value is the *weighted* mean
``sum_i w_i l_i / sum_i w_i`` (not ``/ N``), so multiplying all weights by a
constant changes nothing. The stable log-softmax and sigmoid are those of
:mod:`nnlite.functional`, shared with the activation layers.

Errors: a wrong shape, a label out of range or a NaN/inf input raises
``ValueError`` naming the loss and what was expected and received. The
gradient is in the dtype of the logits even for integer (int64) labels.
"""
from __future__ import annotations

import numpy

from .backend import get_array_module
from .functional import log_softmax, sigmoid


class Loss:
    """Base class: input checks shared by every loss.

    Subclasses implement ``__call__(pred, target) -> (value, dpred)`` and
    ``get_config()`` (constructor arguments, JSON-serialisable).
    """

    def __call__(self, pred, target):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------ helpers
    @property
    def name(self) -> str:
        return type(self).__name__

    def _check_pred(self, z, what: str, ndims=(2,)):
        """``z`` must be a float32/float64 array of one of ``ndims`` ranks, finite, N >= 1."""
        if not (hasattr(z, "shape") and hasattr(z, "dtype")):
            raise ValueError(f"{self.name} expected {what} as an array, got {type(z).__name__}")
        xp = get_array_module(z)
        if z.dtype not in (numpy.dtype("float32"), numpy.dtype("float64")):
            raise ValueError(f"{self.name} expected float32 or float64 {what}, got {z.dtype}")
        if z.ndim not in ndims or z.shape[0] == 0:
            raise ValueError(f"{self.name} expected {what}, got shape {tuple(z.shape)}")
        if not bool(xp.isfinite(z).all()):
            raise ValueError(f"{self.name} got non-finite values (NaN or inf) in its input "
                             f"{tuple(z.shape)}: check the model (learning rate too high?)")

    def _as_float_target(self, target, z, what: str):
        """Targets as an array of ``z``'s dtype and shape; (N,) is accepted for (N, 1)."""
        xp = get_array_module(z)
        t = xp.asarray(target)
        if t.dtype.kind not in "biuf":
            raise ValueError(f"{self.name} expected numeric targets, got dtype {t.dtype}")
        if t.shape != z.shape:
            if z.ndim == 2 and z.shape[1] == 1 and t.shape == (z.shape[0],):
                t = t.reshape(z.shape)  # (N,) labels for a one-unit output: unambiguous
            else:
                raise ValueError(f"{self.name} expected targets of shape {tuple(z.shape)} "
                                 f"({what}), got {tuple(t.shape)}")
        t = t.astype(z.dtype, copy=False)
        if not bool(xp.isfinite(t).all()):
            raise ValueError(f"{self.name} got non-finite values (NaN or inf) in its targets")
        return t

    def _check_class_weights(self, class_weights, num_classes: int, like):
        """Class weights as a (K,) array of ``like``'s dtype, non-negative."""
        xp = get_array_module(like)
        w = xp.asarray(class_weights, dtype=like.dtype)
        if w.shape != (num_classes,):
            raise ValueError(f"{self.name} expected class_weights of shape ({num_classes},), "
                             f"one weight per class, got {tuple(w.shape)}")
        if not bool(xp.isfinite(w).all()) or bool((w < 0).any()):
            raise ValueError(f"{self.name} class_weights must be finite and >= 0")
        return w


def _weights_to_list(w):
    return None if w is None else [float(v) for v in numpy.asarray(w).reshape(-1)]


class SoftmaxCrossEntropy(Loss):
    r"""Softmax followed by cross-entropy, fused, on logits.

    For logits ``z`` of shape (N, K) and a target distribution ``t`` per row::

        log p_ik = z_ik - logsumexp_k(z_i)              (log-softmax, stable)
        l_i      = - sum_k t_ik log p_ik                (cross-entropy)
        L        = (1/N) sum_i l_i                      (mean over the batch)
        dL/dz_ik = (p_ik - t_ik) / N                    (when sum_k t_ik = 1)

    ``logsumexp(z) = m + log sum_k exp(z_k - m)`` with ``m = max_k z_k``, so
    logits of 1e4 neither overflow nor lose the answer.

    Targets (both forms are accepted, so there is no separate "sparse" class):

    * integer labels of shape (N,), values in ``0..K-1`` (sparse categorical
      cross-entropy): ``t_i`` is the one-hot vector of ``y_i``;
    * one-hot or probability rows of shape (N, K) (categorical
      cross-entropy), non-negative. The gradient used is the exact one for
      any row sum, ``(sum_k t_ik) p_ik - t_ik``, which is ``p - t`` for rows
      that sum to one.

    Args:
        class_weights: optional (K,) non-negative weights ``w``. With ``t'`` the
            target after label smoothing (below), each (sample, class) pair counts
            with weight ``w_k t'_ik``, and the sum is divided by the weight of the
            targets *before* smoothing, ``D = sum_ik w_k t_ik`` (``sum_i w[y_i]`` for
            labels)::

                L        = sum_ik w_k t'_ik (-log p_ik) / D
                dL/dz_ij = (a_i p_ij - w_j t'_ij) / D,      a_i = sum_k w_k t'_ik

            For integer labels this is exactly PyTorch's
            ``CrossEntropyLoss(weight=w, label_smoothing=eps)``::

                L = (1 - eps) sum_i w[y_i] (-log p_{i, y_i}) / sum_i w[y_i]
                    + (eps / K) sum_i sum_c w_c (-log p_ic) / sum_i w[y_i]

            and one-hot rows give the same value as labels. (For *probability*
            rows with class weights PyTorch divides by N instead of D; nnlite
            keeps D, so that one-hot rows and labels agree.) Without weights ``D =
            N``, the plain mean.
        label_smoothing: ``eps`` in [0, 1): the target becomes
            ``t' = (1 - eps) t + eps / K`` (as in PyTorch and Keras).

    Shapes: logits (N, K) float32/float64; target (N,) integers or (N, K);
    returns ``(value: float, dlogits: (N, K) in the logits' dtype)``.
    """

    def __init__(self, class_weights=None, label_smoothing: float = 0.0):
        self.class_weights = None if class_weights is None else numpy.asarray(class_weights, dtype=float)
        if self.class_weights is not None and self.class_weights.ndim != 1:
            raise ValueError(f"SoftmaxCrossEntropy class_weights must be a 1-D sequence, "
                             f"got shape {self.class_weights.shape}")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"SoftmaxCrossEntropy label_smoothing must be in [0, 1), "
                             f"got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def get_config(self) -> dict:
        return {"class_weights": _weights_to_list(self.class_weights),
                "label_smoothing": self.label_smoothing}

    def _target_matrix(self, target, z):
        """The (N, K) target distribution ``t`` in ``z``'s dtype (before smoothing)."""
        xp = get_array_module(z)
        n, k = z.shape
        y = xp.asarray(target)
        if y.ndim == 1:  # integer labels (N,)
            if y.dtype.kind not in "iu":
                raise ValueError(f"SoftmaxCrossEntropy expected integer labels (N,) = ({n},) "
                                 f"or targets (N, K) = ({n}, {k}), got {y.dtype} of shape "
                                 f"{tuple(y.shape)}; use labels.astype(int)")
            if y.shape[0] != n:
                raise ValueError(f"SoftmaxCrossEntropy expected {n} labels (one per row of "
                                 f"the logits), got {y.shape[0]}")
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= k:
                bad = lo if lo < 0 else hi
                raise ValueError(f"SoftmaxCrossEntropy got label {bad} out of range: logits "
                                 f"have K={k} classes, so labels must be in 0..{k - 1}")
            t = xp.zeros_like(z)
            t[xp.arange(n), y] = 1
            return t
        if y.shape != z.shape:
            raise ValueError(f"SoftmaxCrossEntropy expected integer labels ({n},) or targets "
                             f"({n}, {k}), got shape {tuple(y.shape)}")
        t = self._as_float_target(y, z, "one-hot or probability rows")
        if bool((t < 0).any()):
            raise ValueError("SoftmaxCrossEntropy targets must be non-negative (one-hot or "
                             "probability rows)")
        return t

    def __call__(self, logits, target):
        self._check_pred(logits, "logits (N, K)")
        z = logits
        xp = get_array_module(z)
        n, k = z.shape
        t = self._target_matrix(target, z)                          # (N, K), before smoothing
        logp = log_softmax(z, axis=1)                               # (N, K), stable
        p = xp.exp(logp)                                            # softmax(z)

        w = None if self.class_weights is None else \
            self._check_class_weights(self.class_weights, k, z)    # (K,)
        total = float(n) if w is None else float((t * w).sum())    # D: N, or sum_i w[y_i]
        if not total > 0:
            raise ValueError("SoftmaxCrossEntropy: the class weights of this batch's "
                             "targets sum to 0, the weighted mean is undefined")
        if self.label_smoothing:                                    # t' = (1 - eps) t + eps / K
            t = t * (1.0 - self.label_smoothing) + self.label_smoothing / k
        wt = t if w is None else t * w                              # w_k t'_ik
        a = wt.sum(axis=1, keepdims=True)                           # (N, 1) a_i
        value = -float((wt * logp).sum()) / total
        dz = p * a
        dz -= wt
        dz /= total                                                 # Python float: dtype kept
        return value, dz


class BinaryCrossEntropy(Loss):
    r"""Sigmoid followed by binary cross-entropy, fused, on logits.

    For a logit ``z`` and a target ``t`` in [0, 1] (per element)::

        l  = - t log sigmoid(z) - (1 - t) log(1 - sigmoid(z))
           = max(z, 0) - z t + log(1 + exp(-|z|))           (stable form)
        dl/dz = sigmoid(z) - t
        L  = mean of l over all elements

    The stable form never exponentiates a positive number, so logits of
    +-100 or +-1e4 give finite, exact values (e.g. ``z = 1e4, t = 0`` gives
    ``l = 1e4``).

    Args:
        class_weights: optional pair ``(w0, w1)``: weight of elements whose
            target is 0 and 1 (soft targets interpolate,
            ``w = w0 (1 - t) + w1 t``). The value is then the weighted mean
            ``sum w l / sum w`` and ``dL/dz = w dl/dz / sum w``.
        pos_weight: optional ``p`` > 0 multiplying the positive term, as in
            PyTorch's ``BCEWithLogitsLoss``::

                l = p t softplus(-z) + (1 - t) softplus(z)
                dl/dz = sigmoid(z) (p t + 1 - t) - p t

            A scalar, or one value per column for (N, M) multi-label logits.

    Shapes: logits (N,), (N, 1) or (N, M) (M independent binary outputs);
    targets of the same shape (or (N,) for (N, 1) logits), floats in [0, 1],
    integers or booleans. Returns ``(value: float, dlogits)`` with dlogits of
    the logits' shape and dtype; the mean is over all N*M elements.
    """

    def __init__(self, class_weights=None, pos_weight=None):
        self.class_weights = None if class_weights is None else numpy.asarray(class_weights, dtype=float)
        if self.class_weights is not None and (self.class_weights.shape != (2,)
                                               or (self.class_weights < 0).any()):
            raise ValueError(f"BinaryCrossEntropy class_weights must be a pair (w0, w1) >= 0, "
                             f"got {class_weights!r}")
        self.pos_weight = None if pos_weight is None else numpy.asarray(pos_weight, dtype=float)
        if self.pos_weight is not None and (self.pos_weight.ndim > 1 or not (self.pos_weight > 0).all()):
            raise ValueError(f"BinaryCrossEntropy pos_weight must be a positive scalar or a "
                             f"1-D array (one per column), got {pos_weight!r}")

    def get_config(self) -> dict:
        pw = self.pos_weight
        return {"class_weights": _weights_to_list(self.class_weights),
                "pos_weight": None if pw is None else (float(pw) if pw.ndim == 0 else _weights_to_list(pw))}

    def __call__(self, logits, target):
        self._check_pred(logits, "logits (N,) or (N, M)", ndims=(1, 2))
        z = logits
        xp = get_array_module(z)
        t = self._as_float_target(target, z, "targets in [0, 1]")
        if bool((t < 0).any()) or bool((t > 1).any()):
            raise ValueError("BinaryCrossEntropy targets must lie in [0, 1]")

        e = xp.exp(-xp.abs(z))                          # in (0, 1]: never overflows
        softplus = xp.maximum(z, 0) + xp.log1p(e)       # softplus(z) = log(1 + exp(z))
        sig = sigmoid(z)                                # stable on both sides
        if self.pos_weight is None:
            l = softplus - z * t                        # = t softplus(-z) + (1-t) softplus(z)
            dl = sig - t
        else:
            pw = xp.asarray(self.pos_weight, dtype=z.dtype)
            if pw.ndim == 1 and (z.ndim != 2 or pw.shape[0] != z.shape[1]):
                raise ValueError(f"BinaryCrossEntropy pos_weight has {pw.shape[0]} values but "
                                 f"the logits have shape {tuple(z.shape)} (need (N, M) with "
                                 f"M = {pw.shape[0]})")
            pt = pw * t
            l = pt * (softplus - z) + (1 - t) * softplus   # softplus(-z) = softplus(z) - z
            dl = sig * (pt + (1 - t)) - pt

        if self.class_weights is None:
            total = float(z.size)
            return float(l.sum()) / total, dl / total
        w0, w1 = (float(v) for v in self.class_weights)
        w = t * (w1 - w0) + w0                          # per-element weight, z's dtype
        total = float(w.sum())
        if not total > 0:
            raise ValueError("BinaryCrossEntropy: the class weights of this batch's targets "
                             "sum to 0, the weighted mean is undefined")
        dl *= w
        dl /= total
        return float((w * l).sum()) / total, dl


class MSE(Loss):
    r"""Mean squared error over all elements.

    For predictions ``y`` and targets ``t`` of shape (N, D) (or any shape
    with the batch first)::

        L     = 1/(N*D) sum_ij (y_ij - t_ij)^2
        dL/dy = 2 (y - t) / (N*D)

    This is the mean over every element (PyTorch's and Keras' convention),
    without the factor 1/2 that some textbooks put in front to cancel the 2.

    Shapes: pred of any shape with N >= 1, float32/float64; target of the
    same shape (or (N,) for (N, 1) pred). Returns ``(value: float, dpred)``
    with dpred of pred's shape and dtype.
    """

    def __call__(self, pred, target):
        self._check_pred(pred, "predictions (N, ...)", ndims=range(1, 33))
        t = self._as_float_target(target, pred, "the predictions' shape")
        diff = pred - t
        total = float(pred.size)
        value = float((diff * diff).sum()) / total
        diff *= 2.0 / total
        return value, diff
