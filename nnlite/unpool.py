"""Upsampling layers for decoders: MaxUnpool2D (SegNet's unpooling) and Upsample2D (nearest).

Shapes use the notation block of :mod:`nnlite.layer`. Both layers take a
small map ``x`` of size ``OH x OW`` (the size a pool produced) and return a
larger one of size ``H x W``; both act on every channel separately.
"""
from __future__ import annotations

from .backend import device_of, get_array_module, to_device
from .layer import Layer, pair
from .pooling import MaxPool2D


def _as_config(value: tuple):
    """``(2, 2) -> 2``, ``(2, 3) -> [2, 3]``: JSON-friendly and accepted by ``pair``."""
    return value[0] if value[0] == value[1] else list(value)


class MaxUnpool2D(Layer):
    """Max unpooling (SegNet): put each value back where its MaxPool2D found the maximum.

    A :class:`~nnlite.MaxPool2D` records, for every output element, the flat
    index ``h*W + w`` of the input element it selected (``pool.indices``,
    ``(N, C, OH, OW)``, PyTorch's ``return_indices`` convention). The unpool
    reads those indices and scatters its input to them; every other position
    is zero::

        y = zeros (N, C, H, W)          (H, W: the pool's input size, or output_size)
        y[n, c].flat[indices[n, c, oh, ow]] = x[n, c, oh, ow]

    Backward: ``y`` is a selection of ``x``, so each ``x`` element receives the
    gradient of the position it was written to (a gather)::

        dx[n, c, oh, ow] = dy[n, c].flat[indices[n, c, oh, ow]]

    **Overlapping pools** (stride < kernel, e.g. 3x3 with stride 2): two
    pool outputs may have selected the *same* input element, so two ``x``
    values are sent to one position. Like PyTorch on the CPU (which writes in
    order, so the later write stays; its GPU result is undefined), nnlite
    keeps **the last one in row-major (oh, ow) order** of the plane, on every
    backend. The values it drops do not affect ``y``, so their gradient is 0;
    ``backward`` gathers only for the kept ones, which makes it the exact
    derivative of this forward (a sum of the duplicates would be the other
    consistent choice, and is what the pool's own backward does with its
    ``dy``; it is not what PyTorch does here).

    The pool: ``pool`` is the MaxPool2D layer object, or its name (a str) when
    the model is being built from a config and the pool is linked later by
    :meth:`resolve_links` (``nnlite.load`` calls it). The reference is kept in
    ``self._pool``: an attribute whose name starts with ``_`` is not a
    sub-layer, so the pool's parameters (none) and caches belong to the
    container that really holds it. ``get_config()`` stores the pool's
    ``name``, so give the pool a name that is unique in the model
    (``MaxPool2D(2, name="pool1")``) or pass its dotted path. The pool must
    run ``forward`` on the current batch before the unpool does (as in an
    encoder–decoder); the unpool saves the indices it used for its backward.

    Args:
        pool: the :class:`~nnlite.MaxPool2D` whose indices it uses, or its
            name / dotted path in the model.
        output_size: ``(H, W)`` of the output, or None (default) for the size
            of the pool's last input. The indices are read as ``h*W + w`` in
            this plane, so keep the pool input's width ``W``; every index must
            lie inside it.
        name: layer name.

    Shapes: x ``(N, C, OH, OW)`` (the pool's output shape) -> y ``(N, C, H, W)``.
    """

    def __init__(self, pool, output_size=None, name: str | None = None):
        super().__init__(name)
        if isinstance(pool, MaxPool2D):
            self._pool, self.pool_name = pool, pool.name
        elif isinstance(pool, str) and pool:
            self._pool, self.pool_name = None, pool
        else:
            raise ValueError(f"MaxUnpool2D: pool must be a MaxPool2D layer or its name, got {pool!r}")
        self.output_size = None if output_size is None else pair(output_size, "output_size",
                                                                 "MaxUnpool2D")
        if self.output_size is not None and min(self.output_size) < 1:
            raise ValueError(f"MaxUnpool2D: output_size must be positive, got {output_size!r}")

    # ---------------------------------------------------------- the link
    @property
    def pool(self) -> MaxPool2D:
        """The linked MaxPool2D; RuntimeError if it has not been linked yet."""
        if self._pool is None:
            raise RuntimeError(f"{self.name} is not linked to its MaxPool2D {self.pool_name!r} yet: "
                               f"pass the pool layer itself, or call resolve_links(model)")
        return self._pool

    def resolve_links(self, root: Layer) -> None:
        """Link to the one MaxPool2D in ``root`` whose name or dotted path is ``pool_name``."""
        found = {}
        for path, layer in root.named_layers():
            if isinstance(layer, MaxPool2D) and self.pool_name in (layer.name, path):
                found.setdefault(id(layer), (path, layer))
        if len(found) != 1:
            pools = [f"{p} ({layer.name})" for p, layer in root.named_layers()
                     if isinstance(layer, MaxPool2D)]
            what = "no" if not found else f"{len(found)}"
            raise ValueError(
                f"{self.name}: {what} MaxPool2D named {self.pool_name!r} in {root.name} "
                f"(its MaxPool2D layers: {', '.join(pools) or 'none'}); give the pool a unique "
                f"name or pass its dotted path")
        (_, self._pool), = found.values()

    # ------------------------------------------------------------ helpers
    def _plane(self, pool: MaxPool2D) -> tuple:
        return self.output_size if self.output_size is not None else pool.input_shape[2:]

    @staticmethod
    def _last_writes(g):
        """Mask of the positions of ``g`` that hold the last occurrence of their value."""
        xp = get_array_module(g)
        key = g * g.size + xp.arange(g.size)           # unique keys: the sort order is fixed
        order = xp.argsort(key)
        sorted_g = g[order]
        last = xp.ones(g.size, dtype=bool)
        last[:-1] = sorted_g[:-1] != sorted_g[1:]       # the next one has another index
        keep = xp.zeros(g.size, dtype=bool)
        keep[order[last]] = True
        return keep

    # ----------------------------------------------------------- contract
    def forward(self, x, training: bool = False):
        self._check_input(x, ndim=4, what="(N, C, OH, OW)")
        pool = self.pool
        try:
            indices = pool.indices                                   # (N, C, OH, OW) int64
        except RuntimeError:
            raise RuntimeError(f"{self.name}: its MaxPool2D {pool.name!r} has not run forward yet; "
                               f"run the pool on this batch before the unpool") from None
        if tuple(x.shape) != tuple(indices.shape):
            raise ValueError(f"{self.name} expected input {tuple(indices.shape)} (the output of its "
                             f"MaxPool2D {pool.name!r}), got {tuple(x.shape)}")
        indices = to_device(indices, device_of(x))                   # a no-op on the same device
        xp = get_array_module(x)
        N, C = x.shape[:2]
        H, W = self._plane(pool)
        if self.output_size is not None and int(indices.max()) >= H * W:
            raise ValueError(f"{self.name}: output_size {self.output_size} is too small for the "
                             f"indices of {pool.name!r} (input {pool.input_shape[2:]})")
        planes = xp.arange(N * C, dtype=xp.int64).reshape(N, C, 1, 1) * (H * W)
        g = (indices + planes).reshape(-1)                           # flat index into y, (N*C*OH*OW,)
        (KH, KW), (SH, SW) = pool.kernel_size, pool.stride
        keep = self._last_writes(g) if (SH < KH or SW < KW) else None   # only overlaps repeat
        y = xp.zeros(N * C * H * W, dtype=x.dtype)
        if keep is None:
            y[g] = x.reshape(-1)
        else:
            y[g[keep]] = x.reshape(-1)[keep]
        self._cache = (g, keep, tuple(x.shape), (N, C, H, W))
        return y.reshape(N, C, H, W)

    def backward(self, dy):
        g, keep, x_shape, y_shape = self._saved()
        self._check_grad(dy, y_shape)
        dx = dy.reshape(-1)[g]                                       # gather, (N*C*OH*OW,)
        if keep is not None:
            dx = get_array_module(dy).where(keep, dx, 0)             # dropped duplicates: 0
        return dx.reshape(x_shape)

    def output_shape(self, input_shape: tuple) -> tuple:
        """``(C, H, W)``: output_size, else the pool's last input size if it produced
        ``input_shape``, else PyTorch's default ``(OH - 1)*SH - 2*PH + KH`` (which is
        smaller than the pool's input when the pool rounded down: pass output_size)."""
        if len(input_shape) != 3:
            raise ValueError(f"{self.name} expected a per-sample shape (C, OH, OW), "
                             f"got {tuple(input_shape)}")
        C, OH, OW = input_shape
        if self.output_size is not None:
            return (C,) + tuple(self.output_size)
        pool = self.pool
        try:
            pool_input = pool.input_shape[1:]                        # (C, H, W) of its last forward
        except RuntimeError:
            pool_input = None
        if pool_input is not None and pool.output_shape(pool_input) == tuple(input_shape):
            return (C,) + pool_input[1:]
        (KH, KW), (SH, SW), (PH, PW) = pool.kernel_size, pool.stride, pool.padding
        return (C, (OH - 1) * SH - 2 * PH + KH, (OW - 1) * SW - 2 * PW + KW)

    def get_config(self) -> dict:
        return {"pool": self.pool_name,
                "output_size": None if self.output_size is None else list(self.output_size),
                "name": self.name}


