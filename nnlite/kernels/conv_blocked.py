"""Conv2D's fast path: the products of :class:`nnlite.conv.Conv2D`, a block of samples at a time.

:meth:`Conv2D.forward <nnlite.conv.Conv2D.forward>` and ``backward`` read as the
math: one column matrix for the whole batch, one product per group. That matrix
is ``C*KH*KW`` times larger than the input (118 MB for the MIAS CNN's second
conv at batch 64). This module computes exactly the same sums, but unfolds the
batch a block of samples at a time, so that a block's columns and output rows
stay in the CPU cache between im2col, the matrix products and col2im, and no
buffer grows with the batch; ``tests/test_kernels.py`` holds it equal to the
plain path. Conv2D calls it unless the plain references are forced
(:func:`nnlite.kernels.use_reference`, ``NNLITE_KERNELS=reference``).

Measured on the MIAS CNN at batch 64 (2 cores), against one column matrix for
the whole batch kept from forward to backward: conv2 forward 43 -> 27 ms and
backward (rebuilding the columns) 60 -> 51 ms, conv1 forward + backward 24 ->
15 ms, and 118 MB less memory.

Shape notation: see :mod:`nnlite.layer`; ``G`` groups, ``K = C/G*KH*KW`` rows of
the columns per group, ``Fg = F/G`` filters per group, ``n`` samples in a block.
"""
from __future__ import annotations

from ..backend import device_of, get_array_module
from ..functional import dilated_output_size
from .dispatch import col2im, im2col

#: Bytes of work buffers per block of samples. The batch is processed in blocks whose
#: columns plus output rows (``(C*KH*KW + F) * OH*OW`` values a sample) take about this
#: much: on the CPU they then stay in the cache between im2col, the products and col2im.
#: 4 MB on the CPU: against 8 MB, interleaved training steps (2 threads) took mias_cnn@64
#: 199 vs 207 ms, reduced_alexnet@128 195 vs 200 ms, alexnet@8 430 vs 440 ms; 2 MB was no
#: better, 16 and 32 MB worse. (A batch that fits in one block is not split at all.)
COLUMN_BLOCK_BYTES = {"cpu": 4 << 20, "gpu": 256 << 20}

#: A batch whose columns and output rows fit in this many bytes (about the CPU's
#: last-level cache) is not split: one block makes fewer, larger matrix products and
#: keeps its columns from forward to backward (reduced AlexNet's grouped conv2 at
#: batch 32, 19 MB: about 12 ms for forward + backward in one block, 18 ms in three).
SINGLE_BLOCK_BYTES = {"cpu": 24 << 20, "gpu": 1 << 30}

#: A sample is a block by itself when its columns have at most this many rows
#: (``C/G*KH*KW``: a first layer on a one- to three-channel image; None: never) and its
#: output plane at least :data:`ONE_SAMPLE_MIN_POSITIONS` positions. One sample's output
#: rows ``(F, OH*OW)`` are ``y[n]`` itself, NCHW: forward writes the products straight into
#: ``y`` and backward reads ``dy[n]`` as it is, with no transposing pass either way, which
#: for such thin columns costs more than the products. Measured (CPU, 2 threads,
#: interleaved, against 4 MB blocks): Conv2D 1->16 3x3 on 64x64 at batch 32 forward 0.73,
#: backward 0.48 of the time; reduced AlexNet@128's conv1 (5x5/2, 32x32 out) forward +
#: backward 0.54-0.83; the MIAS CNN's conv1 (5x5, 48x48) forward 0.90. With more rows it
#: did not pay: 32->32 3x3 on 32x32 took 1.28x (forward) and 1.16x (backward), 16->16 3x3
#: on 16x16 1.46x in backward (many small products), the MIAS CNN's conv2 0.98x.
ONE_SAMPLE_MAX_ROWS = {"cpu": 32, "gpu": None}
ONE_SAMPLE_MIN_POSITIONS = 256


