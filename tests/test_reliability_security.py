"""Security defaults: what servekit must never expose, whatever the input.

The werkzeug debugger never listens beyond loopback; proxies are not trusted by
default (and gunicorn's own ``FORWARDED_ALLOW_IPS`` cannot widen that); TLS with a
certificate made here really handshakes on every strategy, and a bad key is a
clear exit 2; a unix socket is not world-accessible; the development-server guard
is silenced only by an explicit ``guard=off``, which is then said in the log.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import socket
import ssl
import stat
import subprocess
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servekit import ConfigError, DevServerWarning, resolve
from servekit.guards import is_loopback
from servekit.resolver import ENV_PREFIX
from tests.conftest import free_port, make_certificate, port_is_free, run_cli
from tests.test_reliability_input import examples

pytestmark = pytest.mark.reliability

WERKZEUG = ["dev", "threaded", "processes"]
GUNICORN = ["sync", "gthread", "gevent", "eventlet", "tornado"]
SMALL: dict[str, dict[str, Any]] = {
    "dev": {},
    "threaded": {},
    "processes": {"workers": 2},
    "sync": {"workers": 1},
    "gthread": {"workers": 1, "threads": 2},
    "gevent": {"workers": 1, "worker_connections": 10},
    "eventlet": {"workers": 1, "worker_connections": 10},
    "tornado": {"workers": 1, "threads": 2},
}


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """What the server told the app about the request: scheme and remote address."""
    body = json.dumps(
        {"scheme": environ["wsgi.url_scheme"], "remote": environ.get("REMOTE_ADDR")}
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


ECHO_APP = "tests.test_reliability_security:echo_app"


# -- the debugger -----------------------------------------------------------------------

def _valid_host(host: str) -> bool:
    from servekit.config import check_host

    try:
        check_host(host)
    except ValueError:
        return False
    return True


NON_LOOPBACK = st.one_of(
    st.ip_addresses(v=4).filter(lambda a: not a.is_loopback).map(str),
    st.ip_addresses(v=6).filter(lambda a: not a.is_loopback and a.ipv4_mapped is None).map(str),
    st.sampled_from(["0.0.0.0", "::", "example.com", "myhost", "localhost.example.com"]),
    st.text("abcdefghijklmnopqrstuvwxyz-.", min_size=1, max_size=20).filter(
        lambda h: h.strip(".") != "localhost"
    ),
)


@examples(300, 3000)
@given(
    host=NON_LOOPBACK,
    strategy=st.sampled_from([*WERKZEUG, "auto"]),
    via=st.sampled_from(["host", "bind", "SERVEKIT_HOST", "SERVEKIT_BIND"]),
    debug_via=st.sampled_from(["code", "SERVEKIT_DEBUG"]),
    env=st.sampled_from(["development", "production"]),
    guard=st.sampled_from([None, "warn", "error", "off"]),
)
def test_debugger_is_refused_beyond_loopback(
    host: str, strategy: str, via: str, debug_via: str, env: str, guard: str | None
) -> None:
    """debug=True on any non-loopback address, from any source, in any mode (guard=off
    too): a ConfigError naming 'debug'. Only ``auto`` in production, which never runs
    the debugger (it serves gthread), leaves it unused."""
    if is_loopback(host):
        return
    shown = f"[{host}]" if ":" in host else host
    value = f"{shown}:8000" if "bind" in via.lower() else host
    options: dict[str, Any] = {"env": env}
    environ: dict[str, str] = {}
    if guard:
        options["guard"] = guard
    if via.startswith(ENV_PREFIX):
        environ[via] = value
    else:
        options[via] = value
    if debug_via == "code":
        options["debug"] = True
    else:
        environ["SERVEKIT_DEBUG"] = "1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DevServerWarning)
        try:
            plan = resolve(None, strategy, environ=environ, cpus=1, **options)
        except ConfigError as error:
            if guard == "error" and env == "production" and error.option == "guard":
                return  # refused already, as the development server in production
            if error.option in ("host", "bind") and not _valid_host(host):
                return  # not a host name at all: refused before the debugger is considered
            assert error.option == "debug", error.message
            return
    assert strategy == "auto" and plan.strategy == "gthread", plan.describe()
    assert "debug" not in plan.settings


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.8.9.10"])
def test_debugger_on_loopback_is_allowed(host: str) -> None:
    """The debugger is refused for what it exposes, not always: loopback is fine."""
    plan = resolve(None, "dev", environ={}, host=host, debug=True)
    assert plan.settings["debug"].value is True


def test_debugger_beyond_loopback_exits_2_even_with_guard_off() -> None:
    """The command line, from the environment: exit 2 naming debug, no server."""
    port = free_port()
    proc = run_cli(
        "run",
        "tests.apps.slow:app",
        "--strategy",
        "threaded",
        f"--port={port}",
        env={"SERVEKIT_DEBUG": "true", "SERVEKIT_HOST": "0.0.0.0", "SERVEKIT_GUARD": "off"},
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("servekit: error: option 'debug'")
    assert "Traceback" not in proc.stderr
    assert port_is_free(port)


# -- trusted proxies --------------------------------------------------------------------


@pytest.mark.parametrize("strategy", [*GUNICORN, "auto"])
def test_no_proxy_is_trusted_beyond_loopback_by_default(strategy: str) -> None:
    """forwarded_allow_ips defaults to loopback, never '*', and gunicorn's own
    FORWARDED_ALLOW_IPS variable does not reach the embedded gunicorn."""
    from servekit.backends.gunicorn.app import gunicorn_settings

    environ = {"FORWARDED_ALLOW_IPS": "*", "SERVEKIT_ENV": "production"}
    plan = resolve(None, strategy, environ=environ, cpus=1)
    setting = plan.settings["forwarded_allow_ips"]
    assert (setting.value, setting.source) == ("127.0.0.1,::1", "default")
    assert gunicorn_settings(plan)["forwarded_allow_ips"] == "127.0.0.1,::1"


@pytest.mark.server
@pytest.mark.parametrize("strategy", ["threaded", "sync", "gthread", "gevent", "tornado"])
def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    serve_app: Any, strategy: str
) -> None:
    """A client that is not a trusted proxy cannot claim https with X-Forwarded-Proto
    (gunicorn's FORWARDED_ALLOW_IPS=* in the server's environment changes nothing)."""
    options = dict(SMALL[strategy])
    options["forwarded_allow_ips"] = "10.9.8.7"  # so 127.0.0.1 is not trusted
    server = serve_app(ECHO_APP, strategy=strategy, env={"FORWARDED_ALLOW_IPS": "*"}, **options)
    seen = _get_json(server.url, {"X-Forwarded-Proto": "https", "X-Forwarded-For": "6.6.6.6"})
    assert seen == {"scheme": "http", "remote": "127.0.0.1"}


def _get_json(url: str, headers: dict[str, str]) -> Any:
    host, port = url.rsplit("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        conn.request("GET", "/", headers=headers)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A certificate for 127.0.0.1 and its key, and keys that do not work with it."""
    directory = tmp_path_factory.mktemp("tls")
    files = {"cert": directory / "cert.pem", "key": directory / "key.pem"}
    make_certificate(files["cert"], files["key"])
    other_cert = directory / "other-cert.pem"
    files["other key"] = directory / "other-key.pem"
    make_certificate(other_cert, files["other key"])
    files["encrypted key"] = directory / "encrypted.pem"
    subprocess.run(
        [
            "/usr/bin/openssl",
            "pkey",
            "-in",
            str(files["key"]),
            "-aes256",
            "-passout",
            "pass:secret",
            "-out",
            str(files["encrypted key"]),
        ],
        check=True,
        capture_output=True,
    )
    files["garbage"] = directory / "garbage.pem"
    files["garbage"].write_text("not a key\n")
    files["directory"] = directory
    files["missing"] = directory / "missing.pem"
    return files


