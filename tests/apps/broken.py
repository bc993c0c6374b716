"""Test app whose import fails inside the user's own code (a missing dependency)."""

import not_installed_dependency_xyz  # noqa: F401

app = None