def sample_blocks(a, N: int, C: int, F: int, KH: int, KW: int, OH: int, OW: int,
                  groups: int = 1) -> list:
    """``(start, stop)`` ranges of samples processed together, of (nearly) equal sizes.

    One sample a block for thin columns on a large output plane (:data:`ONE_SAMPLE_MAX_ROWS`,
    :data:`ONE_SAMPLE_MIN_POSITIONS`); otherwise a block's columns and output rows take
    about :data:`COLUMN_BLOCK_BYTES`, or the whole batch is one block if it fits in
    :data:`SINGLE_BLOCK_BYTES`. ``a`` is any array of the batch (its device and dtype set
    the sizes).
    """
    per_sample = (C * KH * KW + F) * OH * OW * a.dtype.itemsize
    device = device_of(a)
    max_rows = ONE_SAMPLE_MAX_ROWS[device]
    if max_rows is not None and C // groups * KH * KW <= max_rows \
            and OH * OW >= ONE_SAMPLE_MIN_POSITIONS:
        return [(n, n + 1) for n in range(N)]
    if N * per_sample <= SINGLE_BLOCK_BYTES[device]:
        return [(0, N)] if N else []
    step = max(1, COLUMN_BLOCK_BYTES[device] // per_sample)
    count = -(-N // step)                                    # ceil(N / step) blocks
    return [(N * i // count, N * (i + 1) // count) for i in range(count)]


def conv2d_forward(x_padded, W, b, stride: tuple, dilation: tuple, groups: int,
                   keep_cols: bool):
    """``y`` of :meth:`nnlite.conv.Conv2D.forward` for the padded input, in blocks of samples.

    Args:
        x_padded: ``(N, C, Hp, Wp)``; W: ``(F, C/G, KH, KW)``; b: ``(F,)`` or None.
        keep_cols: keep the columns for backward when the batch is one block.

    Returns:
        ``(y, kept)``: y ``(N, F, OH, OW)``, and ``kept``, a list holding the one block's
        columns ``(C*KH*KW, N*OH*OW)`` (when kept) or empty. :func:`conv2d_backward` takes
        them out of the list and reuses their buffer, so they serve one backward.
    """
    xp = get_array_module(x_padded)
    N, C, Hp, Wp = x_padded.shape
    F, _, KH, KW = W.shape
    (SH, SW), (DH, DW), G = stride, dilation, groups
    OH, OW = dilated_output_size(Hp, KH, SH, DH), dilated_output_size(Wp, KW, SW, DW)
    K, Fg = C // G * KH * KW, F // G
    W_rows = W.reshape(F, K)                                    # (F, C/G*KH*KW)
    y = xp.empty((N, F, OH, OW), dtype=x_padded.dtype)
    blocks = sample_blocks(x_padded, N, C, F, KH, KW, OH, OW, G)
    kept = []
    for start, stop in blocks:
        n = stop - start
        cols = im2col(x_padded[start:stop], KH, KW, SH, SW, DH, DW)   # (C*KH*KW, n*OH*OW)
        # (F, n*OH*OW); for one sample that is y[start] itself, (F, OH*OW)
        y_rows = y[start].reshape(F, OH * OW) if n == 1 else \
            xp.empty((F, n * OH * OW), dtype=x_padded.dtype)
        for g in range(G):                                            # one product per group
            xp.matmul(W_rows[g * Fg:(g + 1) * Fg], cols[g * K:(g + 1) * K],
                      out=y_rows[g * Fg:(g + 1) * Fg])
        if n == 1:
            if b is not None:
                y_rows += b.reshape(F, 1)
            continue
        y_block = y_rows.reshape(F, n, OH, OW).transpose(1, 0, 2, 3)  # (n, F, OH, OW) view
        if b is not None:                                             # transpose and bias in one pass
            xp.add(y_block, b.reshape(1, F, 1, 1), out=y[start:stop])
        else:
            y[start:stop] = y_block
        del y_rows, y_block
    if keep_cols and len(blocks) == 1:
        kept.append(cols)
    return y, kept


def conv2d_backward(dy, x_padded, kept: list, W, need_dW: bool, stride: tuple,
                    dilation: tuple, groups: int, pads: tuple, x_padded_shape: tuple,
                    need_dx: bool = True):
    """``(dx, dW, db)`` of :meth:`nnlite.conv.Conv2D.backward`, in blocks of samples.

    Args:
        dy: ``(N, F, OH, OW)``, not written to.
        x_padded: the padded input (needed only for ``dW``; None when W is frozen).
        kept: the list :func:`conv2d_forward` returned; its columns are taken out and
            their buffer becomes ``dcols`` (a second backward rebuilds them from
            ``x_padded``).
        need_dW: compute ``dW`` (else it is None).
        pads: ``(top, bottom, left, right)``; x_padded_shape: ``(N, C, Hp, Wp)``.
        need_dx: compute ``dx`` (else it is None, and neither ``dcols`` nor col2im is computed).

    Returns:
        dx ``(N, C, H, W)`` or None, dW ``(F, C/G, KH, KW)`` or None, db ``(F,)``.
    """
    xp = get_array_module(dy)
    N, F, OH, OW = dy.shape
    _, C, Hp, Wp = x_padded_shape
    _, _, KH, KW = W.shape
    (SH, SW), (DH, DW), G = stride, dilation, groups
    K, Fg = C // G * KH * KW, F // G
    top, bottom, left, right = pads
    kept_cols = kept.pop() if kept else None

    W_rows = W.reshape(F, K)                                     # (F, C/G*KH*KW)
    dW_rows = xp.zeros_like(W_rows) if need_dW else None         # (F, C/G*KH*KW), summed over blocks
    db = xp.zeros((F,), dtype=dy.dtype)
    dx = xp.empty((N, C, Hp - top - bottom, Wp - left - right), dtype=dy.dtype) if need_dx \
        else None
    for start, stop in sample_blocks(dy, N, C, F, KH, KW, OH, OW, G):
        n = stop - start
        dy_rows = dy[start].reshape(F, OH * OW) if n == 1 else \
            xp.ascontiguousarray(dy[start:stop].transpose(1, 0, 2, 3)).reshape(
                F, n * OH * OW)                                   # (F, n*OH*OW)
        db += dy_rows.sum(axis=1)                                 # (F,)
        if need_dW:
            cols = kept_cols if kept_cols is not None else \
                im2col(x_padded[start:stop], KH, KW, SH, SW, DH, DW)    # (C*KH*KW, n*OH*OW)
            for g in range(G):                                    # (cols_g @ dy_g.T).T: the faster order
                dW_rows[g * Fg:(g + 1) * Fg] += (cols[g * K:(g + 1) * K]
                                                 @ dy_rows[g * Fg:(g + 1) * Fg].T).T
            dcols = cols                                          # dW is done with it: reuse the buffer
        if not need_dx:
            continue
        if not need_dW:
            dcols = xp.empty((C * KH * KW, n * OH * OW), dtype=dy.dtype)
        for g in range(G):                                        # dcols (C*KH*KW, n*OH*OW)
            xp.matmul(W_rows[g * Fg:(g + 1) * Fg].T, dy_rows[g * Fg:(g + 1) * Fg],
                      out=dcols[g * K:(g + 1) * K])
        dx_padded = col2im(dcols, (n, C, Hp, Wp), KH, KW, SH, SW, DH, DW)   # (n, C, Hp, Wp)
        dx[start:stop] = dx_padded[:, :, top:Hp - bottom, left:Wp - right]  # crop the padding
        del dy_rows, dcols, dx_padded
    dW = None if dW_rows is None else dW_rows.reshape(W.shape)   # (F, C/G, KH, KW)
    return dx, dW, db


__all__ = ["COLUMN_BLOCK_BYTES", "SINGLE_BLOCK_BYTES", "ONE_SAMPLE_MAX_ROWS",
           "ONE_SAMPLE_MIN_POSITIONS", "sample_blocks", "conv2d_forward",
           "conv2d_backward"]
