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

Usage (from the repository root)::

    python lessons/build_lessons.py              # build + execute all eight, save them
    python lessons/build_lessons.py 3 5          # only lessons 03 and 05
    python lessons/build_lessons.py --no-execute # cells only, outputs left empty
    python lessons/build_lessons.py --check      # exit 1 if a notebook differs from its source

Execution uses :func:`execute_notebook`: a Jupyter kernel named ``python3``
whose kernel spec is written to a temporary directory and points at the
running interpreter (``sys.executable``), so the notebooks run against the
nnlite installed here and not some other Python on the PATH.
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
KERNEL_NAME = "python3"
KERNELSPEC = {"name": KERNEL_NAME, "display_name": "Python 3 (ipykernel)", "language": "python"}

_MAGIC = re.compile(r"^# (%(?:matplotlib|config|timeit|time)\b.*)$")  # "# %matplotlib inline"
_HEADER = re.compile(r"^# %%(?: \[(markdown|md)\])?\s*$")


def sources() -> list:
    """The lesson sources ``src/NN_*.py``, sorted by number."""
    return sorted(SRC_DIR.glob("[0-9][0-9]_*.py"))


def notebook_path(src: Path) -> Path:
    return LESSONS_DIR / (src.stem + ".ipynb")


def parse_percent(text: str, where: str = "<source>") -> list:
    """Split a percent-format script into cells: a list of ``(kind, source)``.

    ``kind`` is ``"markdown"`` or ``"code"``. Text before the first ``# %%``
    line (a module docstring, say) is ignored. Leading and trailing blank
    lines of each cell are dropped.

    Raises:
        ValueError: a markdown cell holds a line that is not a comment
            (names the file and line).
    """
    cells, kind, lines, start = [], None, [], 0

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
        if body:
            cells.append((kind, "\n".join(body)))

    for n, line in enumerate(text.splitlines()):
        m = _HEADER.match(line)
        if m:
            flush()
            kind, lines, start = ("markdown" if m.group(1) else "code"), [], n
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def build_notebook(src: Path):
    """A fresh, unexecuted notebook for ``src`` with stable cell ids."""
    import nbformat

    cells = parse_percent(src.read_text(encoding="utf-8"), where=str(src))
    if not cells:
        raise ValueError(f"{src}: no '# %%' cells found")
    prefix = src.stem.split("_")[0]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, body) in enumerate(cells):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(make(body, id=f"lesson{prefix}-cell{i:02d}"))
    nbformat.validate(nb)
    return nb


def cell_sources(nb) -> list:
    """``(cell_type, source)`` of every cell: what :func:`build_notebook` controls."""
    return [(c.cell_type, c.source) for c in nb.cells]


@contextlib.contextmanager
def kernelspec_for_this_python():
    """Temporarily make the ``python3`` kernel run ``sys.executable``.

    Writes ``kernels/python3/kernel.json`` into a temporary directory and puts
    it first on ``JUPYTER_PATH`` (which Jupyter searches before the user's and
    the environment's kernel directories), restoring the variable afterwards.
    """
    old = os.environ.get("JUPYTER_PATH")
    with tempfile.TemporaryDirectory(prefix="nnlite-kernels-") as tmp:
        spec_dir = Path(tmp) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": KERNELSPEC["display_name"], "language": "python"}
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
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    args = parser.parse_args(argv)

    chosen = [s for s in sources() if not args.lessons or int(s.stem[:2]) in args.lessons]
    if not chosen:
        print("no lesson sources matched", file=sys.stderr)
        return 1
    status = 0
    for src in chosen:
        target = notebook_path(src)
        nb = build_notebook(src)
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
