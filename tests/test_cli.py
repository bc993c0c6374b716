"""The command line: explain output, and user errors (exit 2, one message, no traceback)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import run_cli

STRATEGIES = ["dev", "threaded", "processes", "sync", "gthread", "gevent", "eventlet", "tornado"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_explain_json_for_every_strategy(strategy: str) -> None:
    """explain --json answers for all eight names with config, capacity and warnings."""
    proc = run_cli("explain", "tests.apps.slow:app", "--strategy", strategy, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["strategy"] == strategy
    expected_server = "werkzeug" if strategy in ("dev", "threaded", "processes") else "gunicorn"
    assert data["server"] == expected_server
    assert (data["worker_class"] is None) == (expected_server == "werkzeug")
    assert data["options"]["host"] == {"value": "127.0.0.1", "source": "default"}
    assert data["warnings"] == []
    if strategy == "threaded":
        assert data["capacity"] is None
    else:
        assert isinstance(data["capacity"], int) and data["capacity"] >= 1


def test_explain_sources_and_capacity() -> None:
    """explain shows each value's source and the capacity W x T."""
    proc = run_cli(
        "explain",
        "--strategy",
        "gthread",
        "--workers",
        "2",
        "--json",
        env={"SERVEKIT_THREADS": "4", "PORT": "9100"},
    )
    data = json.loads(proc.stdout)
    assert data["options"]["workers"] == {"value": 2, "source": "cli"}
    assert data["options"]["threads"] == {"value": 4, "source": "SERVEKIT_THREADS"}
    assert data["options"]["port"] == {"value": 9100, "source": "PORT"}
    assert data["capacity"] == 8


def test_explain_human_table() -> None:
    """The human explain is an aligned table, then the capacity sentence, warnings last."""
    proc = run_cli("explain", "--strategy", "threaded", env={"SERVEKIT_ENV": "production"})
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert any(line.startswith("option ") and "source" in line for line in lines)
    assert any(line.startswith("capacity: no fixed limit") for line in lines)
    assert lines[-1].startswith("WARNING: the werkzeug development server")
    proc = run_cli("explain", "--strategy", "gthread", "--workers", "2", "--threads", "4")
    assert "capacity: serves up to 8 requests at once: 2 workers x 4 threads" in proc.stdout


