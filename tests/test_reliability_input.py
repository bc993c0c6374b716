"""Bad input, fuzzed: every invalid value of every option is refused cleanly.

Through keyword arguments, command-line flags and ``SERVEKIT_*`` variables, an
invalid value ends in a typed :class:`servekit.ConfigError` (or exit status 2 with
one ``servekit: error:`` line) that names the option (and, from the environment,
the variable): never a traceback, never a started server, never a port left bound.
Malformed HTTP gets a 4xx or a closed connection, and the server serves others.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import string
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servekit import ConfigError, resolve, serve
from servekit.resolver import ENV_PREFIX, all_options, applies_to
from tests.conftest import HEAVY_ENV, ROOT, free_port, get, port_is_free, run_cli

pytestmark = pytest.mark.reliability

HEAVY = os.environ.get(HEAVY_ENV, "") not in ("", "0")


def examples(default: int, heavy: int) -> Any:
    """Hypothesis settings: ``default`` examples in CI, ``heavy`` with the heavy flag."""
    return settings(
        max_examples=heavy if HEAVY else default,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# -- invalid values, per option ---------------------------------------------------------

#: what pydantic accepts as a boolean (any case)
BOOL_WORDS = {"0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"}
#: characters an environment variable or a command-line argument can carry
TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
WORDS = st.text(string.ascii_letters + "!#%&*()[]{}<>?/|;~", min_size=1, max_size=12)


def _field(name: str) -> Any:
    from servekit.options import _configs

    for config in _configs().values():
        if name in config.model_fields:
            return config.model_fields[name]
    raise AssertionError(name)


def _bounds(name: str) -> tuple[int | None, int | None]:
    low = high = None
    for rule in _field(name).metadata:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return low, high


def _kind(name: str) -> str:
    annotation = _field(name).annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    inner = args[0] if args else annotation
    if get_origin(inner) is Literal:
        return "choice"
    return {int: "int", float: "float", bool: "bool", str: "str", dict: "dict"}.get(
        inner, get_origin(inner) and "dict"
    )


def _choices(name: str) -> set[str]:
    annotation = _field(name).annotation
    literal = next(a for a in get_args(annotation) if get_origin(a) is Literal)
    return {str(v) for v in get_args(literal)}


def _int_text(name: str) -> st.SearchStrategy[str]:
    low, high = _bounds(name)
    options = [
        WORDS.filter(lambda v: not v.strip().lstrip("+-").isdigit()),
        st.integers(0, 10**6).map(lambda n: f"{n}.5"),
    ]
    if low is not None:
        options.append(st.integers(low - 10**6, low - 1).map(str))
    if high is not None:
        options.append(st.integers(high + 1, high + 10**6).map(str))
    return st.one_of(options)


def _float_text(name: str) -> st.SearchStrategy[str]:
    """Text that is not a number of seconds in the field's range (``gt``/``le``)."""
    rules = _field(name).metadata
    above = next((r.gt for r in rules if getattr(r, "gt", None) is not None), None)
    high = next((r.le for r in rules if getattr(r, "le", None) is not None), None)
    options = [WORDS.filter(lambda v: not _is_number(v))]
    if above is not None:
        options.append(st.floats(-1e6, above).map(repr))
    if high is not None:
        options.append(st.floats(high + 0.5, high + 1e6).map(repr))
    return st.one_of(options)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _text_not_in(allowed: set[str]) -> st.SearchStrategy[str]:
    return st.text(TEXT, min_size=1, max_size=12).filter(
        lambda v: v.strip() != "" and v.strip().lower() not in allowed and v.lower() not in allowed
    )


def _bad_bind() -> st.SearchStrategy[str]:
    host = st.sampled_from(["127.0.0.1", "localhost", "[::1]", "example"])
    return st.one_of(
        st.text(string.ascii_letters + ".-", min_size=1, max_size=20),  # no port at all
        st.builds(lambda h, p: f"{h}:{p}", host, st.text(string.ascii_letters, min_size=1)),
        st.builds(lambda h, p: f"{h}:{p}", host, st.integers(65536, 10**7)),
        st.sampled_from(["unix:", "unix://", "[::1", "[::1]80", ":8000", "[]:"]),
        st.builds(lambda h, p: f"{h}:{p}", _bad_host(), st.integers(1, 65535)),
    )


