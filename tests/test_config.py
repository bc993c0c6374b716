"""Config resolution: validation, precedence, provenance, conflicts, capacity."""

from __future__ import annotations

from typing import Any

import pytest

from servekit import (
    ConfigError,
    DevServerWarning,
    GeventConfig,
    GthreadConfig,
    resolve,
)
from servekit.resolver import all_options, applies_to


def plan(strategy: Any = None, environ: dict[str, str] | None = None, **options: Any) -> Any:
    return resolve(None, strategy, environ=environ or {}, cpus=2, **options)


def error(
    strategy: Any = None, environ: dict[str, str] | None = None, **options: Any
) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        plan(strategy, environ, **options)
    return info.value


class TestPrecedence:
    def test_env_beats_code_beats_default(self) -> None:
        """SERVEKIT_WORKERS overrides workers=, which overrides the CPU default."""
        assert plan("sync").settings["workers"].value == 5  # 2 x 2 CPUs + 1
        assert plan("sync").settings["workers"].source == "default"
        assert plan("sync", workers=3).settings["workers"].value == 3
        assert plan("sync", workers=3).settings["workers"].source == "code"
        p = plan("sync", {"SERVEKIT_WORKERS": "7"}, workers=3)
        assert (p.settings["workers"].value, p.settings["workers"].source) == (
            7,
            "SERVEKIT_WORKERS",
        )

    def test_env_strategy_beats_code_strategy(self) -> None:
        """SERVEKIT_STRATEGY switches the strategy the code chose."""
        p = plan("sync", {"SERVEKIT_STRATEGY": "gevent"})
        assert p.strategy == "gevent"
        assert p.settings["worker_connections"].value == 1000

    def test_port_fallback(self) -> None:
        """PORT applies only when neither port= nor SERVEKIT_PORT is set."""
        p = plan("dev", {"PORT": "9001"})
        assert (p.settings["port"].value, p.settings["port"].source) == (9001, "PORT")
        assert plan("dev", {"PORT": "9001"}, port=8123).settings["port"].value == 8123
        p = plan("dev", {"PORT": "9001", "SERVEKIT_PORT": "9002"}, port=8123)
        assert p.settings["port"].value == 9002
        assert p.settings["host"].value == "127.0.0.1"

    def test_web_concurrency_fallback(self) -> None:
        """WEB_CONCURRENCY sizes workers unless workers is given, and is ignored by dev."""
        p = plan("gthread", {"WEB_CONCURRENCY": "6"})
        assert (p.settings["workers"].value, p.settings["workers"].source) == (6, "WEB_CONCURRENCY")
        assert plan("gthread", {"WEB_CONCURRENCY": "6"}, workers=2).settings["workers"].value == 2
        assert "workers" not in plan("dev", {"WEB_CONCURRENCY": "6"}).settings

    def test_empty_env_var_is_unset(self) -> None:
        """SERVEKIT_WORKERS= (empty) leaves the code's value in force."""
        assert plan("sync", {"SERVEKIT_WORKERS": ""}, workers=3).settings["workers"].value == 3

    def test_cli_source_label(self) -> None:
        """Options given on the command line are labelled 'cli'."""
        p = resolve(None, "sync", environ={}, source="cli", cpus=2, workers="4")
        assert p.settings["workers"].source == "cli"
        assert p.settings["workers"].value == 4

    def test_config_object(self) -> None:
        """A typed config object carries the strategy and its options."""
        p = plan(GthreadConfig(workers=3, threads=5))
        assert (p.strategy, p.capacity) == ("gthread", 15)
        assert p.settings["threads"].source == "code"

    def test_bind_sets_host_and_port(self) -> None:
        """bind='h:p' fills host and port, labelled as coming from bind."""
        p = plan("sync", bind="0.0.0.0:9000")
        assert p.settings["host"].value == "0.0.0.0"
        assert p.settings["port"].value == 9000
        assert p.settings["port"].source == "bind"
        assert plan("sync", bind="unix:/tmp/x.sock").address == "/tmp/x.sock"
        assert plan("sync", bind="[::1]:8001").address == ("::1", 8001)