class Upsample2D(Layer):
    """Nearest-neighbour upsampling: repeat every pixel into an SH x SW block.

    Forward::

        y[n, c, h, w] = x[n, c, h // SH, w // SW]

    Backward: each input pixel was copied to the SH*SW outputs of its block,
    so its gradient is the sum over the block::

        dx[n, c, h, w] = sum_{0<=i<SH, 0<=j<SW} dy[n, c, h*SH + i, w*SW + j]

    (``dy.reshape(N, C, H, SH, W, SW).sum(axis=(3, 5))``). The same as
    PyTorch's ``nn.Upsample(scale_factor, mode="nearest")`` for integer scales
    and Keras' ``UpSampling2D``. It has no parameters: in a decoder it is the
    fixed alternative to a :class:`~nnlite.ConvTranspose2D` (which learns its
    upsampling) and to :class:`MaxUnpool2D` (which needs a pool's indices).

    Args:
        scale_factor: SH, SW; a positive int or a pair of them.
        mode: ``"nearest"`` (the only mode).
        name: layer name.

    Shapes: x ``(N, C, H, W)`` -> y ``(N, C, H*SH, W*SW)``.
    """

    def __init__(self, scale_factor=2, mode: str = "nearest", name: str | None = None):
        super().__init__(name)
        self.scale_factor = pair(scale_factor, "scale_factor", "Upsample2D")
        if min(self.scale_factor) < 1:
            raise ValueError(f"Upsample2D: scale_factor must be >= 1, got {scale_factor!r}")
        if mode != "nearest":
            raise ValueError(f"Upsample2D: mode must be 'nearest' (the only mode nnlite has), "
                             f"got {mode!r}")
        self.mode = mode

    def forward(self, x, training: bool = False):
        self._check_input(x, ndim=4, what="(N, C, H, W)")
        SH, SW = self.scale_factor
        self._cache = tuple(x.shape)
        return x.repeat(SH, axis=2).repeat(SW, axis=3)               # (N, C, H*SH, W*SW), new array

    def backward(self, dy):
        N, C, H, W = self._saved()
        SH, SW = self.scale_factor
        self._check_grad(dy, (N, C, H * SH, W * SW))
        return dy.reshape(N, C, H, SH, W, SW).sum(axis=(3, 5))      # (N, C, H, W)

    def output_shape(self, input_shape: tuple) -> tuple:
        if len(input_shape) != 3:
            raise ValueError(f"{self.name} expected a per-sample shape (C, H, W), "
                             f"got {tuple(input_shape)}")
        C, H, W = input_shape
        SH, SW = self.scale_factor
        return (C, H * SH, W * SW)

    def get_config(self) -> dict:
        return {"scale_factor": _as_config(self.scale_factor), "mode": self.mode, "name": self.name}
