"""Fast kernels beside the plain references: one name, the fastest implementation that fits.

The layers call the functions of this package instead of the plain references
of :mod:`nnlite.functional`; each has exactly the reference's signature and
result (``tests/test_kernels.py`` holds them equal) and picks, from its first
array argument (:mod:`nnlite.kernels.dispatch`), the CUDA kernel for a CuPy
array (:mod:`nnlite.kernels.gpu`), the Numba kernel for a NumPy float array
(:mod:`nnlite.kernels.cpu`), or the reference:

=======================  ===============================================  ======================
function                 reference (the definition)                       used by
=======================  ===============================================  ======================
``im2col``               :func:`nnlite.functional.im2col`                 ``Conv2D`` (fast path)
``col2im``               :func:`nnlite.functional.col2im`                 ``Conv2D`` (fast path)
``max_pool_forward``     :func:`nnlite.functional.max_pool_forward`       ``MaxPool2D.forward``
``max_pool_backward``    :func:`nnlite.functional.max_pool_backward`      ``MaxPool2D.backward``
``lrn_forward``          :func:`nnlite.functional.lrn_forward`            ``LocalResponseNorm``
``lrn_backward``         :func:`nnlite.functional.lrn_backward`           ``LocalResponseNorm``
``batch_norm_forward``   :func:`nnlite.functional.batch_norm_forward`     ``BatchNorm1D``,
                                                                          ``BatchNorm2D``
``batch_norm_backward``  :func:`nnlite.functional.batch_norm_backward`    (training; no CUDA
                                                                          kernel)
``adam_update``          :func:`nnlite.functional.adam_update`            ``Adam.step`` (Numba on
                                                                          the CPU, CUDA on the GPU)
=======================  ===============================================  ======================

2x2/2 and 3x3/2 ``MaxPool2D`` in training on the Numba path take ``max_pool_forward_argmax``
(the maxima and each window's argmax) and ``max_pool_backward_argmax`` (dx from
dy and the argmax, no search) instead; ``max_pool_argmax_available`` says when.
Tests hold that pair equal to the two max-pool references.

:mod:`nnlite.kernels.conv_blocked` is Conv2D's fast path: the layer's products,
computed a block of samples at a time (``conv2d_forward``, ``conv2d_backward``).

Forcing the plain references (lessons that step through them, tests that
compare, or a machine where Numba misbehaves): ``NNLITE_KERNELS=reference`` in
the environment, read at every call, or ``nnlite.kernels.use_reference(True)``
(returns the previous setting; ``use_reference(None)`` follows the environment
again). :func:`backend_for` says which implementation an array would get.

Imports run one way: layers -> kernels -> functional; nothing here imports a
layer module.
"""
from __future__ import annotations

from . import conv_blocked
from .dispatch import (REFERENCES, _cpu, _gpu, adam_update, backend_for, batch_norm_backward,
                       batch_norm_forward, col2im, im2col, lrn_backward, lrn_forward,
                       max_pool_argmax_available,
                       max_pool_backward, max_pool_backward_argmax, max_pool_forward,
                       max_pool_forward_argmax, reference_forced, use_reference)

__all__ = ["use_reference", "reference_forced", "backend_for", "REFERENCES", "conv_blocked",
           "im2col", "col2im", "max_pool_forward", "max_pool_backward",
           "max_pool_argmax_available", "max_pool_forward_argmax", "max_pool_backward_argmax",
           "lrn_forward", "lrn_backward", "batch_norm_forward", "batch_norm_backward",
           "adam_update"]