class TestValidation:
    @pytest.mark.parametrize(
        ("options", "environ", "needle"),
        [
            ({"workers": "abc"}, {}, "option 'workers' (workers='abc')"),
            ({}, {"SERVEKIT_WORKERS": "abc"}, "SERVEKIT_WORKERS='abc'"),
            ({"workers": 0}, {}, "below the minimum 1"),
            ({"port": 70000}, {}, "above the maximum 65535"),
            ({}, {"SERVEKIT_PORT": "-1"}, "SERVEKIT_PORT"),
            ({"timeout": -5}, {}, "option 'timeout'"),
            ({"log_level": "loud"}, {}, "option 'log_level'"),
            ({}, {"SERVEKIT_ACCESS_LOG": "maybe"}, "is not a boolean"),
            ({"bind": "nonsense"}, {}, "option 'bind'"),
            ({"bind": "host:99999"}, {}, "no valid port"),
            ({"forwarded_allow_ips": "1.2.3.4,not-an-ip"}, {}, "'not-an-ip' is not an IP"),
            ({"guard": "sometimes"}, {}, "option 'guard'"),
            ({"env": "staging"}, {}, "option 'env'"),
            ({"max_requests_jitter": 10}, {}, "needs option 'max_requests'"),
            ({"certfile": "/nonexistent/cert.pem"}, {}, "option 'keyfile' is required"),
        ],
    )
    def test_bad_values_name_the_option(
        self, options: dict[str, Any], environ: dict[str, str], needle: str
    ) -> None:
        """Each invalid value raises ConfigError whose message names the option or variable."""
        err = error("sync", environ, **options)
        assert needle in err.message
        assert isinstance(err, ValueError)

    def test_missing_tls_file(self, tmp_path: Any) -> None:
        """A certfile/keyfile that does not exist is named."""
        cert = tmp_path / "cert.pem"
        cert.write_text("x")
        err = error("sync", certfile=str(cert), keyfile=str(tmp_path / "missing.key"))
        assert "option 'keyfile'" in err.message and "does not exist" in err.message

    def test_unknown_option_suggests(self) -> None:
        """A misspelt keyword gets a suggestion."""
        assert "did you mean 'workers'" in error("sync", wrokers=2).message

    def test_unknown_env_var_suggests(self) -> None:
        """A misspelt SERVEKIT_ variable is an error with a suggestion."""
        err = error("sync", {"SERVEKIT_WORKER": "2"})
        assert "SERVEKIT_WORKER" in err.message and "SERVEKIT_WORKERS" in err.message

    def test_unknown_strategy_suggests(self) -> None:
        """An unknown strategy name suggests the close match and lists the choices."""
        err = error("gevnt")
        assert "did you mean 'gevent'" in err.message
        err = error(None, {"SERVEKIT_STRATEGY": "fast"})
        assert "SERVEKIT_STRATEGY='fast'" in err.message

    def test_alias_and_case(self) -> None:
        """'werkzeug' is 'dev'; names are case-insensitive."""
        assert plan("werkzeug").strategy == "dev"
        assert plan("GEVENT").strategy == "gevent"

    def test_bind_conflicts_with_port(self) -> None:
        """bind and port given together is an error, not a silent choice."""
        assert "conflicts with option 'bind'" in error("sync", bind="127.0.0.1:1", port=2).message

    def test_strategy_needs_installed_package(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A worker class whose package is missing names a pip command for this Python
        with the packages themselves, and the extra for a checkout."""
        import sys

        import servekit.resolver as resolver_module

        monkeypatch.setattr(resolver_module, "find_spec", lambda name: None)
        err = error("gevent")
        assert f"{sys.executable} -m pip install 'gevent>=24.10.1' 'packaging>=23'" in err.message
        assert "pip install '.[gevent]'" in err.message
        assert err.option == "strategy"

    def test_install_hints_match_the_extras(self) -> None:
        """Each strategy's pip requirements are its extra's in pyproject.toml."""
        import tomllib

        from servekit.backends import REGISTRY, load_strategy
        from tests.conftest import ROOT

        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]
        for name in REGISTRY:
            adapter = load_strategy(name)
            for _, extra in adapter.requires:
                assert adapter.packages == tuple(extras[extra]), name


class TestConflicts:
    @pytest.mark.parametrize(
        ("strategy", "option", "value"),
        [
            ("gevent", "threads", 4),
            ("eventlet", "threads", 4),
            ("sync", "threads", 2),
            ("gthread", "worker_connections", 10),
            ("tornado", "worker_connections", 10),
            ("dev", "workers", 2),
            ("threaded", "workers", 2),
            ("processes", "threads", 2),
            ("dev", "timeout", 10),
            ("sync", "debug", True),
            ("sync", "keepalive", 5),
        ],
    )
    def test_option_the_strategy_cannot_take(self, strategy: str, option: str, value: Any) -> None:
        """An option that makes no sense for the strategy is an error naming both."""
        err = error(strategy, **{option: value})
        assert f"option {option!r}" in err.message
        assert f"strategy {strategy!r}" in err.message
        assert err.option == option

    def test_gthread_keepalive_with_tls_is_refused(self, tls_pair: tuple[Any, Any]) -> None:
        """gthread keeps connections alive over plain HTTP only: with certfile, refused;
        without keepalive the same TLS config resolves."""
        cert, key = (str(path) for path in tls_pair)
        err = error("gthread", keepalive=5, certfile=cert, keyfile=key)
        assert err.option == "keepalive"
        assert "'gthread'" in err.message
        assert plan("gthread", certfile=cert, keyfile=key).settings["keepalive"].value == 0

    def test_auto_takes_keepalive_for_production(self) -> None:
        """auto accepts keepalive (gthread takes it in production); in development it is
        noted as unused, not refused."""
        dev = plan("auto", {"SERVEKIT_KEEPALIVE": "5"})
        assert dev.strategy == "threaded"
        assert any("'keepalive'" in note and "is not used by" in note for note in dev.notes)
        prod = plan("auto", {"SERVEKIT_KEEPALIVE": "5", "SERVEKIT_ENV": "production"})
        assert (prod.strategy, prod.settings["keepalive"].value) == ("gthread", 5)
        assert plan("auto", {"SERVEKIT_ENV": "production"}).settings["keepalive"].value == 0

    def test_conflict_from_env_names_variable(self) -> None:
        """When the environment switches the strategy, the message says so."""
        err = error("gthread", {"SERVEKIT_STRATEGY": "gevent"}, threads=8)
        assert "SERVEKIT_STRATEGY='gevent'" in err.message

    def test_typed_config_rejects_foreign_option(self) -> None:
        """The typed config object for gevent has no 'threads' field."""
        with pytest.raises(ValueError):
            GeventConfig(threads=2)  # type: ignore[call-arg]

    def test_applies_to(self) -> None:
        """The option table knows which strategies take each option."""
        assert applies_to("threads") == ["gthread", "tornado", "granian", "auto"]
        assert applies_to("worker_connections") == ["gevent", "eventlet"]
        assert "host" in all_options() and "worker_connections" in all_options()


class TestClientLimits:
    def test_every_strategy_takes_them_granian_all_but_the_rate(self) -> None:
        """header_timeout and max_body_size apply to every strategy; body_min_rate to all
        but granian (which has no timer on its body reads)."""
        werkzeug = ["dev", "threaded", "processes"]
        gunicorn = ["sync", "gthread", "gevent", "eventlet", "tornado"]
        for option in ("header_timeout", "max_body_size"):
            assert sorted(applies_to(option)) == sorted([*werkzeug, *gunicorn, "granian", "auto"])
        assert applies_to("body_min_rate") == [*werkzeug, *gunicorn, "auto"]

    def test_granian_header_timeout_is_its_header_read_timer(self) -> None:
        """granian's one timer gets header_timeout, or the shorter keepalive."""
        from servekit.backends.granian.server import granian_options

        def timer(**options: Any) -> int:
            settings = granian_options(plan("granian", **options))["http1_settings"]
            return int(settings.header_read_timeout)

        assert timer() == 10_000
        assert timer(header_timeout=2.5) == 2500
        assert timer(header_timeout=4, keepalive=2) == 2000
        assert timer(header_timeout=1, keepalive=5) == 1000

    @pytest.mark.parametrize("strategy", ["dev", "threaded", "processes"])
    def test_werkzeug_limits_from_the_options(self, strategy: str) -> None:
        """The werkzeug handler gets the values given, and the defaults otherwise."""
        from servekit.backends.werkzeug.deadlines import Limits, client_limits

        given = plan(strategy, header_timeout=2.5, body_min_rate=0, max_body_size=10)
        assert client_limits(given.config) == Limits(2.5, 0, 10)
        from_env = plan(strategy, {"SERVEKIT_HEADER_TIMEOUT": "4"}, header_timeout=2)
        assert client_limits(from_env.config).header_timeout == 4.0
        assert client_limits(plan(strategy).config) == Limits()

    def test_auto_in_development_uses_them(self) -> None:
        """auto resolving to threaded applies the limits instead of noting them unused."""
        p = plan("auto", env="development", header_timeout=3, max_body_size=100)
        assert p.strategy == "threaded"
        assert not [n for n in p.notes if "is not used by" in n], p.notes
        assert p.settings["header_timeout"].value == 3

    def test_quantum_is_a_quarter_of_the_shortest_deadline(self) -> None:
        """The wait between two looks at the deadlines follows header_timeout (at most 1 s)."""
        from servekit.backends.werkzeug.deadlines import Limits

        assert Limits(header_timeout=1).quantum == 0.25
        assert Limits(header_timeout=60).quantum == 1.0


class TestCapacity:
    @pytest.mark.parametrize(
        ("strategy", "options", "capacity"),
        [
            ("dev", {}, 1),
            ("threaded", {}, None),
            ("processes", {"workers": 3}, 3),
            ("sync", {"workers": 4}, 4),
            ("gthread", {"workers": 2, "threads": 4}, 8),
            ("gevent", {"workers": 2, "worker_connections": 10}, 20),
            ("eventlet", {"workers": 3, "worker_connections": 5}, 15),
            ("tornado", {"workers": 2, "threads": 3}, 6),
        ],
    )
    def test_table(self, strategy: str, options: dict[str, Any], capacity: int | None) -> None:
        """Capacity follows the table in DESIGN §1."""
        assert plan(strategy, **options).capacity == capacity

    def test_capacity_text(self) -> None:
        """The capacity is stated in words."""
        assert plan("gthread", workers=2, threads=4).capacity_text == "2 workers x 4 threads"


class TestAutoAndGuards:
    def test_auto_in_development(self) -> None:
        """auto is threaded in development; production-only options are noted, not used."""
        p = plan("auto", workers=4)
        assert p.strategy == "threaded"
        assert any("'workers'" in n for n in p.notes)

    def test_auto_in_production(self) -> None:
        """auto is gthread sized from the CPUs in production."""
        p = plan("auto", {"SERVEKIT_ENV": "production"})
        assert (p.strategy, p.settings["workers"].value, p.settings["threads"].value) == (
            "gthread",
            2,
            4,
        )
        assert p.settings["log_format"].value == "json"

    @pytest.mark.parametrize(
        "environ",
        [
            {"SERVEKIT_ENV": "production"},
            {"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
            {"DYNO": "web.1"},
            {"FLASK_ENV": "production"},
            {"APP_ENV": "production"},
        ],
    )
    def test_dev_server_in_production_warns(self, environ: dict[str, str]) -> None:
        """A werkzeug strategy in production emits DevServerWarning naming the fix."""
        with pytest.warns(DevServerWarning, match="gthread"):
            p = plan("dev", environ)
        assert p.warnings and "gthread" in p.warnings[0]

    def test_explicit_development_beats_signs(self) -> None:
        """env=development wins over deployment signs."""
        p = plan("dev", {"KUBERNETES_SERVICE_HOST": "x"}, env="development")
        assert p.warnings == ()

    def test_guard_error_refuses(self) -> None:
        """guard=error turns the warning into a refusal."""
        err = error("threaded", {"SERVEKIT_ENV": "production", "SERVEKIT_GUARD": "error"})
        assert "refusing to start" in err.message and "SERVEKIT_GUARD" in err.message

    def test_guard_off_is_noted(self) -> None:
        """guard=off silences the warning only explicitly, and says so."""
        p = plan("dev", {"SERVEKIT_ENV": "production"}, guard="off")
        assert p.warnings == ()
        assert any("guard is off" in n for n in p.notes)

    @pytest.mark.parametrize("guard", ["warn", "off", "error"])
    def test_debug_refused_off_loopback(self, guard: str) -> None:
        """debug on a non-loopback address is refused in every guard mode."""
        err = error("dev", host="0.0.0.0", debug=True, guard=guard)
        assert "option 'debug'" in err.message
        err = error("dev", bind="0.0.0.0:8000", debug=True)
        assert "option 'debug'" in err.message

    def test_debug_on_loopback_allowed(self) -> None:
        """debug on 127.0.0.1 or localhost is fine."""
        assert plan("dev", debug=True).settings["debug"].value is True
        assert plan("dev", debug=True, host="localhost").settings["debug"].value is True

    def test_gevent_app_object_warns(self) -> None:
        """An app object under gevent warns that it was imported before the patch."""
        p = resolve(lambda e, s: [], "gevent", environ={}, cpus=1)
        assert any("import string" in w for w in p.warnings)
        assert resolve("x:app", "gevent", environ={}, cpus=1).warnings == ()

    def test_forwarded_allow_ips_default_not_star(self) -> None:
        """Proxies are not trusted by default."""
        assert plan("sync").settings["forwarded_allow_ips"].value == "127.0.0.1,::1"


class TestExposedDevServer:
    """A werkzeug strategy on an address other machines reach warns unless env says so."""

    def test_warns_without_env(self) -> None:
        """0.0.0.0 with no env and no deployment sign: a warning naming the address."""
        plan = resolve(None, "threaded", environ={}, cpus=1, host="0.0.0.0")
        assert any("'0.0.0.0'" in w and "other machines" in w for w in plan.warnings)

    def test_explicit_development_is_quiet(self) -> None:
        """SERVEKIT_ENV=development says it is meant: no warning."""
        plan = resolve(
            None, "threaded", environ={"SERVEKIT_ENV": "development"}, cpus=1, host="0.0.0.0"
        )
        assert plan.warnings == ()

    def test_loopback_and_gunicorn_are_quiet(self) -> None:
        """Loopback, unix sockets and the production strategies never get this warning."""
        assert resolve(None, "threaded", environ={}, cpus=1).warnings == ()
        assert resolve(None, "dev", environ={}, cpus=1, bind="unix:/tmp/x.sock").warnings == ()
        assert resolve(None, "gthread", environ={}, cpus=1, host="0.0.0.0").warnings == ()


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("fast", "is not a number"),
        ("0", "is not above 0"),
        ("nan", "is not a finite number"),
        ("inf", "is not a finite number"),
        ("9999", "is above the maximum 3600"),
    ],
)
def test_seconds_option_errors_are_servekits_words(value: str, words: str) -> None:
    """A bad header_timeout from the environment: servekit's wording, naming the variable."""
    err = error("gthread", {"SERVEKIT_HEADER_TIMEOUT": value})
    assert err.option == "header_timeout" and "SERVEKIT_HEADER_TIMEOUT" in err.message
    assert words in err.message, err.message
