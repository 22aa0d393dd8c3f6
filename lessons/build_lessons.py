"""Build the lesson notebooks from their sources, execute them, store the outputs.

Each notebook ``lessons/NN_name.ipynb`` is generated from ``lessons/src/NN_name.py``,
a Python script in the *percent* format (the one jupytext reads and writes)::

    # %% [markdown]
    # # A title
    # Text with math, $y = \\max(x, 0)$.

    # %%
    y = model.forward(x)          # a code cell

Markdown cells are comment blocks (every line starts with ``#``); a magic such
as ``%matplotlib inline`` is written commented out (``# %matplotlib inline``)
in a code cell and un-commented in the notebook. The sources are the place to
edit a lesson: they diff well and review well, and ``tests/test_lessons.py``
checks that every notebook still matches its source.

Exercises are two tagged code cells::

    # %% [exercise 1.2]
    def output_size(N, f, s, p):
        # TODO (exercise 1.2): return the output size along one axis
        raise NotImplementedError

    # %% [check 1.2]
    lk.check_cases("1.2", [...])          # prints "Exercise 1.2: not done yet / wrong - ... / correct"

The notebooks are stored with the stubs. The reference answers live in
``lessons/solutions/NN_name.py``, in the same format, as ``# %% [solution 1.2]``
cells (the whole body of the exercise cell) and ``# %% [wrong 1.2]`` cells
(a deliberately wrong answer, which the test suite feeds to the check to prove
that it can fail). ``--solved DIR`` builds, runs and writes the notebooks with
the solutions filled in (for teachers), never over the stored ones.

Usage (from the repository root)::

    python lessons/build_lessons.py              # build + execute all of them, save them
    python lessons/build_lessons.py 3 5          # only lessons 03 and 05
    python lessons/build_lessons.py --no-execute # cells only, outputs left empty
    python lessons/build_lessons.py --check      # exit 1 if a notebook differs from its source
    python lessons/build_lessons.py --solved /tmp/solved   # solved copies, run, in /tmp/solved

Execution uses :func:`execute_notebook`: a Jupyter kernel named ``python3``
whose kernel spec is written to a temporary directory and points at the
running interpreter (``sys.executable``), so the notebooks run against the
nnlite installed here and not some other Python on the PATH. That kernel uses
one BLAS/OpenMP/Numba thread unless the environment says otherwise
(:data:`THREAD_VARIABLES`): the lessons' arrays are small, and on a busy
two-core machine spinning BLAS threads made lesson 8 run four times slower
(89 s against 21 s, measured side by side).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

LESSONS_DIR = Path(__file__).resolve().parent
SRC_DIR = LESSONS_DIR / "src"
SOLUTIONS_DIR = LESSONS_DIR / "solutions"
KERNEL_NAME = "python3"
KERNELSPEC = {"name": KERNEL_NAME, "display_name": "Python 3 (ipykernel)", "language": "python"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")   # "1" for the kernel, unless already set

_MAGIC = re.compile(r"^# (%(?:matplotlib|config|timeit|time)\b.*)$")  # "# %matplotlib inline"
_HEADER = re.compile(r"^# %%(?: \[(markdown|md|(?:exercise|check|solution|wrong) \d+\.\d+)\])?\s*$")


def sources() -> list:
    """The lesson sources ``src/NN_*.py``, sorted by number."""
    return sorted(SRC_DIR.glob("[0-9][0-9]_*.py"))


def notebook_path(src: Path) -> Path:
    return LESSONS_DIR / (src.stem + ".ipynb")


def parse_percent(text: str, where: str = "<source>") -> list:
    """Split a percent-format script into cells: a list of ``(kind, source, tag)``.

    ``kind`` is ``"markdown"`` or ``"code"``; ``tag`` is None or, for a code
    cell headed ``# %% [exercise 1.2]`` (or ``check``, ``solution``, ``wrong``),
    the pair ``("exercise", "1.2")``. Text before the first ``# %%`` line (a
    module docstring, say) is ignored. Leading and trailing blank lines of each
    cell are dropped.

    Raises:
        ValueError: a markdown cell holds a line that is not a comment
            (names the file and line).
    """
    cells, kind, tag, lines, start = [], None, None, [], 0

    def flush():
        if kind is None:
            return
        body = list(lines)
        while body and not body[0].strip():
            body.pop(0)
        while body and not body[-1].strip():
            body.pop()
        if kind == "markdown":
            out = []
            for k, line in enumerate(lines):
                if not line.strip():
                    out.append("")
                    continue
                if not line.startswith("#"):
                    raise ValueError(f"{where}:{start + k + 2}: a markdown cell line must start "
                                     f"with '#', got {line!r}")
                out.append(line[2:] if line.startswith("# ") else line[1:])
            while out and not out[0].strip():
                out.pop(0)
            while out and not out[-1].strip():
                out.pop()
            body = out
        else:
            body = [_MAGIC.sub(r"\1", line) for line in body]
        if body or tag:
            cells.append((kind, "\n".join(body), tag))

    for n, line in enumerate(text.splitlines()):
        m = _HEADER.match(line)
        if m:
            flush()
            label = m.group(1) or ""
            tag = tuple(label.split()) if " " in label else None
            kind = "markdown" if label in ("markdown", "md") else "code"
            lines, start = [], n
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def solutions_path(src: Path) -> Path:
    """``lessons/solutions/NN_name.py``, the reference answers of lesson ``src``."""
    return SOLUTIONS_DIR / src.name


def load_solutions(src: Path) -> tuple:
    """``(solutions, wrong)``: dicts exercise id -> cell body, from :func:`solutions_path`.

    Raises:
        ValueError: the file holds an untagged cell, a tag other than
            ``solution``/``wrong``, or one id twice.
    """
    path = solutions_path(src)
    found = {"solution": {}, "wrong": {}}
    for kind, body, tag in parse_percent(path.read_text(encoding="utf-8"), where=str(path)):
        if kind != "code" or tag is None or tag[0] not in found:
            raise ValueError(f"{path}: every cell must be '# %% [solution N.k]' or "
                             f"'# %% [wrong N.k]', got a {kind} cell tagged {tag}")
        role, ident = tag
        if ident in found[role]:
            raise ValueError(f"{path}: two '{role} {ident}' cells")
        found[role][ident] = body
    return found["solution"], found["wrong"]


def exercise_ids(nb) -> list:
    """The exercise ids of a notebook, in order (from the stub cells' metadata)."""
    return [c.metadata["lesson"]["id"] for c in nb.cells
            if c.metadata.get("lesson", {}).get("role") == "exercise"]


def _code_cell(body, ident, role=None, exercise=None):
    import nbformat

    cell = nbformat.v4.new_code_cell(body, id=ident)
    if role:
        cell.metadata["tags"] = [role]
        cell.metadata["lesson"] = {"role": role, "id": exercise}
    return cell


def build_notebook(src: Path, solved: bool = False, wrong: bool = False):
    """A fresh, unexecuted notebook for ``src`` with stable cell ids.

    ``solved``: replace each exercise stub with its reference solution from
    :func:`solutions_path`. ``wrong`` (with ``solved``): after the check of each
    exercise that has a ``wrong`` answer, add three cells: the wrong answer, a
    copy of the check (which must then report "wrong"), and the solution again,
    so that the cells below see the right answer.

    Raises:
        ValueError: no cells; a check without its exercise; with ``solved``, an
            exercise without a solution or a solution without an exercise.
    """
    import nbformat

    cells = parse_percent(src.read_text(encoding="utf-8"), where=str(src))
    if not cells:
        raise ValueError(f"{src}: no '# %% ' cells found")
    solutions, wrongs = load_solutions(src) if solved else ({}, {})
    prefix = src.stem.split("_")[0]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    stubs = []
    for i, (kind, body, tag) in enumerate(cells):
        ident = f"lesson{prefix}-cell{i:02d}"
        if kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(body, id=ident))
            continue
        role, exercise = tag if tag else (None, None)
        if role in ("solution", "wrong"):
            raise ValueError(f"{src}: a '{role}' cell belongs in {solutions_path(src)}")
        if role == "check" and exercise not in stubs:
            raise ValueError(f"{src}: 'check {exercise}' comes before 'exercise {exercise}'")
        if role == "exercise":
            stubs.append(exercise)
            if solved:
                if exercise not in solutions:
                    raise ValueError(f"{solutions_path(src)}: no solution for exercise {exercise}")
                body = solutions[exercise]
        nb.cells.append(_code_cell(body, ident, role, exercise))
        if role == "check" and wrong and exercise in wrongs:
            nb.cells.append(_code_cell(wrongs[exercise], ident + "-wrong", "wrong", exercise))
            nb.cells.append(_code_cell(body, ident + "-recheck", "recheck", exercise))
            nb.cells.append(_code_cell(solutions[exercise], ident + "-resolve", "solution",
                                       exercise))
    extra = sorted(set(solutions) - set(stubs))
    if extra:
        raise ValueError(f"{solutions_path(src)}: solutions for exercises {extra} that "
                         f"{src.name} does not have")
    nbformat.validate(nb)
    return nb


