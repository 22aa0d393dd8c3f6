"""README.md and .ci/run must agree: CI runs exactly the README's test command."""
import re
from pathlib import Path

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
