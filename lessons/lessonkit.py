"""Helpers shared by the lesson notebooks: plot settings, ``show``, exercise checks.

Every notebook's first code cell puts the ``lessons/`` folder on ``sys.path`` and
imports this module (``import lessonkit as lk``), so the helpers live here once
instead of being pasted into eight notebooks.

Exercises
---------
An exercise is a cell the student fills in: it starts as a stub that raises
``NotImplementedError`` under a ``# TODO (exercise N.k): ...`` line. The cell
after it is the *check*, which calls the student's code and prints exactly one
verdict line::

    Exercise 1.2: not done yet - ...        (the stub still raises NotImplementedError)
    Exercise 1.2: wrong - <what differs, by how much, for which input>
    Exercise 1.2: correct

A check never raises, so "Run All" runs the whole notebook even with every
exercise undone; it returns ``True`` only when the answer is correct, and a
later cell that needs the student's function can fall back to a library version
with :func:`fallback`. The expected values come from nnlite itself, never from
the reference solutions (those live in ``lessons/solutions/``, for teachers and
for the test suite).
"""
from __future__ import annotations

import traceback

import numpy as np

FIGURE_DPI = 100       # figure resolution: 100 dpi keeps 9 pt labels readable
FONT_SIZE = 10         # default text size (titles, axes)
LABEL_SIZE = 9         # the values written into the cells of a heat map


def setup(precision: int = 4) -> None:
    """NumPy print options and Matplotlib defaults shared by every lesson."""
    import matplotlib.pyplot as plt

    np.set_printoptions(precision=precision, suppress=True, linewidth=100)
    plt.rcParams.update({"figure.dpi": FIGURE_DPI, "font.size": FONT_SIZE,
                         "legend.fontsize": LABEL_SIZE})


# --------------------------------------------------------------------- plots
def show(ax, a, title, annotate=True, cmap="gray", fmt="g", xlabel="column j", ylabel="row i"):
    """Draw a 2-D array as an image; write each value into its cell when ``annotate``.

    With a diverging map (``"coolwarm"``) the colours are symmetric around zero:
    zero is white, positive red, negative blue. ``fmt`` formats the written values
    (``"g"``, ``".2g"``, ...); they are drawn at :data:`LABEL_SIZE` points.
    """
    a = np.asarray(a)
    limits = {}
    if cmap == "coolwarm":
        lim = float(np.abs(a).max()) or 1.0
        limits = {"vmin": -lim, "vmax": lim}
    ax.imshow(a, cmap=cmap, **limits)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if annotate:
        ax.set_xticks(range(a.shape[1]))
        ax.set_yticks(range(a.shape[0]))
        for (i, j), v in np.ndenumerate(a):
            ax.text(j, i, format(float(v) + 0.0, fmt), ha="center", va="center",
                    fontsize=LABEL_SIZE,
                    bbox={"facecolor": "white", "alpha": 0.7, "pad": 1, "edgecolor": "none"})


# ----------------------------------------------------------------- exercises
NOT_DONE = "not done yet"


class Wrong(Exception):
    """Raised inside a check to say what is wrong with the answer (the message is shown)."""


