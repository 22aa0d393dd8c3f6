"""Every nnlite module imports on its own, in a fresh interpreter, and imports run one way.

An import cycle can hide behind the package's import order: ``import nnlite``
works, yet ``import nnlite.kernels`` first in a fresh process fails (or works only
because of a lazy import inside a function, which hides the cycle). Each module
is imported alone in its own subprocess (all of them at once, so the test stays
short), and the plain references and kernels are checked never to import a layer.
"""
import ast
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import nnlite

ROOT = Path(nnlite.__file__).parent
MODULES = sorted(["nnlite"] + [m.name for m in pkgutil.walk_packages([str(ROOT)], "nnlite.")])
NEEDS = {"nnlite.kernels.cpu": "numba", "nnlite.kernels.gpu": None}   # optional dependencies


def test_each_module_imports_alone_in_a_fresh_interpreter():
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    procs = {}
    for name in MODULES:
        need = NEEDS.get(name)
        if need is not None:
            try:
                __import__(need)
            except ImportError:
                continue
        procs[name] = subprocess.Popen([sys.executable, "-c", f"import {name}"], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       cwd=str(ROOT.parent))
    failures = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        if proc.returncode:
            failures[name] = out.decode(errors="replace").strip().splitlines()[-1:]
    assert len(procs) >= 20 and not failures, failures


def _imported_modules(path: Path) -> set:
    """The nnlite modules ``path`` imports (relative or absolute), as dotted names."""
    module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level \
                else []
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {target} | {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("nnlite.")}   # "nnlite" alone: from .. import x


@pytest.mark.parametrize("path", [ROOT / "functional.py", *sorted((ROOT / "kernels").glob("*.py"))],
                         ids=lambda p: p.name)
def test_references_and_kernels_import_no_layer_module(path):
    allowed = {"nnlite.backend", "nnlite.layer.conv_output_size", "nnlite.layer",
               "nnlite.functional"} | {f"nnlite.functional.{n}" for n in dir(nnlite.functional)}
    imported = {m for m in _imported_modules(path)
                if not m.startswith("nnlite.kernels") and not m.startswith("nnlite.backend.")}
    assert imported <= allowed, f"{path.name} imports {sorted(imported - allowed)}"
