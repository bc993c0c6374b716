"""The other ways users start servekit: ``python app.py`` calling ``serve()``, ``flask --app app
serve``, and the shipped Dockerfile's CMD and Kubernetes manifest's command run as plain commands."""

from __future__ import annotations

import http.client
import json
import shlex
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.user.conftest import ROOT, Server, ServerGroup, Venv, sizing_flags, write_files

pytestmark = [pytest.mark.user, pytest.mark.server, pytest.mark.timeout(300)]

APP_PY = textwrap.dedent(
    '''
    """A user's script that serves itself: ``python app.py STRATEGY PORT``."""

    import sys

    from flask import Flask

    from servekit import serve

    app = Flask(__name__)


    @app.get("/")
    def index():
        return "hello from app.py\\n"


    if __name__ == "__main__":
        strategy, port = sys.argv[1], int(sys.argv[2])
        if strategy in ("gevent", "eventlet"):
            # an import string: each worker imports the app after the monkey-patch
            serve("app:app", strategy=strategy, port=port, workers=1)
        elif strategy in ("dev", "threaded"):
            serve(app, strategy=strategy, port=port)
        else:
            serve(app, strategy=strategy, port=port, workers=1)
    '''
)

SCRIPT_STRATEGIES = ("threaded", "sync", "gevent")
FLASK_SERVE_STRATEGIES = ("threaded", "gthread", "gevent")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """A Dockerfile's instructions as (INSTRUCTION, rest), continuation lines joined."""
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """The variables the Dockerfile's ENV instructions set (both ``K=V ...`` and ``K V`` forms)."""
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word != "ENV":
            continue
        tokens = shlex.split(rest)
        if "=" in tokens[0]:
            env.update(token.split("=", 1) for token in tokens)  # type: ignore[misc]
        else:
            env[tokens[0]] = rest.split(None, 1)[1]
    return env


def dockerfile_cmd(instructions: list[tuple[str, str]]) -> list[str]:
    """The last CMD, which must be in exec form (a JSON array)."""
    (cmd,) = [rest for word, rest in instructions if word == "CMD"][-1:]
    argv = json.loads(cmd)
    assert isinstance(argv, list), f"CMD is not in exec form: {cmd}"
    return [str(a) for a in argv]


def k8s_container() -> dict[str, Any]:
    """The Deployment's first container from ``examples/kubernetes.yaml``."""
    docs = list(yaml.safe_load_all((ROOT / "examples" / "kubernetes.yaml").read_text()))
    (deployment,) = [d for d in docs if d and d.get("kind") == "Deployment"]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def image_project(root: Path, instructions: list[tuple[str, str]]) -> Path:
    """The image's WORKDIR: what the Dockerfile COPYs, except servekit's source (the wheel is installed)."""
    for word, rest in instructions:
        if word != "COPY":
            continue
        *sources, dest = shlex.split(rest)
        for source in sources:
            if source in ("servekit", "pyproject.toml", "README.md", "LICENSE"):
                continue
            into_dir = len(sources) > 1 or dest.endswith("/")
            target = root / dest / Path(source).name if into_dir else root / dest
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(ROOT / source, target)
    return root


def port_env(env: dict[str, str], port: int) -> dict[str, str]:
    """The free ``port`` given through the variable the file uses (SERVEKIT_PORT, else PORT)."""
    return {"SERVEKIT_PORT" if "SERVEKIT_PORT" in env else "PORT": str(port)}


#: the metrics listener's port of each server that has one
METRICS_PORTS: dict[str, int] = {}
DOCKERFILE = dockerfile_instructions((ROOT / "examples" / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def servers(
    user_venv: Venv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """Every entry point of this module, started side by side."""
    script_dir = write_files(tmp_path_factory.mktemp("script-project"), {"app.py": APP_PY})
    image_dir = image_project(tmp_path_factory.mktemp("image-workdir"), DOCKERFILE)
    with ServerGroup(tmp_path_factory.mktemp("entry-points")) as group:
        for strategy in SCRIPT_STRATEGIES:
            port = group.free_port()
            argv = [user_venv.exe("python"), "app.py", strategy, str(port)]
            group.start(f"script-{strategy}", argv, port, script_dir, user_venv.env())
        for strategy in FLASK_SERVE_STRATEGIES:
            port = group.free_port()
            argv = [user_venv.exe("flask"), "--app", "app", "serve", "--strategy", strategy]
            argv += ["--port", str(port), *sizing_flags(strategy)]
            group.start(f"flask-{strategy}", argv, port, script_dir, user_venv.env())

        docker_env = dockerfile_env(DOCKERFILE)
        port = group.free_port()
        env = {**docker_env, "SERVEKIT_HOST": "127.0.0.1", **port_env(docker_env, port)}
        group.start("docker", dockerfile_cmd(DOCKERFILE), port, image_dir, user_venv.env(env))

        container = k8s_container()
        k8s_env = {item["name"]: str(item["value"]) for item in container.get("env", [])}
        port = group.free_port()
        metrics_port = group.free_port()
        env = {
            **k8s_env,
            "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "SERVEKIT_HOST": "127.0.0.1",
            **port_env(k8s_env, port),
        }
        if "SERVEKIT_METRICS" in env:  # loopback only, on a free port
            env["SERVEKIT_METRICS"] = f"127.0.0.1:{metrics_port}"
            METRICS_PORTS["kubernetes"] = metrics_port
        argv = [str(a) for a in container["command"] + container.get("args", [])]
        group.start("kubernetes", argv, port, image_dir, user_venv.env(env))
        group.wait_ready()
        yield group.servers


@pytest.mark.parametrize("strategy", SCRIPT_STRATEGIES)
def test_python_app_py(servers: dict[str, Server], strategy: str) -> None:
    """``python app.py`` whose main block calls ``serve()`` serves the app."""
    reply = servers[f"script-{strategy}"].get("/")
    assert (reply.status, reply.body) == (200, b"hello from app.py\n")


@pytest.mark.parametrize("strategy", FLASK_SERVE_STRATEGIES)
def test_flask_serve(servers: dict[str, Server], strategy: str) -> None:
    """``flask --app app serve --strategy S`` serves the app Flask discovers."""
    reply = servers[f"flask-{strategy}"].get("/")
    assert (reply.status, reply.body) == (200, b"hello from app.py\n")


def test_dockerfile_cmd(servers: dict[str, Server]) -> None:
    """The Dockerfile's exec-form CMD, with its ENV, serves the example app and its health check."""
    server = servers["docker"]
    assert server.get("/").status == 200
    assert server.get("/healthz").status == 200


def test_dockerfile_leaves_port_to_platform() -> None:
    """The Dockerfile sets no SERVEKIT_PORT, so the platform's PORT decides where it listens."""
    env = dockerfile_env(DOCKERFILE)
    assert "SERVEKIT_PORT" not in env, f"the Dockerfile pins SERVEKIT_PORT={env['SERVEKIT_PORT']}"


def test_kubernetes_command(servers: dict[str, Server]) -> None:
    """The manifest's container command and args, with its env, serve the app and answer its probes."""
    server = servers["kubernetes"]
    container = k8s_container()
    assert server.get("/").status == 200
    for probe in ("readinessProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        if container[probe]["httpGet"]["port"] == "metrics":
            conn = http.client.HTTPConnection("127.0.0.1", METRICS_PORTS["kubernetes"], timeout=10)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
        else:
            status = server.get(path).status
        assert status == 200, f"{probe} {path}"