def cell_sources(nb) -> list:
    """``(cell_type, source, role, exercise)`` of every cell: what :func:`build_notebook` controls."""
    return [(c.cell_type, c.source, c.metadata.get("lesson", {}).get("role"),
             c.metadata.get("lesson", {}).get("id")) for c in nb.cells]


@contextlib.contextmanager
def kernelspec_for_this_python():
    """Temporarily make the ``python3`` kernel run ``sys.executable``.

    Writes ``kernels/python3/kernel.json`` into a temporary directory and puts
    it first on ``JUPYTER_PATH`` (which Jupyter searches before the user's and
    the environment's kernel directories), restoring the variable afterwards.
    The spec's ``env`` sets the :data:`THREAD_VARIABLES` the environment leaves unset to 1.
    """
    old = os.environ.get("JUPYTER_PATH")
    with tempfile.TemporaryDirectory(prefix="nnlite-kernels-") as tmp:
        spec_dir = Path(tmp) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": KERNELSPEC["display_name"], "language": "python",
                "env": {name: os.environ.get(name, "1") for name in THREAD_VARIABLES}}
        (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        os.environ["JUPYTER_PATH"] = tmp if old is None else tmp + os.pathsep + old
        try:
            yield spec
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def execute_notebook(nb, timeout: int = 300):
    """Run every cell of ``nb`` in order in a fresh kernel, in ``lessons/``; return ``nb``.

    Raises ``nbclient.exceptions.CellExecutionError`` (with the traceback of
    the failing cell) on the first error, and ``TimeoutError``-like errors if
    one cell runs longer than ``timeout`` seconds.
    """
    from nbclient import NotebookClient

    with kernelspec_for_this_python():
        client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME,
                                record_timing=False,
                                resources={"metadata": {"path": str(LESSONS_DIR)}})
        client.execute()
    return nb