@pytest.mark.server
@pytest.mark.parametrize("strategy", [*WERKZEUG, *GUNICORN])
def test_tls_really_handshakes(serve_app: Any, strategy: str, tls_files: dict[str, Path]) -> None:
    """With a certificate made here, a verifying client completes a TLS 1.2+ handshake
    and gets its answer; plain HTTP on the same port gets no answer."""
    server = serve_app(
        strategy=strategy,
        certfile=str(tls_files["cert"]),
        keyfile=str(tls_files["key"]),
        **SMALL[strategy],
    )
    assert server.url.startswith("https://127.0.0.1:")
    port = int(server.url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(tls_files["cert"]))  # verifies
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert ("IP Address", "127.0.0.1") in tls.getpeercert()["subjectAltName"]
        tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        reply = b""
        with contextlib.suppress(ssl.SSLEOFError):  # a close without close_notify
            while chunk := tls.recv(65536):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 200") or reply.startswith(b"HTTP/1.0 200"), reply[:100]
    assert reply.endswith(b"\r\n\r\nok")
    # Plain HTTP to the TLS port: a failed handshake, never the app's answer.
    with socket.create_connection(("127.0.0.1", port), timeout=15) as plain:
        reply = b""
        with contextlib.suppress(OSError):
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while chunk := plain.recv(65536):
                reply += chunk
    assert not reply.startswith(b"HTTP/1.1 200") and not reply.endswith(b"ok"), reply[:100]


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("missing", ["'keyfile'", "does not exist"]),
        ("directory", ["'keyfile'", "is not a regular file"]),
        ("garbage", ["'keyfile'", "holds no PEM private key"]),
        ("encrypted key", ["'keyfile'", "is encrypted"]),
        ("other key", ["'keyfile'", "does not belong to the certificate"]),
    ],
)
@pytest.mark.parametrize("strategy", ["threaded", "gthread"])
def test_bad_key_file_is_a_clear_exit_2(
    tls_files: dict[str, Path], key: str, words: list[str], strategy: str
) -> None:
    """A missing, unreadable, garbage, encrypted or mismatched key: exit 2 naming
    keyfile, before anything binds (no traceback, no worker boot loop, no prompt)."""
    port = free_port()
    proc = run_cli(
        "run",
        "tests.apps.slow:app",
        "--strategy",
        strategy,
        f"--port={port}",
        f"--certfile={tls_files['cert']}",
        f"--keyfile={tls_files[key]}",
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("servekit: error:")
    for word in words:
        assert word in proc.stderr
    assert port_is_free(port)


def test_certificate_file_without_a_certificate_is_named(tls_files: dict[str, Path]) -> None:
    """A certfile that holds a key (files swapped) names certfile."""
    with pytest.raises(ConfigError) as info:
        resolve(
            None,
            "sync",
            environ={},
            certfile=str(tls_files["key"]),
            keyfile=str(tls_files["cert"]),
        )
    assert info.value.option == "certfile"


# -- unix sockets -------------------------------------------------------------------------


def _unix_get(path: Path) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(15)
        sock.connect(str(path))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.server
@pytest.mark.parametrize("strategy", ["threaded", "sync", "gevent"])
def test_unix_socket_is_not_world_accessible(serve_app: Any, strategy: str, tmp_path: Path) -> None:
    """The socket file is rw for owner and group only (0660), even under umask 000,
    and it serves."""
    path = tmp_path / "s.sock"
    old = os.umask(0)  # inherited by the server
    try:
        serve_app(strategy=strategy, bind=f"unix:{path}", **SMALL[strategy])
    finally:
        os.umask(old)
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    assert os.stat(path).st_uid == os.getuid()
    assert _unix_get(path).endswith(b"\r\n\r\nok")


@pytest.mark.server
@pytest.mark.parametrize("strategy", ["dev", "sync"])
def test_unix_socket_of_a_running_server_is_not_taken_over(
    serve_app: Any, strategy: str, tmp_path: Path
) -> None:
    """A second server on the same socket path is refused (exit 2 naming bind), and the
    first keeps serving; a stale file left by a killed server is replaced."""
    path = tmp_path / "s.sock"
    first = serve_app(strategy=strategy, bind=f"unix:{path}", **SMALL[strategy])
    proc = run_cli("run", "tests.apps.slow:app", "--strategy", strategy, f"--bind=unix:{path}")
    assert proc.returncode == 2 and "'bind'" in proc.stderr and "another server" in proc.stderr
    assert _unix_get(path).endswith(b"ok")
    first.stop(9)  # SIGKILL: the socket file stays behind
    assert path.exists()
    serve_app(strategy=strategy, bind=f"unix:{path}", **SMALL[strategy])
    assert _unix_get(path).endswith(b"ok")


def test_bind_refuses_a_path_that_is_not_a_socket(tmp_path: Path) -> None:
    """A regular file at the socket path is never deleted to make room: exit 2."""
    path = tmp_path / "important.txt"
    path.write_text("keep me")
    proc = run_cli("run", "tests.apps.slow:app", "--strategy", "dev", f"--bind=unix:{path}")
    assert proc.returncode == 2 and "is not a socket" in proc.stderr
    assert path.read_text() == "keep me"


# -- the development-server guard ----------------------------------------------------------

DEPLOYMENT_SIGNS = [
    {"SERVEKIT_ENV": "production"},
    {"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
    {"DYNO": "web.1"},
    {"K_SERVICE": "svc"},
    {"FLASK_ENV": "production"},
    {"APP_ENV": "Production"},
]


@examples(200, 2000)
@given(
    sign=st.sampled_from(DEPLOYMENT_SIGNS),
    strategy=st.sampled_from(WERKZEUG),
    guard=st.one_of(
        st.none(),
        st.sampled_from(["", "   "]),
        st.sampled_from(["warn", "WARN", " Warn "]),
    ),
    via=st.sampled_from(["code", "env"]),
)
def test_guard_warns_unless_explicitly_off(
    sign: dict[str, str], strategy: str, guard: str | None, via: str
) -> None:
    """In production a werkzeug strategy warns (DevServerWarning and plan.warnings)
    whenever guard is unset, empty or 'warn', from code or the environment."""
    environ = dict(sign)
    options: dict[str, Any] = {}
    if guard is not None:
        if via == "env":
            environ["SERVEKIT_GUARD"] = guard
        elif guard.strip():
            options["guard"] = guard
    with pytest.warns(DevServerWarning):
        plan = resolve(None, strategy, environ=environ, cpus=1, **options)
    assert plan.warnings and "development server" in plan.warnings[0]


@examples(200, 2000)
@given(
    value=st.text(min_size=1, max_size=10).filter(
        lambda v: v.strip() and v.strip().lower() not in ("warn", "error", "off")
    )
    | st.sampled_from(["false", "0", "no", "none", "disable", "disabled", "silent", "of", "offf"]),
    via=st.sampled_from(["code", "env"]),
)
def test_guard_cannot_be_switched_off_by_a_near_miss(value: str, via: str) -> None:
    """Anything but warn/error/off (false, 0, no, a typo) is an error naming guard:
    never read as off."""
    environ = {"SERVEKIT_ENV": "production"}
    options: dict[str, Any] = {}
    if via == "env":
        environ["SERVEKIT_GUARD"] = value
    else:
        options["guard"] = value
    with pytest.raises(ConfigError) as info, warnings.catch_warnings():
        warnings.simplefilter("error", DevServerWarning)  # a warning instead would be wrong
        resolve(None, "threaded", environ=environ, cpus=1, **options)
    assert info.value.option == "guard"


@pytest.mark.parametrize("value", ["off", "OFF", " Off "])
def test_guard_off_is_explicit_and_noted(value: str) -> None:
    """guard=off silences the warning, and the plan (explain, the log) says it is off."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DevServerWarning)
        plan = resolve(
            None, "threaded", environ={"SERVEKIT_ENV": "production", "SERVEKIT_GUARD": value}
        )
    assert not plan.warnings
    assert any("guard is off" in note and "SERVEKIT_GUARD" in note for note in plan.notes)


@pytest.mark.parametrize("strategy", WERKZEUG)
def test_guard_error_refuses_to_start(strategy: str) -> None:
    """guard=error: exit 2 naming guard, nothing served."""
    port = free_port()
    proc = run_cli(
        "run",
        "tests.apps.slow:app",
        "--strategy",
        strategy,
        f"--port={port}",
        env={"SERVEKIT_ENV": "production", "SERVEKIT_GUARD": "error"},
    )
    assert proc.returncode == 2 and "refusing to start" in proc.stderr
    assert port_is_free(port)


@pytest.mark.server
def test_guard_warning_survives_silenced_python_warnings(serve_app: Any) -> None:
    """PYTHONWARNINGS=ignore silences DevServerWarning, not the logged warning event;
    guard=off is logged as a note."""
    server = serve_app(
        strategy="threaded", env={"PYTHONWARNINGS": "ignore", "SERVEKIT_ENV": "production"}
    )
    events = server.events()
    assert any(
        e.get("event") == "warning" and "development server" in e.get("message", "") for e in events
    ), server.log()
    off = serve_app(
        strategy="threaded",
        env={"PYTHONWARNINGS": "ignore", "SERVEKIT_ENV": "production", "SERVEKIT_GUARD": "off"},
    )
    assert not any(e.get("event") == "warning" for e in off.events())
    assert any("guard is off" in e.get("message", "") for e in off.events()), off.log()


def test_auto_never_picks_the_development_server_in_production() -> None:
    """auto resolves to gthread wherever a deployment is detected."""
    for sign in DEPLOYMENT_SIGNS:
        assert resolve(None, environ=sign, cpus=1).strategy == "gthread"


def test_loopback_check_agrees_with_ipaddress() -> None:
    """is_loopback (which gates the debugger) says loopback only for loopback."""
    for text in ["127.0.0.1", "127.255.0.1", "::1", "localhost", "LOCALHOST"]:
        assert is_loopback(text)
    for text in ["0.0.0.0", "::", "10.0.0.1", "::ffff:10.0.0.1", "example.com"]:
        assert not is_loopback(text)
    assert not ipaddress.ip_address("0.0.0.0").is_loopback
