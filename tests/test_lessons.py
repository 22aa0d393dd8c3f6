"""The lesson notebooks in lessons/: present, in order, documented, stored with their
outputs, in step with their sources in lessons/src/, and runnable top to bottom.

Each notebook is re-executed in a fresh Jupyter kernel (nbclient) that runs the
interpreter running the tests (see ``build_lessons.kernelspec_for_this_python``);
any error in any cell, an exercise checker included, fails the test. The two
training-heavy notebooks (7 and 8) are marked ``slow`` (CI runs them in its second
pass); the others, lessons 1 (convolution by hand) and 5 (backprop through a
convolution) among them, run in the default pass.
"""
import copy
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
EXPECTED = [
    "01_convolution_by_hand",
    "02_pooling",
    "03_activations",
    "04_losses",
    "05_conv_backprop",
    "06_optimizers",
    "07_overfitting",
    "08_small_cnn_end_to_end",
]
SLOW = {"07_overfitting", "08_small_cnn_end_to_end"}
CELL_TIMEOUT_S = 300      # per cell; a whole notebook takes seconds to tens of seconds


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_lessons", LESSONS / "build_lessons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = _load_builder()


def _read(name):
    return nbformat.read(LESSONS / f"{name}.ipynb", as_version=4)


def _params(names):
    return [pytest.param(n, id=n, marks=[pytest.mark.slow] if n in SLOW else []) for n in names]


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


# ------------------------------------------------------------------ the set
def test_all_eight_notebooks_exist_in_order():
    found = sorted(p.stem for p in LESSONS.glob("[0-9][0-9]_*.ipynb"))
    assert found == EXPECTED, f"lessons/ holds {found}, expected {EXPECTED}"
    assert [int(n[:2]) for n in found] == list(range(1, 9))
    sources = [p.stem for p in builder.sources()]
    assert sources == EXPECTED, f"lessons/src/ holds {sources}, expected {EXPECTED}"


def test_readme_lists_every_notebook_in_order_and_how_to_start():
    text = (LESSONS / "README.md").read_text(encoding="utf-8")
    positions = [text.find(f"{name}.ipynb") for name in EXPECTED]
    missing = [n for n, pos in zip(EXPECTED, positions) if pos < 0]
    assert not missing, f"lessons/README.md does not mention {missing}"
    assert positions == sorted(positions), "lessons/README.md lists the notebooks out of order"
    assert "pip install -e '.[lessons]'" in text
    assert "jupyter lab lessons/" in text


# --------------------------------------------------------- the build script
def test_percent_parser_splits_cells_and_uncomments_magics():
    text = ("\"\"\"module docstring, ignored\"\"\"\n"
            "# %% [markdown]\n# # Title\n#\n# Some $x^2$ math.\n\n"
            "# %%\n# %matplotlib inline\nimport numpy as np\n# a comment stays\n\n\n"
            "# %% [markdown]\n# End.\n")
    assert builder.parse_percent(text) == [
        ("markdown", "# Title\n\nSome $x^2$ math."),
        ("code", "%matplotlib inline\nimport numpy as np\n# a comment stays"),
        ("markdown", "End."),
    ]


def test_percent_parser_rejects_code_in_a_markdown_cell():
    with pytest.raises(ValueError, match=r"lesson\.py:3: a markdown cell line must start with '#'"):
        builder.parse_percent("# %% [markdown]\n# fine\nx = 1\n", where="lesson.py")


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_matches_its_source(name):
    built = builder.build_notebook(builder.SRC_DIR / f"{name}.py")
    stored = _read(name)
    assert builder.cell_sources(stored) == builder.cell_sources(built), (
        f"lessons/{name}.ipynb differs from lessons/src/{name}.py: edit the source, then run "
        f"python lessons/build_lessons.py {int(name[:2])}")


# ---------------------------------------------------------- stored outputs
@pytest.mark.parametrize("name", EXPECTED)
def test_stored_outputs_are_complete_and_clean(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# Lesson ")
    code = _code_cells(nb)
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{name}: cells were not executed once each, top to bottom (execution counts {counts})")
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{name}: stored error output"
    stderr = [o.text[:200] for o in outputs if o.get("name") == "stderr"]
    assert not stderr, f"{name}: stored stderr output (a warning?): {stderr}"
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{name}: no stored plot"
    text = "".join(o.get("text", "") for o in outputs)
    solved = re.findall(r"Exercise \d+: correct", text)
    assert len(solved) >= 3, f"{name}: stored outputs show {len(solved)} checked exercises"
    size = (LESSONS / f"{name}.ipynb").stat().st_size
    assert size < 1_000_000, f"{name}: {size} bytes, keep the stored outputs modest"


# ----------------------------------------------------------------- running
@pytest.mark.parametrize("name", _params(EXPECTED))
def test_notebook_runs_top_to_bottom(name):
    nb = copy.deepcopy(_read(name))
    for cell in _code_cells(nb):
        cell.outputs, cell.execution_count = [], None
    builder.execute_notebook(nb, timeout=CELL_TIMEOUT_S)   # raises on the first failing cell
    code = _code_cells(nb)
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    text = "".join(o.get("text", "") for c in code for o in c.outputs)
    expected = len(re.findall(r"^check\(\"Exercise \d+\"", "\n".join(c.source for c in code), re.M))
    assert expected >= 3, f"{name}: fewer than three checked exercises"
    assert len(re.findall(r"Exercise \d+: correct", text)) == expected
