"""The README's tutorial files, run exactly as written: a Flask app on gevent, tested with the fixture."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.server


def tutorial_files() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    found = re.findall(r"<!-- tutorial-file: (\S+) -->\n```python\n(.*?)```", text, re.S)
    return dict(found)


def test_tutorial_passes(tmp_path: Path) -> None:
    """The README's myapp.py and test_myapp.py pass under pytest with the servekit plugin."""
    files = tutorial_files()
    assert set(files) == {"myapp.py", "test_myapp.py"}
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEKIT_", "PYTEST_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