def _stderr_lines(nb) -> list:
    return [f"cell {i}: {o.get('text', '').strip()[:200]}"
            for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("name") == "stderr"]


def main(argv=None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lessons", nargs="*", type=int, help="lesson numbers (default: all)")
    parser.add_argument("--no-execute", action="store_true", help="do not run the notebooks")
    parser.add_argument("--check", action="store_true",
                        help="only compare each notebook's cells with its source")
    parser.add_argument("--solved", metavar="DIR", type=Path,
                        help="fill in the reference solutions and write the notebooks to DIR "
                             "(never over the stored ones)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    args = parser.parse_args(argv)
    if args.solved is not None and args.solved.resolve() == LESSONS_DIR:
        parser.error("--solved must name another folder: lessons/ keeps the stubs")

    chosen = [s for s in sources() if not args.lessons or int(s.stem[:2]) in args.lessons]
    if not chosen:
        print("no lesson sources matched", file=sys.stderr)
        return 1
    status = 0
    for src in chosen:
        target = notebook_path(src)
        nb = build_notebook(src, solved=args.solved is not None)
        if args.solved is not None:
            args.solved.mkdir(parents=True, exist_ok=True)
            target = args.solved / target.name
        if args.check:
            stored = nbformat.read(target, as_version=4) if target.exists() else None
            same = stored is not None and cell_sources(stored) == cell_sources(nb)
            print(f"{target.name}: {'up to date' if same else 'DIFFERS from ' + src.name}")
            status |= not same
            continue
        if not args.no_execute:
            t0 = time.perf_counter()
            execute_notebook(nb, timeout=args.timeout)
            print(f"{target.name}: executed in {time.perf_counter() - t0:.1f} s")
            for line in _stderr_lines(nb):
                print(f"  warning: stderr output in {line}", file=sys.stderr)
        nbformat.write(nb, target)
        print(f"{target.name}: written ({target.stat().st_size / 1024:.0f} KiB)")
    return status


if __name__ == "__main__":
    sys.exit(main())
