"""The lesson notebooks in lessons/: present, in order, documented, stored with their
outputs, in step with their sources in lessons/src/, and runnable top to bottom, both
as the student gets them (exercise stubs) and with the reference solutions filled in.

Each notebook is executed in a fresh Jupyter kernel (nbclient) that runs the
interpreter running the tests (see ``build_lessons.kernelspec_for_this_python``); any
error in any cell fails the test. Every notebook runs twice:

* **stubs** (``test_notebook_runs_with_stubs``, default pass, all of them): as stored,
  every exercise still raising ``NotImplementedError``; each check must print
  "Exercise N.k: not done yet" and every other cell must run (cells that use an
  exercise's result fall back to nnlite's version);
* **solutions** (``test_notebook_runs_with_solutions``): each stub replaced by its
  reference solution from ``lessons/solutions/``; every check must print "correct".
  Where the solutions file has a deliberately wrong answer (at least one per
  lesson), it is run through a copy of the check, which must print "wrong": a check
  that cannot fail is caught here. The two training-heavy lessons (7 and 8) run this
  mode in the ``slow`` pass only. Every notebook takes 2 to 12 s of kernel CPU per mode
  (one BLAS thread); the whole file, slow tests included, ran in about three minutes on
  the shared 2-core development machine with sixteen notebooks.
"""
import ast
import copy
import importlib.util
import re
import resource
import sys
import time
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
    "09_batch_normalisation",
    "10_residual_connections",
    "11_transposed_convolution",
    "12_transfer_learning",
    "13_medical_evaluation",
    "14_whole_mammogram",
    "15_speed",
    "16_grad_cam",
]
SLOW_SOLVED = {"07_overfitting", "08_small_cnn_end_to_end"}
CELL_TIMEOUT_S = 300      # per cell; a whole notebook takes seconds to tens of seconds
VERDICT = re.compile(r"^Exercise (\d+\.\d+): (correct|wrong|not done yet)\b", re.M)


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_lessons", LESSONS / "build_lessons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = _load_builder()
sys.path.insert(0, str(LESSONS))
import lessonkit  # noqa: E402  (lessons/lessonkit.py, the notebooks' shared helpers)


def _read(name):
    return nbformat.read(LESSONS / f"{name}.ipynb", as_version=4)


def _src(name):
    return builder.SRC_DIR / f"{name}.py"


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _role(cell):
    return cell.metadata.get("lesson", {}).get("role"), cell.metadata.get("lesson", {}).get("id")


def _verdicts(nb, role):
    """[(exercise id of the cell, id printed, verdict)] for every cell of ``role``."""
    found = []
    for cell in _code_cells(nb):
        cell_role, ident = _role(cell)
        if cell_role != role:
            continue
        text = "".join(o.get("text", "") for o in cell.outputs)
        lines = VERDICT.findall(text)
        assert len(lines) == 1, (f"the {role} cell of exercise {ident} printed {len(lines)} "
                                 f"verdict lines: {text[:300]!r}")
        found.append((ident, *lines[0]))
    return found


def _execute(nb):
    for cell in _code_cells(nb):
        cell.outputs, cell.execution_count = [], None
    wall, cpu = time.perf_counter(), _children_cpu_s()
    builder.execute_notebook(nb, timeout=CELL_TIMEOUT_S)   # raises on the first failing cell
    print(f"executed in {time.perf_counter() - wall:.1f} s wall, "
          f"{_children_cpu_s() - cpu:.1f} s kernel CPU")     # shown by pytest -rP
    code = _code_cells(nb)
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    return nb


