"""pytest plugin (entry point ``pytest11``): the ``servekit_server`` factory fixture.

.. code-block:: python

    def test_home(servekit_server):
        url = servekit_server("myapp:app", strategy="gevent", workers=1)
        assert urllib.request.urlopen(url).status == 200

Every server the test starts is stopped (SIGTERM, then SIGKILL for its process
group) when the test ends; its log is written under the test's ``tmp_path`` and
shown in the failure report when it does not start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from servekit.testing import RunningServer, running

__all__ = ["servekit_server"]


class ServerFactory:
    """Call it to start a server; returns the URL. ``.servers`` lists what was started."""

    def __init__(self, stack: contextlib.ExitStack, tmp_path: Path) -> None:
        self._stack = stack
        self._tmp_path = tmp_path
        self.servers: list[RunningServer] = []

    def __call__(self, app: Any, strategy: str | None = None, **options: Any) -> str:
        log_dir = self._tmp_path / f"servekit-{len(self.servers)}"
        log_dir.mkdir(parents=True, exist_ok=True)
        server = self._stack.enter_context(running(app, strategy, log_dir=log_dir, **options))
        self.servers.append(server)
        return server.url


@pytest.fixture
def servekit_server(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """A factory: ``servekit_server(app, strategy=..., **options)`` serves app and returns its URL."""
    with contextlib.ExitStack() as stack:
        yield ServerFactory(stack, tmp_path)
