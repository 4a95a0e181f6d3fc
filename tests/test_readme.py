"""The README a newcomer reads first: its two commands are those CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _first_block(text):
    match = re.search(r"```bash\n(.*?)```", text, re.DOTALL)
    assert match, "the README has no bash block"
    return text[: match.start()], match.group(1).strip().splitlines()


def test_the_two_newcomer_commands_open_the_readme_and_ci_runs_them_verbatim():
    readme = (ROOT / "README.md").read_text()
    before, commands = _first_block(readme)
    assert before.strip() == "# sktriplet"  # nothing above them but the title
    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e . "
        "&& .venv/bin/python examples/quickstart.py",
        'python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e ".[test]" '
        "&& .venv/bin/python -m pytest -q",
    ]
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci[:2] == commands


def test_every_install_in_the_readme_uses_the_projects_venv():
    readme = (ROOT / "README.md").read_text()
    installs = re.findall(r"([\w./]*pip) install", readme)
    assert installs and set(installs) == {".venv/bin/pip"}
    assert '.venv/bin/pip install -e ".[docs]"' in readme


def test_the_readme_is_short_and_links_into_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 80
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link