def _children_cpu_s():
    """CPU seconds used by finished child processes (the kernels) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _is_code(body):
    """True when a solution is code, not a number: a def or class with a loop, a branch,
    or more than one statement besides its docstring."""
    for node in ast.walk(ast.parse(body)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            statements = [n for n in node.body if not (isinstance(n, ast.Expr)
                                                       and isinstance(n.value, ast.Constant))]
            if isinstance(node, ast.ClassDef) or len(statements) > 1 or any(
                    isinstance(n, (ast.For, ast.While, ast.If)) for n in ast.walk(node)):
                return True
    return False


# ------------------------------------------------------------------ the set
def test_all_notebooks_exist_in_order():
    found = sorted(p.stem for p in LESSONS.glob("[0-9][0-9]_*.ipynb"))
    assert found == EXPECTED, f"lessons/ holds {found}, expected {EXPECTED}"
    assert [int(n[:2]) for n in found] == list(range(1, len(EXPECTED) + 1))
    sources = [p.stem for p in builder.sources()]
    assert sources == EXPECTED, f"lessons/src/ holds {sources}, expected {EXPECTED}"
    solutions = sorted(p.stem for p in builder.SOLUTIONS_DIR.glob("[0-9][0-9]_*.py"))
    assert solutions == EXPECTED, f"lessons/solutions/ holds {solutions}, expected {EXPECTED}"


def test_readme_lists_every_notebook_in_order_and_how_to_start():
    text = (LESSONS / "README.md").read_text(encoding="utf-8")
    positions = [text.find(f"{name}.ipynb") for name in EXPECTED]
    missing = [n for n, pos in zip(EXPECTED, positions) if pos < 0]
    assert not missing, f"lessons/README.md does not mention {missing}"
    assert positions == sorted(positions), "lessons/README.md lists the notebooks out of order"
    assert "pip install -e '.[lessons]'" in text
    assert "jupyter lab lessons/" in text
    for needed in ("NotImplementedError", "not done yet", "solutions/", "lessonkit.py"):
        assert needed in text, f"lessons/README.md does not explain {needed!r}"
    # the input gradient of a correlation layer is a full convolution with the kernel,
    # i.e. a full correlation with the *rotated* kernel, never "convolution with the rotated"
    assert not re.search(r"full convolution (of \S+ )?with the (180-degree )?rotated kernel", text)


# --------------------------------------------------------- the build script
def test_percent_parser_splits_cells_and_uncomments_magics():
    text = ("\"\"\"module docstring, ignored\"\"\"\n"
            "# %% [markdown]\n# # Title\n#\n# Some $x^2$ math.\n\n"
            "# %%\n# %matplotlib inline\nimport numpy as np\n# a comment stays\n\n\n"
            "# %% [markdown]\n# End.\n")
    assert builder.parse_percent(text) == [
        ("markdown", "# Title\n\nSome $x^2$ math.", None),
        ("code", "%matplotlib inline\nimport numpy as np\n# a comment stays", None),
        ("markdown", "End.", None),
    ]


def test_percent_parser_reads_exercise_tags():
    text = ("# %% [exercise 2.1]\ndef f():\n    raise NotImplementedError\n"
            "# %% [check 2.1]\nlk.check('2.1', f, 1)\n"
            "# %% [solution 2.1]\ndef f():\n    return 1\n# %% [wrong 2.1]\ndef f():\n    return 2\n")
    assert [(kind, tag) for kind, _, tag in builder.parse_percent(text)] == [
        ("code", ("exercise", "2.1")), ("code", ("check", "2.1")),
        ("code", ("solution", "2.1")), ("code", ("wrong", "2.1"))]


def test_percent_parser_rejects_code_in_a_markdown_cell():
    with pytest.raises(ValueError, match=r"lesson\.py:3: a markdown cell line must start with '#'"):
        builder.parse_percent("# %% [markdown]\n# fine\nx = 1\n", where="lesson.py")


def test_builder_demands_a_solution_for_every_exercise(tmp_path, monkeypatch):
    src = tmp_path / "src" / "01_tiny.py"
    src.parent.mkdir()
    src.write_text("# %% [markdown]\n# # Lesson 1\n# %% [exercise 1.1]\ndef f():\n"
                   "    raise NotImplementedError\n# %% [check 1.1]\nprint(f())\n")
    (tmp_path / "solutions").mkdir()
    monkeypatch.setattr(builder, "SOLUTIONS_DIR", tmp_path / "solutions")
    (tmp_path / "solutions" / "01_tiny.py").write_text("# %% [solution 1.2]\ndef g():\n    pass\n")
    with pytest.raises(ValueError, match="no solution for exercise 1.1"):
        builder.build_notebook(src, solved=True)
    (tmp_path / "solutions" / "01_tiny.py").write_text(
        "# %% [solution 1.1]\ndef f():\n    return 1\n# %% [solution 1.2]\ndef g():\n    pass\n")
    with pytest.raises(ValueError, match=r"solutions for exercises \['1.2'\]"):
        builder.build_notebook(src, solved=True)
    (tmp_path / "solutions" / "01_tiny.py").write_text(
        "# %% [solution 1.1]\ndef f():\n    return 1\n# %% [wrong 1.1]\ndef f():\n    return 2\n")
    nb = builder.build_notebook(src, solved=True, wrong=True)
    assert [_role(c)[0] for c in _code_cells(nb)] == ["exercise", "check", "wrong", "recheck",
                                                      "solution"]
    assert "return 1" in _code_cells(nb)[0].source
    assert builder.build_notebook(src).cells[1].source.endswith("raise NotImplementedError")


def test_kernel_uses_one_blas_thread_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    with builder.kernelspec_for_this_python() as spec:
        assert spec["env"]["OMP_NUM_THREADS"] == "1"
        assert spec["env"]["OPENBLAS_NUM_THREADS"] == "2"
        assert spec["argv"][0] == sys.executable


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_matches_its_source(name):
    built = builder.build_notebook(_src(name))
    stored = _read(name)
    assert builder.cell_sources(stored) == builder.cell_sources(built), (
        f"lessons/{name}.ipynb differs from lessons/src/{name}.py: edit the source, then run "
        f"python lessons/build_lessons.py {int(name[:2])}")


# ------------------------------------------------------------- exercises
@pytest.mark.parametrize("name", EXPECTED)
def test_exercises_are_stubs_with_a_todo_and_a_check(name):
    nb = builder.build_notebook(_src(name))
    code = _code_cells(nb)
    ids = builder.exercise_ids(nb)
    lesson = int(name[:2])
    assert ids == [f"{lesson}.{k}" for k in range(1, len(ids) + 1)], (
        f"{name}: exercise ids {ids} are not {lesson}.1, {lesson}.2, ... in order")
    assert len(ids) >= 4, f"{name}: only {len(ids)} exercises"
    for i, cell in enumerate(code):
        role, ident = _role(cell)
        if role != "exercise":
            continue
        assert f"# TODO (exercise {ident}): " in cell.source, f"{name} {ident}: no TODO line"
        assert "raise NotImplementedError" in cell.source, f"{name} {ident}: not a stub"
        assert _role(code[i + 1]) == ("check", ident), (
            f"{name}: the cell after exercise {ident} is not its check")
    assert "lessonkit" in code[0].source, f"{name}: the first cell does not import lessonkit"
    assert "def check(" not in "".join(c.source for c in code), (
        f"{name}: defines its own check(); use lessonkit's")


@pytest.mark.parametrize("name", EXPECTED)
def test_solutions_cover_every_exercise_and_some_ask_for_code(name):
    src = _src(name)
    solutions, wrong = builder.load_solutions(src)
    ids = builder.exercise_ids(builder.build_notebook(src))
    assert sorted(solutions) == sorted(ids), f"{name}: solutions {sorted(solutions)}, exercises {ids}"
    assert wrong, f"{name}: no deliberately wrong answer to prove that a check can fail"
    assert set(wrong) <= set(ids)
    for ident, body in {**solutions, **{f"wrong {k}": v for k, v in wrong.items()}}.items():
        assert "NotImplementedError" not in body and "TODO" not in body, f"{name} {ident}"
        ast.parse(body)
    code = [ident for ident, body in solutions.items() if _is_code(body)]
    assert code, f"{name}: every exercise is a number; at least one must ask for code"
    assert any(ident in code for ident in wrong), (
        f"{name}: no wrong answer for a code exercise ({code})")


def test_one_lesson_has_the_student_write_a_layer_proved_by_gradcheck():
    solutions, wrong = builder.load_solutions(_src("03_activations"))
    tree = ast.parse(solutions["3.5"])
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert [ast.unparse(b) for b in cls.bases] == ["nn.Layer"]
    assert {n.name for n in cls.body if isinstance(n, ast.FunctionDef)} >= {"forward", "backward"}
    assert "3.5" in wrong
    nb = builder.build_notebook(_src("03_activations"))
    (check,) = [c for c in _code_cells(nb) if _role(c) == ("check", "3.5")]
    assert "nn.gradcheck(" in check.source


def test_lessonkit_check_says_what_is_wrong(capsys):
    def stub():
        raise NotImplementedError

    assert lessonkit.check("9.1", stub, 3) is False
    assert capsys.readouterr().out.startswith("Exercise 9.1: not done yet")
    assert lessonkit.check("9.1", lambda: 4, 3) is False
    assert "Exercise 9.1: wrong - your answer is 4, expected 3 (off by +1)" in capsys.readouterr().out
    assert lessonkit.check("9.1", lambda: [1, 2], [1, 2, 3]) is False
    assert "has shape (2,), expected shape (3,)" in capsys.readouterr().out
    assert lessonkit.check("9.1", lambda: [[1, 2], [3, 5]], [[1, 2], [3, 4]]) is False
    assert "differs in 1 of 4 entries; the largest difference is 1 at index (1, 1): 5 instead of 4" \
        in capsys.readouterr().out
    assert lessonkit.check("9.1", lambda: None, 1) is False
    assert "did you forget `return`?" in capsys.readouterr().out
    assert lessonkit.check("9.1", lambda: 1 / 0, 1) is False
    assert "wrong - your code raised ZeroDivisionError" in capsys.readouterr().out
    assert lessonkit.check("9.1", lambda: 0.1 + 0.2, 0.3) is True
    assert capsys.readouterr().out == "Exercise 9.1: correct\n"
    assert lessonkit.check_cases("9.2", [("f(1)", lambda: 1, 1), ("f(2)", lambda: 5, 4)]) is False
    assert "Exercise 9.2: wrong - for f(2): your answer is 5" in capsys.readouterr().out
    assert lessonkit.fallback(False, "yours", "library", "nnlite's") == "library"
    assert "use nnlite's instead of yours" in capsys.readouterr().out
    assert lessonkit.fallback(True, "yours", "library", "nnlite's") == "yours"


def test_plots_are_readable():
    assert lessonkit.FIGURE_DPI >= 100 and lessonkit.LABEL_SIZE >= 9
    for name in EXPECTED:
        text = _src(name).read_text(encoding="utf-8")
        small = re.findall(r"fontsize=([0-8])\b", text)
        assert not small, f"{name}: text at fontsize {small} (at least 9, see lessonkit)"
        assert "figure.dpi" not in text, f"{name}: sets its own dpi (lessonkit.setup does)"
        assert "lk.setup(" in text


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
    verdicts = _verdicts(nb, "check")
    assert [v[2] for v in verdicts] == ["not done yet"] * len(builder.exercise_ids(nb)), (
        f"{name}: the stored outputs must show the stubs' 'not done yet', got {verdicts}")
    size = (LESSONS / f"{name}.ipynb").stat().st_size
    assert size < 1_000_000, f"{name}: {size} bytes, keep the stored outputs modest"


# ----------------------------------------------------------------- running
@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_with_stubs(name):
    nb = _execute(copy.deepcopy(_read(name)))
    ids = builder.exercise_ids(nb)
    verdicts = _verdicts(nb, "check")
    assert [(ident, printed) for ident, printed, _ in verdicts] == [(i, i) for i in ids]
    wrong = [v for v in verdicts if v[2] != "not done yet"]
    assert not wrong, f"{name}: with the stubs every check must say 'not done yet': {wrong}"


@pytest.mark.parametrize("name", [pytest.param(n, id=n, marks=[pytest.mark.slow] if n in SLOW_SOLVED
                                               else []) for n in EXPECTED])
def test_notebook_runs_with_solutions(name):
    nb = _execute(builder.build_notebook(_src(name), solved=True, wrong=True))
    ids = builder.exercise_ids(nb)
    verdicts = _verdicts(nb, "check")
    assert [(ident, printed) for ident, printed, _ in verdicts] == [(i, i) for i in ids]
    failed = [v for v in verdicts if v[2] != "correct"]
    assert not failed, f"{name}: with the reference solutions every check must pass: {failed}"
    rechecks = _verdicts(nb, "recheck")
    _, wrong = builder.load_solutions(_src(name))
    assert sorted(ident for ident, _, _ in rechecks) == sorted(wrong)
    missed = [v for v in rechecks if v[2] != "wrong"]
    assert not missed, f"{name}: a deliberately wrong answer was not reported as wrong: {missed}"