def _bad_host() -> st.SearchStrategy[str]:
    """Names no resolver takes: empty or over-long labels, labels edged with '-', odd characters."""
    label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
    return st.one_of(
        st.text(string.ascii_letters, min_size=256, max_size=300),
        st.builds(lambda a, b: f"{a}..{b}", label, label),
        st.builds(lambda a: "a" * 64 + f".{a}", label),
        st.builds(lambda a: f"-{a}", label),
        st.builds(lambda a: f"{a}-", label),
        st.sampled_from(["..", ".", "a b", "host_name", "ex!ample", "a..", "[::1]x"]),
    )


def _bad_gunicorn() -> st.SearchStrategy[str]:
    from gunicorn.config import KNOWN_SETTINGS

    known = {s.name for s in KNOWN_SETTINGS}
    unknown = st.text(string.ascii_lowercase + "_", min_size=3, max_size=15).filter(
        lambda k: k not in known
    )
    return st.one_of(
        st.text(string.ascii_letters + "{}[]:,", min_size=1, max_size=15).filter(_not_json),
        st.sampled_from(["[]", "1", '"x"', "null", "[1, 2]", "true"]),
        unknown.map(lambda k: json.dumps({k: 1})),
        st.sampled_from(["workers", "bind", "worker_class", "timeout", "daemon"]).map(
            lambda k: json.dumps({k: 1})
        ),
        st.sampled_from(["limit_request_line", "limit_request_fields"]).map(
            lambda k: json.dumps({k: "lots"})
        ),
        st.integers(9, 3000).map(lambda depth: '{"raw_env":' + "[" * depth + "]" * depth + "}"),
        st.integers(1000, 5000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
        st.sampled_from(["access_log_format", "syslog", "capture_output"]).map(
            lambda k: json.dumps({k: True})
        ),
    )


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


def _bad_ips() -> st.SearchStrategy[str]:
    good = st.sampled_from(["127.0.0.1", "10.0.0.0/8", "::1"])
    bad = st.one_of(
        st.text(string.ascii_letters, min_size=1, max_size=10),
        st.just("*"),  # only valid on its own
        st.integers(256, 999).map(lambda n: f"10.0.0.{n}"),
    )
    return st.builds(
        lambda before, item, after: ",".join([*before, item, *after]),
        st.lists(good, max_size=2),
        bad,
        st.lists(good, max_size=2),
    ).filter(lambda v: v.strip() != "*")


def bad_file(tmp: Path) -> st.SearchStrategy[str]:
    """Paths that are no usable PEM file: missing, a directory, or garbage."""
    missing = st.text(string.ascii_letters, min_size=1, max_size=10).map(
        lambda n: f"/nonexistent-servekit/{n}.pem"
    )

    def garbage(data: bytes) -> str:
        path = tmp / f"garbage-{abs(hash(data))}.pem"
        path.write_bytes(data)
        return str(path)

    return st.one_of(missing, st.just(str(tmp)), st.binary(max_size=200).map(garbage))


def invalid_values(name: str, tmp: Path) -> st.SearchStrategy[str]:
    """Invalid values of ``name`` as text (what a flag or a variable carries)."""
    special: dict[str, st.SearchStrategy[str]] = {
        "host": _bad_host(),
        "bind": _bad_bind(),
        "metrics": _bad_bind(),
        "access_log_fields": st.one_of(
            st.sampled_from([",", " , ", "x y", "a:b", "(x)", "x-id,@"]),
            st.text(":@()<>[] ", min_size=1, max_size=8).filter(lambda v: v.strip(", ")),
        ),
        "chdir": st.text(string.ascii_letters, min_size=1, max_size=10).map(
            lambda n: f"/nonexistent-servekit/{n}"
        ),
        "pythonpath": st.text(string.ascii_letters, min_size=1, max_size=10).map(
            lambda n: f"/nonexistent-servekit/{n}"
        ),
        "certfile": bad_file(tmp),
        "keyfile": bad_file(tmp),
        "forwarded_allow_ips": _bad_ips(),
        "gunicorn": _bad_gunicorn(),
    }
    if name in special:
        return special[name]
    kind = _kind(name)
    if kind == "int":
        return _int_text(name)
    if kind == "float":
        return _float_text(name)
    if kind == "bool":
        return _text_not_in(BOOL_WORDS)
    if kind == "choice":
        return _text_not_in(_choices(name))
    raise AssertionError(f"no invalid values for option {name!r} ({kind}): add them here")


def invalid_objects(name: str) -> st.SearchStrategy[Any]:
    """Invalid values of ``name`` as Python objects of the wrong type (keyword arguments)."""
    kind = _kind(name)
    wrong: list[st.SearchStrategy[Any]] = [
        st.lists(st.integers(), max_size=2),
        st.just(object()),
    ]
    if kind == "int":
        wrong.append(st.floats().filter(lambda f: not math.isfinite(f) or f != int(f)))
    if kind == "bool":
        wrong.append(st.integers().filter(lambda n: n not in (0, 1)))
    if kind in ("str", "choice"):
        wrong.append(st.integers())
    return st.one_of(wrong)


def _companions(name: str, tls: tuple[Path, Path]) -> dict[str, str]:
    """Valid options the invalid one needs beside it to be judged alone."""
    cert, key = tls
    if name == "certfile":
        return {"keyfile": str(key)}
    if name == "keyfile":
        return {"certfile": str(cert)}
    if name == "max_requests_jitter":
        return {"max_requests": "10"}
    return {}


def _strategies_for(name: str) -> list[str]:
    return applies_to(name)


OPTIONS = all_options()


@st.composite
def invalid_option(draw: Any, tmp: Path, objects: bool = False) -> tuple[str, str, Any]:
    """(option, strategy that takes it, invalid value)."""
    name = draw(st.sampled_from(OPTIONS))
    strategy = draw(st.sampled_from(_strategies_for(name)))
    values = invalid_values(name, tmp)
    if objects:
        values = st.one_of(values, invalid_objects(name))
    return name, strategy, draw(values)


def test_every_option_has_invalid_values(tmp_path: Path) -> None:
    """The generators cover every option servekit has (a new option needs its own)."""
    for name in OPTIONS:
        invalid_values(name, tmp_path)


# -- keyword arguments -----------------------------------------------------------------


def _assert_names(error: ConfigError, name: str) -> None:
    assert error.option == name or f"'{name}'" in error.message, (name, error.message)
    assert f"'{name}'" in error.message or f"--{name.replace('_', '-')}" in error.message


@examples(300, 3000)
@given(data=st.data())
def test_invalid_keyword_argument_is_a_config_error_naming_it(
    data: st.DataObject, tmp_path: Path, tls_pair: tuple[Path, Path]
) -> None:
    """resolve(**{option: bad}) raises ConfigError naming the option, for every option."""
    name, strategy, value = data.draw(invalid_option(tmp_path, objects=True))
    with pytest.raises(ConfigError) as info:
        resolve(None, strategy, environ={}, cpus=2, **{name: value, **_companions(name, tls_pair)})
    _assert_names(info.value, name)
    assert "\n" not in info.value.message


@examples(100, 1000)
@given(data=st.data())
def test_invalid_keyword_argument_to_serve_exits_2_without_serving(
    data: st.DataObject,
    tmp_path: Path,
    tls_pair: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """serve(app, **{option: bad}): one 'servekit: error:' line naming it, exit 2."""
    name, strategy, value = data.draw(invalid_option(tmp_path, objects=True))
    options = {name: value, **_companions(name, tls_pair)}
    with pytest.raises(ConfigError):  # so serve() below cannot start a server
        resolve("tests.apps.slow:app", strategy, environ={}, **options)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        serve("tests.apps.slow:app", strategy, **options)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("servekit: error: option"), err
    assert f"'{name}'" in err


@examples(300, 3000)
@given(name=st.text(string.ascii_lowercase + "_", min_size=1, max_size=20))
def test_unknown_keyword_argument_is_named(name: str) -> None:
    """An option servekit does not have is an error naming it, never ignored."""
    if name in OPTIONS or name in ("strategy", "environ", "source", "cpus", "app"):
        return
    with pytest.raises(ConfigError) as info:
        resolve(None, "gthread", environ={}, **{name: 1})
    assert info.value.option == name and f"'{name}'" in info.value.message


@examples(300, 3000)
@given(
    option=st.sampled_from(OPTIONS),
    strategy=st.sampled_from(["dev", "threaded", "processes", "sync", "gthread", "gevent"]),
)
def test_option_the_strategy_cannot_use_is_named(option: str, strategy: str) -> None:
    """A valid value for an option the strategy does not take: an error naming both."""
    if strategy in applies_to(option):
        return
    valid = {"int": 2, "float": 2.0, "bool": True, "str": "127.0.0.1", "dict": {}}.get(
        _kind(option)
    )
    if option == "gunicorn":
        valid = {}
    with pytest.raises(ConfigError) as info:
        resolve(None, strategy, environ={}, cpus=2, **{option: valid})
    assert f"'{option}'" in info.value.message and f"'{strategy}'" in info.value.message


# -- command line and environment (real processes) ---------------------------------------


def _assert_refused(proc: subprocess.CompletedProcess[str], words: list[str], port: int) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text, text
    assert proc.stderr.startswith("servekit: error:"), text
    assert proc.stderr.count("\n") == 1, text
    assert any(word in proc.stderr for word in words), (words, proc.stderr)
    assert '"serving"' not in text and "serving " not in text
    assert port_is_free(port)


def _address_args(name: str, port: int) -> list[str]:
    return [] if name in ("port", "bind") else [f"--port={port}"]


@examples(25, 400)
@given(data=st.data())
def test_invalid_flag_exits_2_naming_it(
    data: st.DataObject, tmp_path: Path, tls_pair: tuple[Path, Path]
) -> None:
    """servekit run APP --option=bad: exit 2, one line naming --option, nothing bound."""
    name, strategy, value = data.draw(invalid_option(tmp_path))
    if _kind(name) == "bool":
        value = data.draw(st.sampled_from(["--maybe", "--" + name.replace("_", "-") + "=x"]))
    port = free_port()
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in _companions(name, tls_pair).items()]
    flag = f"--{name.replace('_', '-')}"
    if _kind(name) == "bool":
        # Switches take no value: argparse refuses the value, naming the flag.
        proc = run_cli("run", "tests.apps.slow:app", "--strategy", strategy, value)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "error:" in proc.stderr
        return
    proc = run_cli(
        "run",
        "tests.apps.slow:app",
        "--strategy",
        strategy,
        *_address_args(name, port),
        *flags,
        f"{flag}={value}",
    )
    _assert_refused(proc, [flag, f"'{name}'"], port)


@examples(25, 400)
@given(data=st.data())
def test_invalid_variable_exits_2_naming_it(
    data: st.DataObject, tmp_path: Path, tls_pair: tuple[Path, Path]
) -> None:
    """SERVEKIT_OPTION=bad servekit run APP: exit 2, one line naming the variable."""
    name, strategy, value = data.draw(invalid_option(tmp_path))
    port = free_port()
    variable = ENV_PREFIX + name.upper()
    env = {ENV_PREFIX + k.upper(): v for k, v in _companions(name, tls_pair).items()}
    env[variable] = value
    proc = run_cli(
        "run",
        "tests.apps.slow:app",
        "--strategy",
        strategy,
        *_address_args(name, port),
        env=env,
    )
    _assert_refused(proc, [variable], port)


@examples(10, 200)
@given(suffix=st.text(string.ascii_uppercase + "_", min_size=1, max_size=15))
def test_unknown_variable_exits_2_naming_it(suffix: str) -> None:
    """SERVEKIT_<anything unknown>: exit 2 naming the variable (a typo never goes unnoticed)."""
    if suffix.lower() in [*OPTIONS, "strategy"]:
        return
    port = free_port()
    proc = run_cli("run", "tests.apps.slow:app", f"--port={port}", env={ENV_PREFIX + suffix: "1"})
    _assert_refused(proc, [ENV_PREFIX + suffix], port)


@pytest.mark.server
@pytest.mark.parametrize("strategy", ["threaded", "sync", "gevent"])
@pytest.mark.parametrize("option", ["host", "bind-tcp", "bind-unix", "app-missing", "app-broken"])
def test_errors_found_while_starting_leave_nothing_bound(
    tmp_path: Path, strategy: str, option: str
) -> None:
    """Errors found only while starting (an address that cannot be bound, an app that
    cannot be imported) are exit 2 naming the cause, with the port released."""
    port = free_port()
    app, args, words = "tests.apps.slow:app", [f"--port={port}"], ["'host'"]
    if option == "host":
        args.append("--host=192.0.2.1")  # TEST-NET: not an address of this machine
    elif option == "bind-tcp":
        args, words = ["--bind=192.0.2.1:0"], ["'bind'"]
    elif option == "bind-unix":
        args, words = [f"--bind=unix:{tmp_path}/missing/dir/s.sock"], ["'bind'"]
    elif option == "app-missing":
        app, words = "tests.apps.slow:nothing", ["nothing"]
    else:
        app, words = "tests.apps.broken:app", ["not_installed_dependency_xyz"]
    if strategy != "threaded":
        args.append("--workers=2")
    proc = run_cli("run", app, "--strategy", strategy, *args)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text
    assert any(w in text for w in words), text
    assert port_is_free(port)


# -- malformed HTTP ----------------------------------------------------------------------

HTTP_CONFIGS: dict[str, dict[str, Any]] = {
    "dev": {},
    "threaded": {},
    "processes": {"workers": 2},
    # timeout=5: a stalled client is let go after 5 s instead of the default 30
    "sync": {"workers": 2, "timeout": 5},
    "gthread": {"workers": 2, "threads": 2, "timeout": 5},
    "gevent": {"workers": 1, "worker_connections": 10, "timeout": 5},
    "eventlet": {"workers": 1, "worker_connections": 10, "timeout": 5},
    "tornado": {"workers": 1, "threads": 2, "timeout": 5},
}

MALFORMED: dict[str, bytes] = {
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 HELLO\r\n\r\n",
    "no version": b"GET /\r\n\r\n",
    "bad version": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    "bad method": b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "huge request line": b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "huge header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n",
    "many headers": b"GET / HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(500))
    + b"\r\n",
    "header without colon": b"GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "bad content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "length and chunked": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two lengths": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "null bytes": b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
}


def _send_raw(url: str, data: bytes, timeout: float = 15.0) -> bytes | None:
    """Send ``data`` and read until the server closes; None when it reset the connection."""
    host, port = url.rsplit("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:  # reset, broken pipe, not connected: the server hung up
            return None
    return b"".join(chunks)


def _status(reply: bytes) -> int | None:
    parts = reply.split(b"\r\n", 1)[0].split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


@pytest.fixture(scope="module", params=list(HTTP_CONFIGS))
def http_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One server per strategy for all the malformed requests."""
    from servekit.testing import running

    strategy = request.param
    with running(
        "tests.apps.slow:app",
        strategy,
        cwd=ROOT,
        log_dir=tmp_path_factory.mktemp(strategy),
        access_log=False,
        **HTTP_CONFIGS[strategy],
    ) as server:
        yield strategy, server


@pytest.mark.server
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_gets_4xx_or_close(http_server: Any, case: str) -> None:
    """Each malformed request: a 4xx (or the connection closed); then a good one works."""
    strategy, server = http_server
    reply = _send_raw(server.url, MALFORMED[case])
    if reply:  # b"" or None: closed or reset without an answer, also acceptable
        status = _status(reply)
        # 505 (HTTP Version Not Supported) is the precise answer to HTTP/9.9.
        allowed = status == 505 if case == "bad version" else False
        assert status is not None and (400 <= status < 500 or allowed), (
            strategy,
            case,
            reply[:200],
        )
    assert get(server.url, "/", timeout=15) == (200, b"ok")
    assert server.process.poll() is None


@pytest.mark.server
def test_slow_client_does_not_stop_the_others(http_server: Any) -> None:
    """A client that sends half a request head and stalls: others are still served
    (at once where there is spare capacity, after its read times out where there is
    none: dev), and the stalled connection is closed in the end."""
    strategy, server = http_server
    host, port = server.url.rsplit("//", 1)[1].split(":")
    stalled = socket.create_connection((host, int(port)), timeout=60)
    stalled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    try:
        time.sleep(0.3)
        replies = []

        def others() -> None:
            replies.append(get(server.url, "/", timeout=60))

        helpers = [threading.Thread(target=others) for _ in range(3)]
        for helper in helpers:
            helper.start()
        for helper in helpers:
            helper.join(70)
        assert replies == [(200, b"ok")] * 3
        if strategy != "dev" and not HEAVY:
            # closed at header_timeout (10 s here), as dev shows; the deadlines of every
            # strategy are timed with short values in tests/test_reliability_slow_clients.py
            return
        # The stalled connection is answered with an error or closed, not kept forever.
        stalled.settimeout(60)
        with contextlib.suppress(OSError):
            while stalled.recv(65536):
                pass
    finally:
        stalled.close()