def _where(exc) -> str:
    """' (line 3: `y = x @ w`)': the last line of the student's own cell in a traceback."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)       # notebook cells are
              if "ipykernel_" in f.filename or f.filename.startswith("<ipython-input")]  # these files
    if not frames:
        return ""
    frame = frames[-1]
    return f" (line {frame.lineno}: `{(frame.line or '').strip()}`)"


def run_check(exercise: str, test) -> bool:
    """Run ``test()`` and print one verdict line for ``exercise``; True when it passes.

    ``test`` calls the student's code and raises :class:`Wrong` with a message
    when the result is wrong. A ``NotImplementedError`` (the stub) prints "not
    done yet"; any other exception is reported as wrong, with its type, message
    and the line of the student's cell it came from.
    """
    label = f"Exercise {exercise}"
    try:
        test()
    except NotImplementedError:
        print(f"{label}: {NOT_DONE} - write your code in the cell above (it still raises "
              f"NotImplementedError), then run that cell and this one")
        return False
    except Wrong as err:
        print(f"{label}: wrong - {err}")
        return False
    except Exception as err:                      # the student's code crashed: say how
        print(f"{label}: wrong - your code raised {type(err).__name__}: {err}{_where(err)}")
        return False
    print(f"{label}: correct")
    return True


def compare(answer, expected, what="your answer", rtol=1e-5, atol=1e-8) -> None:
    """Raise :class:`Wrong` unless ``answer`` equals ``expected`` (numbers, tuples, arrays).

    The message names ``what`` was compared, the shapes when they differ, and
    otherwise the largest difference, where it is and both values there.
    """
    if answer is None:
        raise Wrong(f"{what} is None: did you forget `return`?")
    try:
        got = np.asarray(answer, dtype=float)
    except (TypeError, ValueError):
        raise Wrong(f"{what} should be a number or an array of numbers, got "
                    f"{type(answer).__name__} {answer!r:.80}") from None
    want = np.asarray(expected, dtype=float)
    if got.shape != want.shape:
        raise Wrong(f"{what} has shape {got.shape}, expected shape {want.shape}")
    if np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=False):
        return
    if got.ndim == 0:
        raise Wrong(f"{what} is {float(got):.6g}, expected {float(want):.6g} "
                    f"(off by {float(got - want):+.3g})")
    diff = np.abs(got - want)
    diff = np.where(np.isnan(diff), np.inf, diff)
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    bad = int(np.sum(~np.isclose(got, want, rtol=rtol, atol=atol)))
    raise Wrong(f"{what} differs in {bad} of {got.size} entries; the largest difference is "
                f"{float(diff[idx]):.3g} at index {tuple(int(i) for i in idx)}: "
                f"{float(got[idx]):.6g} instead of {float(want[idx]):.6g}")


def _value(x):
    return x() if callable(x) else x


def check(exercise: str, attempt, expected, *, what="your answer", rtol=1e-5, atol=1e-8) -> bool:
    """Compare ``attempt()`` (or ``attempt`` itself) with ``expected``; print the verdict.

    ``attempt`` is usually a ``lambda`` calling the student's function, so the
    stub's ``NotImplementedError`` is raised inside the check. Returns True when
    correct.
    """
    return run_check(exercise, lambda: compare(_value(attempt), _value(expected), what, rtol, atol))


def check_cases(exercise: str, cases, *, rtol=1e-5, atol=1e-8) -> bool:
    """Like :func:`check` for several ``(description, attempt, expected)`` cases.

    Stops at the first wrong case and names it, e.g. ``for output_size(8, 3, 2, 0):
    your answer is 3, expected 3``.
    """
    def test():
        for description, attempt, expected in cases:
            compare(_value(attempt), _value(expected), f"for {description}: your answer",
                    rtol, atol)
    return run_check(exercise, test)


def fallback(passed: bool, yours, library, what: str):
    """``yours`` when its exercise passed, else ``library``, with a printed note.

    Lets the cells after an exercise run before the exercise is done, e.g.
    ``correlate2d_valid = lk.fallback(ok, correlate2d_valid, lk.correlate2d_nnlite,
    "a version built on nn.Conv2D")``.
    """
    if passed:
        return yours
    print(f"(until this exercise is correct, the cells below use {what} instead of yours)")
    return library


# ------------------------------------------------------- library fallbacks
def correlate2d(x, w, stride=1, padding=0):
    """2-D cross-correlation with stride and zero padding, explicit loops (lesson 1).

    x: (H, W), w: (KH, KW) -> y: (OH, OW) with OH = (H - KH + 2 padding) // stride + 1,
    y[i, j] = sum_{u, v} w[u, v] * x_pad[i * stride + u, j * stride + v]
    """
    x_pad = np.pad(x, padding)                    # (H + 2p, W + 2p), zeros around
    KH, KW = w.shape
    OH = (x_pad.shape[0] - KH) // stride + 1
    OW = (x_pad.shape[1] - KW) // stride + 1
    y = np.zeros((OH, OW), dtype=np.result_type(x, w))
    for i in range(OH):
        for j in range(OW):
            window = x_pad[i * stride:i * stride + KH, j * stride:j * stride + KW]
            y[i, j] = np.sum(w * window)
    return y


def correlate2d_nnlite(x, w):
    """Valid 2-D cross-correlation of x (H, W) with w (KH, KW), computed by ``nn.Conv2D``."""
    import nnlite as nn

    x = np.asarray(x)
    w = np.asarray(w)
    layer = nn.Conv2D(1, 1, w.shape, bias=False).astype(np.result_type(x, w, np.float32))
    layer.W.data[...] = w.reshape(1, 1, *w.shape)
    return layer.forward(x.reshape(1, 1, *x.shape).astype(layer.W.data.dtype))[0, 0]
