"""Every example runs (or, for Docker and Kubernetes, is checked against `servekit explain`)."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from servekit.sizing import usable_cpus
from servekit.testing import running
from tests.conftest import ROOT, children_of, free_port, get, run_cli, start_logged, stop_logged

EXAMPLES = ROOT / "examples"


@pytest.mark.server
def test_bare_wsgi_example(tmp_path: Path) -> None:
    """examples/hello.py serves under the demo's default strategy."""
    with running("examples.hello:app", cwd=ROOT, log_dir=tmp_path) as server:
        assert get(server.url, "/") == (200, b"hello from servekit\n")
        assert get(server.url, "/sleep?s=0.01")[0] == 200


@pytest.mark.server
def test_django_example(tmp_path: Path) -> None:
    """The Django project's wsgi.py is served by `servekit run` with gthread."""
    with running(
        "examples.djangosite.wsgi:application",
        "gthread",
        workers=1,
        threads=2,
        cwd=ROOT,
        log_dir=tmp_path,
    ) as server:
        assert get(server.url, "/") == (200, b"hello from django\n")


def _entrypoint(env: dict[str, str], log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    env = {"SERVEKIT_PORT": "0", "SERVEKIT_LOG_FORMAT": "json", **env}
    return start_logged([sys.executable, str(EXAMPLES / "flask_app.py")], log, ROOT, env)


@pytest.mark.server
@pytest.mark.parametrize(
    ("env", "strategy"),
    [({}, "threaded"), ({"SERVEKIT_STRATEGY": "gthread", "SERVEKIT_WORKERS": "2"}, "gthread")],
)
def test_flask_entrypoint_switched_by_env(
    tmp_path: Path, env: dict[str, str], strategy: str
) -> None:
    """`python examples/flask_app.py` serves with the strategy SERVEKIT_STRATEGY names."""
    log = tmp_path / "flask.log"
    url, proc = _entrypoint(env, log)
    try:
        assert get(url, "/") == (200, b"hello from flask\n")
        assert get(url, "/healthz")[0] == 200
        workers = len(children_of(proc.pid))
    finally:
        code = stop_logged(proc)
    assert code == 0
    serving = next(json.loads(x) for x in log.read_text().splitlines() if '"serving"' in x)
    assert serving["strategy"] == strategy
    assert workers == (2 if strategy == "gthread" else 0)


def _dockerfile() -> tuple[dict[str, str], list[str]]:
    text = (EXAMPLES / "Dockerfile").read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    env: dict[str, str] = {}
    cmd: list[str] = []
    for line in joined.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
        if line.startswith("CMD "):
            cmd = json.loads(line[4:])  # exec form: a JSON array, or this fails
    return env, cmd


def test_dockerfile_command_is_valid_exec_form() -> None:
    """The Dockerfile's CMD is exec form and `servekit explain` accepts it with its ENV."""
    env, cmd = _dockerfile()
    assert cmd[:2] == ["servekit", "run"]
    proc = run_cli(
        "explain",
        *cmd[2:],
        "--json",
        env={k: v for k, v in env.items() if k.startswith("SERVEKIT_")},
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["strategy"], data["server"], data["env"]) == ("gthread", "gunicorn", "production")
    assert data["options"]["host"] == {"value": "0.0.0.0", "source": "SERVEKIT_HOST"}
    assert data["warnings"] == []


def _deployment() -> dict[str, Any]:
    docs = list(yaml.safe_load_all((EXAMPLES / "kubernetes.yaml").read_text()))
    deployment: dict[str, Any] = next(d for d in docs if d["kind"] == "Deployment")
    return deployment


def test_kubernetes_manifest() -> None:
    """Probes, a grace period longer than the drain, production env, and a valid command."""
    spec = _deployment()["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SERVEKIT_ENV"] == "production"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["readinessProbe"]["httpGet"]["port"] == "metrics"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] > int(env["SERVEKIT_GRACEFUL_TIMEOUT"]) + pre_stop
    command = container["command"] + container["args"]
    assert command[:2] == ["servekit", "run"]
    proc = run_cli("explain", *command[2:], "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["strategy"] == "gthread"
    assert data["options"]["graceful_timeout"]["value"] == int(env["SERVEKIT_GRACEFUL_TIMEOUT"])


@pytest.mark.server
def test_kubernetes_metric_names_exist(tmp_path: Path) -> None:
    """Every servekit_* name the manifests use (HPA, adapter rule) is served at /metrics,
    the metrics port is the container's, and /ready answers there."""
    text = (EXAMPLES / "kubernetes.yaml").read_text()
    docs = list(yaml.safe_load_all(text))
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env["SERVEKIT_METRICS"].endswith(f":{ports['metrics']}")
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    derived = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]}
    rules = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.yaml"])
    produced = {r["name"]["as"] for r in rules["rules"]}
    assert derived <= produced
    used = set(re.findall(r"servekit_[a-z_]+", yaml.safe_dump(rules))) - produced
    metrics_port = free_port()
    with running(
        "tests.apps.slow:app", "gthread", workers=1, metrics=f"127.0.0.1:{metrics_port}",
        cwd=ROOT, log_dir=tmp_path,
    ):
        status, body = get(f"http://127.0.0.1:{metrics_port}", "/metrics")
        assert status == 200
        served = set(re.findall(r"^(servekit_[a-z_]+)", body.decode(), re.MULTILINE))
        assert used and used <= served, used - served
        assert get(f"http://127.0.0.1:{metrics_port}", "/ready") == (200, b"ready\n")


def test_kubernetes_cpu_limit_sizes_workers(tmp_path: Path) -> None:
    """The manifest's CPU limit, as the cgroup quota it becomes, is what servekit sizes from."""
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    limit = container["resources"]["limits"]["cpu"]
    cpus = float(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cpu.max").write_text(f"{int(cpus * 100000)} 100000\n")
    proc_cgroup = tmp_path / "self_cgroup"
    proc_cgroup.write_text("0::/\n")
    assert usable_cpus(root, proc_cgroup) == min(math.ceil(cpus), len(os.sched_getaffinity(0)))
