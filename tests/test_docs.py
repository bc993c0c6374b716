"""The README's option reference is the one generated from the config models."""

from __future__ import annotations

import re

from servekit.reference import render_markdown
from tests.conftest import ROOT

START = re.compile(r"<!-- reference:start[^>]*-->\n")
END = "<!-- reference:end -->"


def readme_reference() -> str:
    text = (ROOT / "README.md").read_text()
    match = START.search(text)
    assert match, "README has no reference:start marker"
    return text[match.end() : text.index(END)].strip()


def test_readme_reference_matches_model() -> None:
    """Regenerate with `python -m servekit.reference` when this fails."""
    assert readme_reference() == render_markdown()


def test_reference_lists_every_option_with_env_and_flag() -> None:
    """Each row names the env var and the CLI flag derived from the option name."""
    table = render_markdown()
    for option in ("worker_connections", "graceful_timeout", "forwarded_allow_ips"):
        assert f"`SERVEKIT_{option.upper()}`" in table
        assert f"`--{option.replace('_', '-')}`" in table
