"""Loading apps from objects, 'mod:attr' and 'mod:factory()' with clear errors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from servekit import ConfigError
from servekit.loading import check_app_spec, load_app, prepare_import_path
from tests.apps import slow


def test_object_passes_through() -> None:
    """A callable is returned as is."""
    assert load_app(slow.app) is slow.app


def test_import_string() -> None:
    """'module:attr' imports the attribute."""
    assert load_app("tests.apps.slow:app") is slow.app


def test_factory() -> None:
    """'module:factory()' calls the factory."""
    assert load_app("tests.apps.slow:create_app()") is slow.app


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("no_such_module_xyz:app", "no module named 'no_such_module_xyz'"),
        ("tests.apps.nothere:app", "no module named 'tests.apps.nothere'"),
        ("tests.apps.slow:missing", "has no attribute 'missing'"),
        ("tests.apps.slow:PATCHED_AT_IMPORT", "not a WSGI callable"),
        ("tests.apps:app", "has no attribute 'app'"),
        ("tests.apps", "has neither 'application' nor 'app'"),
        ("tests.apps.slow:", "not an import string"),
        ("tests apps:app", "not an import string"),
        ("tests.apps.slow:app()", "the factory raised TypeError"),
    ],
)
def test_errors_name_what_is_missing(spec: str, needle: str) -> None:
    """Each failure names the module or attribute."""
    with pytest.raises(ConfigError) as info:
        load_app(spec)
    assert needle in info.value.message


def test_error_inside_user_module_is_the_users() -> None:
    """An import error raised by the user's own module shows that error and where."""
    with pytest.raises(ConfigError) as info:
        load_app("tests.apps.broken:app")
    msg = info.value.message
    assert "not_installed_dependency_xyz" in msg
    assert "broken.py:3" in msg
    assert "no module named 'tests.apps.broken'" not in msg


def test_module_alone_means_application_then_app() -> None:
    """'module' alone is 'module:application' when it has one, else 'module:app'."""
    assert load_app("tests.apps.slow") is slow.app


def test_syntax_error_points_at_the_users_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A syntax error names the user's file and line, not servekit's loader."""
    (tmp_path / "typo_mod_xyz.py").write_text("x = 1\ndef app(:\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(sys.path))
    prepare_import_path(None, None)
    with pytest.raises(ConfigError) as info:
        load_app("typo_mod_xyz:app")
    assert f"{tmp_path / 'typo_mod_xyz.py'}:2" in info.value.message
    assert "loading.py" not in info.value.message


def test_chdir_and_pythonpath_come_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare_import_path changes directory and puts pythonpath, then the directory, first."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "inlib_mod_xyz.py").write_text("app = lambda e, s: []\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(sys.path))
    added = prepare_import_path("proj", "../lib")
    assert os.getcwd() == str(tmp_path / "proj")
    assert sys.path[:2] == added == [str(tmp_path / "lib"), str(tmp_path / "proj")]
    assert callable(load_app("inlib_mod_xyz:app"))


def test_missing_module_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that is nowhere names the working directory that was searched."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(sys.path))
    prepare_import_path(None, None)
    with pytest.raises(ConfigError) as info:
        check_app_spec("myproject_nowhere_xyz.wsgi:app")
    assert f"the working directory {tmp_path}" in info.value.message
    assert "'chdir' or 'pythonpath'" in info.value.message


def test_not_callable_object() -> None:
    """A non-callable object is rejected."""
    with pytest.raises(ConfigError):
        load_app(42)  # type: ignore[arg-type]


def test_check_spec_imports_nothing() -> None:
    """check_app_spec finds a missing top-level package without importing the module."""
    with pytest.raises(ConfigError):
        check_app_spec("no_such_module_xyz.sub:app")
    check_app_spec("tests.apps.broken:app")  # exists; not imported, so no error yet