def test_explain_production_warning_in_json() -> None:
    """A guard warning appears in the JSON warnings list."""
    proc = run_cli("explain", "--strategy", "dev", "--json", env={"KUBERNETES_SERVICE_HOST": "x"})
    data = json.loads(proc.stdout)
    assert data["env"] == "production"
    assert len(data["warnings"]) == 1 and "gthread" in data["warnings"][0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port that another socket is listening on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


BAD_INPUTS = [
    # (args, env, words the message must contain)
    (
        ["run", "tests.apps.slow:app", "--workers", "abc", "--strategy", "sync"],
        {},
        ["'workers'", "--workers"],
    ),
    (
        ["run", "tests.apps.slow:app", "--strategy", "sync"],
        {"SERVEKIT_WORKERS": "two"},
        ["SERVEKIT_WORKERS"],
    ),
    (["run", "tests.apps.slow:app", "--port", "70000"], {}, ["'port'", "65535"]),
    (["run", "tests.apps.slow:app"], {"SERVEKIT_PORT": "-3"}, ["SERVEKIT_PORT"]),
    (["run", "tests.apps.slow:app"], {"PORT": "http"}, ["PORT='http'"]),
    (
        ["run", "tests.apps.slow:app", "--strategy", "gevnt"],
        {},
        ["'strategy'", "did you mean 'gevent'"],
    ),
    (["run", "tests.apps.slow:app"], {"SERVEKIT_STRATEGY": "turbo"}, ["SERVEKIT_STRATEGY"]),
    (
        ["run", "tests.apps.slow:app", "--strategy", "gevent", "--threads", "4"],
        {},
        ["'threads'", "'gevent'"],
    ),
    (
        ["run", "tests.apps.slow:app", "--strategy", "dev", "--workers", "2"],
        {},
        ["'workers'", "'dev'"],
    ),
    (
        ["run", "tests.apps.slow:app", "--strategy", "sync"],
        {"SERVEKIT_WORKER_CONNECTIONS": "5"},
        ["SERVEKIT_WORKER_CONNECTIONS"],
    ),
    (
        ["run", "no_such_module_xyz:app", "--strategy", "dev"],
        {},
        ["no module named 'no_such_module_xyz'"],
    ),
    (
        ["run", "no_such_module_xyz:app", "--strategy", "gevent"],
        {},
        ["no module named 'no_such_module_xyz'"],
    ),
    (
        ["run", "tests.apps.slow:nothing", "--strategy", "threaded", "--port", "0"],
        {},
        ["no attribute 'nothing'"],
    ),
    (
        ["run", "tests.apps.slow:nothing", "--strategy", "sync", "--workers", "1", "--port", "0"],
        {},
        ["no attribute 'nothing'"],
    ),
    (
        ["run", "tests.apps.slow:app", "--strategy", "dev"],
        {"SERVEKIT_ENV": "production", "SERVEKIT_GUARD": "error"},
        ["refusing to start", "SERVEKIT_GUARD"],
    ),
    (
        ["run", "tests.apps.slow:app", "--strategy", "dev", "--debug", "--host", "0.0.0.0"],
        {},
        ["'debug'", "0.0.0.0"],
    ),
    (["run", "tests.apps.slow:app", "--log-level", "chatty"], {}, ["'log_level'"]),
    (["run", "tests.apps.slow:app"], {"SERVEKIT_WROKERS": "2"}, ["SERVEKIT_WROKERS"]),
    (["run", "tests.apps.slow:app", "--bind", "localhost"], {}, ["'bind'"]),
    (
        [
            "run",
            "tests.apps.slow:app",
            "--strategy",
            "sync",
            "--certfile",
            "/nope/cert.pem",
            "--keyfile",
            "/nope/key.pem",
        ],
        {},
        ["'certfile'", "does not exist"],
    ),
    (
        ["run", "tests.apps.slow:app", "--strategy", "sync", "--max-requests-jitter", "5"],
        {},
        ["'max_requests_jitter'"],
    ),
    (
        ["run", "tests.apps.broken:app", "--strategy", "dev"],
        {},
        ["not_installed_dependency_xyz", "broken.py:3"],
    ),
    (
        ["explain", "--strategy", "tornado", "--worker-connections", "5"],
        {},
        ["'worker_connections'", "'tornado'"],
    ),
    (["explain"], {"SERVEKIT_ACCESS_LOG": "perhaps"}, ["SERVEKIT_ACCESS_LOG"]),
    (
        ["run", "tests.apps.slow:app", "--wrokers", "2"],
        {},
        ["'--wrokers'", "did you mean --workers"],
    ),
    (
        [
            "run",
            "tests.apps.slow:app",
            "--strategy",
            "sync",
            "--gunicorn",
            '{"limit_request_lines": 10}',
        ],
        {},
        ["'gunicorn'", "'limit_request_lines'", "did you mean 'limit_request_line'"],
    ),
    (
        ["run", "tests.apps.slow:app", "--strategy", "gthread"],
        {"SERVEKIT_GUNICORN": '{"workers": 3}'},
        ["'workers'", "SERVEKIT_GUNICORN"],
    ),
    (
        ["run", "tests.apps.slow:app", "--strategy", "sync", "--gunicorn", "{not json"],
        {},
        ["'gunicorn'", "not a JSON object"],
    ),
    (
        ["run", "tests.apps.slow:app", "--strategy", "dev", "--gunicorn", "{}"],
        {},
        ["'gunicorn'", "'dev'"],
    ),
]


@pytest.mark.parametrize(("args", "env", "words"), BAD_INPUTS)
def test_bad_input_exits_2_with_a_clear_message(
    args: list[str], env: dict[str, str], words: list[str]
) -> None:
    """Exit 2, the option or variable named, no traceback, nothing served."""
    proc = run_cli(*args, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "servekit: error:" in proc.stderr
    for word in words:
        assert word in proc.stderr
    assert '"serving"' not in proc.stderr and "serving " not in proc.stderr


@pytest.mark.parametrize("strategy", ["dev", "sync"])
def test_port_in_use(busy_port: int, strategy: str) -> None:
    """A port in use is exit 2 naming the port, before anything starts."""
    proc = run_cli("run", "tests.apps.slow:app", "--strategy", strategy, "--port", str(busy_port))
    assert proc.returncode == 2
    assert "option 'port'" in proc.stderr and "already in use" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_port_in_use_via_env_names_variable(busy_port: int) -> None:
    """When the port came from the environment, the variable is named."""
    proc = run_cli("run", "tests.apps.slow:app", env={"SERVEKIT_PORT": str(busy_port)})
    assert proc.returncode == 2
    assert f"SERVEKIT_PORT={busy_port}" in proc.stderr


def test_version_and_help() -> None:
    """--version prints the version; run --help lists the option flags and env vars."""
    assert run_cli("--version").stdout.startswith("servekit ")
    text = run_cli("run", "--help").stdout
    assert "--worker-connections" in text and "SERVEKIT_WORKERS" in text


def test_explain_reports_guard_refusal_without_failing() -> None:
    """explain with guard=error shows the refusal as a warning (exit 0); run refuses (exit 2)."""
    env = {"SERVEKIT_ENV": "production", "SERVEKIT_GUARD": "error"}
    proc = run_cli("explain", "--strategy", "dev", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["warnings"][0].startswith("refusing to start")
    assert run_cli("run", "tests.apps.slow:app", "--strategy", "dev", env=env).returncode == 2


class TestGunicornHabits:
    """Flags and forms people bring from gunicorn work, or say what to use instead."""

    def test_short_flags(self) -> None:
        """-w, -b, -k and -t are --workers, --bind, --strategy and --timeout."""
        proc = run_cli(
            "explain", "-k", "gthread", "-w", "3", "-b", "127.0.0.1:9123", "-t", "7", "--json"
        )
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["strategy"] == "gthread"
        assert data["options"]["workers"] == {"value": 3, "source": "cli"}
        assert data["options"]["bind"] == {"value": "127.0.0.1:9123", "source": "cli"}
        assert data["options"]["timeout"] == {"value": 7, "source": "cli"}

    def test_repeated_bind_is_an_error(self) -> None:
        """A second --bind is refused (servekit listens on one address), not last-wins."""
        proc = run_cli(
            "explain", "--strategy", "sync", "--bind", "127.0.0.1:1", "-b", "127.0.0.1:2"
        )
        assert proc.returncode == 2
        assert "given more than once" in proc.stderr and "one address" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1

    def test_worker_class_points_to_strategy(self) -> None:
        """--worker-class says servekit picks the worker class from --strategy."""
        proc = run_cli("run", "tests.apps.slow:app", "--worker-class", "gevent")
        assert proc.returncode == 2
        assert "--strategy" in proc.stderr and "Traceback" not in proc.stderr

    def test_suggestions_are_real_flags(self) -> None:
        """'--no-threads' (no such flag: threads is not a switch) suggests a flag that exists."""
        proc = run_cli("explain", "--no-threads")
        assert proc.returncode == 2
        assert "did you mean --no-threads" not in proc.stderr
        assert "did you mean --threads" in proc.stderr

    def test_help_lists_the_no_flags(self) -> None:
        """--help shows the --no-... switches."""
        proc = run_cli("run", "--help")
        assert proc.returncode == 0
        assert "--no-access-log" in proc.stdout and "--no-reload" in proc.stdout
        assert "-w WORKERS" in proc.stdout and "-k STRATEGY" in proc.stdout

    def test_unix_socket_explain_shows_host_and_port_unused(self) -> None:
        """With a unix socket, explain shows host and port as not used."""
        proc = run_cli("explain", "--strategy", "sync", "--bind", "unix:/tmp/servekit-x.sock")
        assert proc.returncode == 0, proc.stderr
        rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
        assert "not used (unix socket)" in rows["host"]
        assert "not used (unix socket)" in rows["port"]

    def test_unbounded_capacity_reads_as_one_sentence(self) -> None:
        """The threaded capacity line is one sentence."""
        proc = run_cli("explain", "--strategy", "threaded")
        line = next(x for x in proc.stdout.splitlines() if x.startswith("capacity:"))
        assert line == "capacity: no fixed limit (one new thread per request; development server)"

    def test_module_alone_is_accepted(self) -> None:
        """'MODULE' alone is an app (its 'application', else its 'app')."""
        proc = run_cli("explain", "tests.apps.slow", "--strategy", "sync", "--json")
        assert proc.returncode == 0, proc.stderr


class TestOptionsFor:
    """servekit.testing.options_for gives each strategy only the options it takes."""

    def test_filters_per_strategy(self) -> None:
        """workers and threads go only where they apply."""
        from servekit.testing import options_for

        given = {"workers": 1, "threads": 2, "timeout": 5}
        assert options_for("threaded", **given) == {}
        assert options_for("sync", **given) == {"workers": 1, "timeout": 5}
        assert options_for("gthread", **given) == given
        assert options_for("werkzeug", workers=1) == {}

    def test_typos_are_errors(self) -> None:
        """An option no strategy has is an error, never dropped."""
        from servekit import ConfigError
        from servekit.testing import options_for

        with pytest.raises(ConfigError, match="did you mean 'workers'"):
            options_for("sync", wrokers=1)


class TestHostileConfigValues:
    """Config values that reached a socket call or a parser deep inside: exit 2, one line."""

    @pytest.mark.parametrize(
        ("args", "option"),
        [
            (["--host", ".."], "host"),
            (["--host", "a" * 64], "host"),
            (["--bind", "a..b:8000"], "bind"),
            (["--gunicorn", '{"a":' * 3000 + "1" + "}" * 3000], "gunicorn"),
            (["--gunicorn", '{"raw_env": [[[[[[[[[["x"]]]]]]]]]]}'], "gunicorn"),
            (["--gunicorn", '{"pidfile": "/nonexistent-dir-xyz/p.pid"}'], "gunicorn"),
            (["--gunicorn", '{"worker_tmp_dir": "/nonexistent-dir-xyz"}'], "gunicorn"),
        ],
    )
    def test_refused_with_one_line(self, args: list[str], option: str) -> None:
        """Each is an exit 2 naming the option, no traceback, a message of bounded length."""
        proc = run_cli("run", "tests.apps.slow:app", "--strategy", "sync", "--port", "0", *args)
        assert proc.returncode == 2, proc.stderr
        assert f"option {option!r}" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert len(proc.stderr) < 1000

    def test_host_names_still_work(self) -> None:
        """Ordinary host names and addresses pass the check."""
        for host in ("localhost", "my-host.internal", "0.0.0.0", "::1", "example.com."):
            proc = run_cli("explain", "--strategy", "sync", "--host", host)
            assert proc.returncode == 0, (host, proc.stderr)


@pytest.mark.parametrize("strategy", ["dev", "threaded", "processes", "sync", "gthread"])
def test_explain_says_slow_clients_need_a_proxy(strategy: str) -> None:
    """Where one slow client holds a worker or thread, explain says to put a proxy in front."""
    proc = run_cli("explain", "--strategy", strategy, "--json")
    notes = json.loads(proc.stdout)["notes"]
    assert any("untrusted clients" in note for note in notes), notes


@pytest.mark.parametrize("how", ["flag", "env"])
def test_config_error_is_one_json_line_with_log_format_json(how: str) -> None:
    """With --log-format json (or SERVEKIT_LOG_FORMAT=json) a config error is one JSON
    object on stderr naming the option, exit 2."""
    args = ["run", "tests.apps.slow:app", "-k", "gthread", "--threads", "0"]
    if how == "flag":
        proc = run_cli(*args, "--log-format", "json")
    else:
        proc = run_cli(*args, env={"SERVEKIT_LOG_FORMAT": "json"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    event = json.loads(lines[0])
    assert (event["event"], event["option"]) == ("error", "threads")
