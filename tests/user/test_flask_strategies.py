"""``servekit run myproject.wsgi:app`` and ``servekit run myproject.wsgi`` from a user's project
directory, for every strategy: text, JSON, a multipart upload and a streamed response."""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.user.conftest import (
    STRATEGIES,
    STREAM_CHUNKS,
    Server,
    ServerGroup,
    Venv,
    http_request,
    sizing_flags,
)

pytestmark = [pytest.mark.user, pytest.mark.server, pytest.mark.timeout(300)]

UPLOAD = random.Random(9).randbytes(256 * 1024)
UPLOAD_NAME = "report 2024.bin"


def multipart(fields: dict[str, str], filename: str, content: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body as a browser sends it; return it and its Content-Type."""
    boundary = "----servekitFormBoundary7MA4YWxkTrZu0gW"
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def start_all(group: ServerGroup, venv: Venv, project: Path, app: str) -> dict[str, Server]:
    """Start ``servekit run APP`` for every strategy at once; wait until each answers or exits."""
    for strategy in STRATEGIES:
        port = group.free_port()
        argv = [venv.exe("servekit"), "run", app, "--strategy", strategy, "--port", str(port)]
        group.start(strategy, argv + sizing_flags(strategy), port, project, venv.env())
    group.wait_ready()
    return group.servers


@pytest.fixture(scope="class")
def attr_servers(
    user_venv: Venv, flask_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """Every strategy serving ``myproject.wsgi:app``."""
    with ServerGroup(tmp_path_factory.mktemp("app-attr")) as group:
        yield start_all(group, user_venv, flask_project, "myproject.wsgi:app")


@pytest.fixture(scope="class")
def module_servers(
    user_venv: Venv, flask_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """Every strategy serving ``myproject.wsgi``."""
    with ServerGroup(tmp_path_factory.mktemp("module-alone")) as group:
        yield start_all(group, user_venv, flask_project, "myproject.wsgi")


class TestAppAttribute:
    """``servekit run myproject.wsgi:app``, one server per strategy, all checks against it."""

    @pytest.mark.parametrize("strategy", STRATEGIES)
    def test_index(self, attr_servers: dict[str, Server], strategy: str) -> None:
        """The app is imported from the working directory and answers ``GET /``."""
        reply = attr_servers[strategy].get("/")
        assert (reply.status, reply.body) == (200, b"hello from myproject\n")

    @pytest.mark.parametrize("strategy", STRATEGIES)
    def test_json_post(self, attr_servers: dict[str, Server], strategy: str) -> None:
        """A JSON POST body reaches the app intact and its JSON answer comes back."""
        payload = {"name": "Zoë ✓", "items": [1, 2.5, None, True], "nested": {"a": "b" * 5000}}
        reply = http_request(
            attr_servers[strategy].require(),
            "POST",
            "/echo",
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert reply.status == 200, reply.text()[:2000]
        assert json.loads(reply.body) == payload

    @pytest.mark.parametrize("strategy", STRATEGIES)
    def test_multipart_upload(self, attr_servers: dict[str, Server], strategy: str) -> None:
        """A multipart/form-data file upload reaches the app byte for byte, with its filename."""
        body, content_type = multipart({"note": "quarterly"}, UPLOAD_NAME, UPLOAD)
        reply = http_request(
            attr_servers[strategy].require(),
            "POST",
            "/upload",
            body=body,
            headers={"Content-Type": content_type},
        )
        assert reply.status == 200, reply.text()[:2000]
        assert json.loads(reply.body) == {
            "filename": UPLOAD_NAME,
            "sha256": hashlib.sha256(UPLOAD).hexdigest(),
            "size": len(UPLOAD),
            "note": "quarterly",
        }

    @pytest.mark.parametrize("strategy", STRATEGIES)
    def test_streamed_response(self, attr_servers: dict[str, Server], strategy: str) -> None:
        """A generator response arrives whole, every chunk in order."""
        reply = attr_servers[strategy].get("/stream")
        assert (reply.status, reply.body) == (200, b"".join(STREAM_CHUNKS))

    @pytest.mark.parametrize("strategy", STRATEGIES)
    def test_stream_is_not_buffered(self, attr_servers: dict[str, Server], strategy: str) -> None:
        """A generator response's first chunk reaches the client before the generator ends."""
        server = attr_servers[strategy]
        server.require()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        try:
            conn.request("GET", "/stream")
            resp = conn.getresponse()
            assert resp.status == 200
            first = resp.read(len(STREAM_CHUNKS[0]))
            first_at = time.monotonic()
            rest = resp.read()
            last_at = time.monotonic()
        finally:
            conn.close()
        assert first + rest == b"".join(STREAM_CHUNKS)
        # The app pauses 4 x 0.25 s between chunks: a streamed first chunk comes about 1 s
        # before the last one; a buffered response delivers them together.
        assert last_at - first_at > 0.5, (
            f"first chunk only {last_at - first_at:.2f} s before the end"
        )


class TestModuleAlone:
    """``servekit run myproject.wsgi`` (no ``:attr``): ``application`` then ``app`` is served."""

    @pytest.mark.parametrize("strategy", STRATEGIES)
    def test_module_alone_serves_its_app(
        self, module_servers: dict[str, Server], strategy: str
    ) -> None:
        """MODULE alone falls back to ``MODULE:app`` when the module has no ``application``."""
        reply = module_servers[strategy].get("/")
        assert (reply.status, reply.body) == (200, b"hello from myproject\n")
