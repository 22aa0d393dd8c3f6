"""README.md and .ci/run must agree: CI runs exactly the README's test command."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_has_the_two_commands():
    blocks = _bash_blocks()
    demo = [b for b in blocks if "mammo-demo train" in b]
    tests = [b for b in blocks if "pytest" in b]
    assert len(demo) == 1 and "pip install -e ." in demo[0]
    assert len(tests) == 1 and "pip install -e '.[test]'" in tests[0]


def test_ci_runs_the_readme_test_command():
    (tests,) = [b for b in _bash_blocks() if "pytest" in b]
    command = tests.split("pip install -e '.[test]' && ", 1)[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_lines = [line.strip() for line in ci.splitlines() if line.strip().startswith("python -m pytest")]
    assert ci_lines == [command], f".ci/run runs {ci_lines}, README says {command!r}"
    assert "pip install --quiet -e '.[test]'" in ci and "venv" in ci


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path):
    """The tour's code runs as printed (in a scratch folder: it saves a model)."""
    import os
    import re
    import runpy
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    script = tmp_path / "tour.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        os.chdir(cwd)
    assert (tmp_path / "resnet.npz").exists()
