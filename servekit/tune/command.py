"""``servekit tune``: its flags, checked into :class:`TuneSettings`, and its output."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servekit.tune.load import RequestSpec
    from servekit.tune.settings import TuneSettings

__all__ = ["add_tune_parser", "run_tune"]

#: flags that may be given more than once
_REPEATABLE = {"url", "header"}
_FLAGS: list[tuple[str, str, str]] = [
    ("url", "PATH[=WEIGHT]", "a path to request (repeatable; default '/'); a weight after '=' sends it that much more often, e.g. --url /search?q=a=3"),
    ("method", "METHOD", "HTTP method of every request (default GET)"),
    ("body", "FILE", "send this file (at most 1 MiB) as each request's body; Content-Type from its name"),
    ("header", "'NAME: VALUE'", "an extra request header (repeatable)"),
    ("duration", "S", "seconds of load for each measured point (default 3; each probe step half of it)"),
    ("time_limit", "S", "the most the whole run may take, servers included (default 60)"),
    ("max_concurrency", "N", "the most connections to drive at once (default 64)"),
    ("strategies", "A,B", "strategies to compare (default: sync, gthread, gevent, those installed)"),
    ("p99_ms", "MS", "the p99 latency a recommendation must meet (default: 3x the probe's p99 at concurrency 1, at least 25 ms)"),
    ("memory", "SIZE", "memory the workers may use, e.g. 512M or 2G (default: the cgroup limit, else the available memory)"),
    ("chdir", "DIR", "directory the servers import the app from (as 'servekit run --chdir')"),
    ("pythonpath", "A,B", "more import directories for the servers (as 'servekit run --pythonpath')"),
]


def add_tune_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``tune`` to the ``servekit`` subcommands (``sub``: argparse's subparsers object)."""
    tune_parser: argparse.ArgumentParser = sub.add_parser(
        "tune",
        help="measure APP on this machine and recommend a strategy and its sizes",
        description="Serve APP on 127.0.0.1, probe it at rising concurrency, classify it as "
        "CPU-bound, I/O-bound or mixed, run the candidate strategies side by side, and print "
        "the SERVEKIT_* lines of the one that serves the most within the p99 target. "
        "It calls the given paths many times: point it at a test setup.",
    )
    tune_parser.add_argument("app", metavar="APP", help="import string 'package.module:app'")
    for name, metavar, text in _FLAGS:
        tune_parser.add_argument(
            f"--{name.replace('_', '-')}", dest=f"tune_{name}", action="append", metavar=metavar, help=text
        )
    tune_parser.add_argument("--dry-run", action="store_true", help="show the plan; start nothing")
    tune_parser.add_argument("--json", action="store_true", help="print one JSON object")
    return tune_parser


def _one(args: argparse.Namespace, name: str) -> str | None:
    from servekit.errors import ConfigError

    values: list[str] | None = getattr(args, f"tune_{name}")
    if not values:
        return None
    if len(values) > 1 and name not in _REPEATABLE:
        flag = "--" + name.replace("_", "-")
        msg = f"option {flag} is given more than once (last {values[-1]!r})"
        raise ConfigError(msg, option=name)
    return values[-1]


def _request(args: argparse.Namespace) -> RequestSpec:
    from servekit.tune.load import RequestSpec
    from servekit.tune.settings import parse_header, parse_method, parse_url, read_body

    paths = tuple(parse_url(u) for u in (args.tune_url or ["/"]))
    merged: dict[str, int] = {}
    for path, weight in paths:
        merged[path] = merged.get(path, 0) + weight
    headers = [parse_header(h) for h in args.tune_header or []]
    body = None
    body_file = _one(args, "body")
    if body_file is not None:
        body, content_type = read_body(body_file)
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("Content-Type", content_type))
    method = parse_method(_one(args, "method") or ("POST" if body is not None else "GET"))
    return RequestSpec(method, tuple(merged.items()), body, tuple(headers))


def settings_from(args: argparse.Namespace) -> TuneSettings:
    """The parsed flags as checked settings.

    Raises:
        ConfigError: a bad flag value, naming the flag.
    """
    from servekit.tune.settings import TuneSettings, number, parse_memory, parse_strategies

    given: dict[str, Any] = {}
    for name in ("duration", "time_limit", "p99_ms"):
        if (text := _one(args, name)) is not None:
            given[name] = number(name, text)
    if (text := _one(args, "max_concurrency")) is not None:
        given["max_concurrency"] = int(number("max_concurrency", text, int))
    if (text := _one(args, "strategies")) is not None:
        given["strategies"] = parse_strategies(text)
    if (text := _one(args, "memory")) is not None:
        given["memory"] = parse_memory(text)
    for name in ("chdir", "pythonpath"):
        given[name] = _one(args, name)
    return TuneSettings(app=args.app, request=_request(args), **given)


def _progress(line: str) -> None:
    sys.stderr.write(f"servekit tune: {line}\n")
    sys.stderr.flush()


def run_tune(args: argparse.Namespace) -> None:
    """Run ``servekit tune``: exit 2 for a bad flag, 1 when the app cannot be measured."""
    # imported here: ``servekit run`` builds this parser too, and should not pay for tune
    from servekit.errors import ConfigError
    from servekit.run import fail
    from servekit.tune.report import render_plan, render_text, to_json
    from servekit.tune.runner import TuneError, dry_run, tune

    try:
        settings = settings_from(args)
        if args.dry_run:
            result = dry_run(settings)
            print(json.dumps(to_json(result), indent=2) if args.json else render_plan(result.plan))
            return
        if not args.json:
            paths = ", ".join(p for p, _ in settings.request.paths)
            _progress(
                f"measuring {settings.app} for up to {settings.time_limit:g} s; "
                f"{settings.request.method} {paths} will be called many times on 127.0.0.1"
            )
        result = tune(settings, progress=None if args.json else _progress)
    except ConfigError as error:
        fail(error, "console")
        return
    except TuneError as error:
        sys.stderr.write(f"servekit: error: {error}\n")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        sys.stderr.write("servekit tune: interrupted; every server it started is stopped\n")
        raise SystemExit(130) from None
    print(json.dumps(to_json(result), indent=2) if args.json else render_text(result))
