"""The ``servekit`` command: ``run``, ``explain`` and ``tune``. Flags derive from the config models."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from servekit import __version__
from servekit.errors import ConfigError
from servekit.plan import Plan
from servekit.reference import option_reference
from servekit.resolver import ENV_PREFIX, all_options, resolve
from servekit.run import fail, run_or_exit
from servekit.tune.command import add_tune_parser, run_tune

__all__ = ["build_parser", "main"]


#: gunicorn's short flags, for the options servekit shares with it (``-k`` picks the strategy)
SHORT_FLAGS = {"workers": "-w", "bind": "-b", "timeout": "-t"}
#: flags people bring from gunicorn that servekit spells otherwise
RENAMED_FLAGS = {
    "--worker-class": "--strategy (-k): servekit picks the worker class from the strategy",
    "--preload": "the gunicorn option: --gunicorn '{\"preload_app\": true}'",
}


class _Once(argparse.Action):
    """Store a flag's value, refusing the flag a second time (no silent last-wins)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        seen: set[str] = namespace.__dict__.setdefault("_given_once", set())
        if self.dest in seen:
            extra = "; servekit listens on one address" if self.dest == "bind" else ""
            parser.exit(
                2,
                f"servekit: error: option {option_string} is given more than once "
                f"(last {values!r}){extra}\n",
            )
        seen.add(self.dest)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def _add_options(parser: argparse.ArgumentParser) -> None:
    strategies = (
        "auto, dev (werkzeug), threaded, processes, sync, gthread, gevent, eventlet, tornado"
    )
    parser.add_argument(
        "--strategy",
        "-s",
        "-k",
        default=None,
        action=_Once,
        help=f"how to serve: {strategies} [env {ENV_PREFIX}STRATEGY]",
    )
    for row in option_reference():
        name = row["name"]
        dashed = name.replace("_", "-")
        text = f"{row['help']} Default: {row['default']}. [env {row['env']}]"
        if " / " in row["flag"]:
            group = parser.add_mutually_exclusive_group()
            group.add_argument(
                f"--{dashed}", dest=name, action=_Once, nargs=0, const="true", help=text
            )
            group.add_argument(
                f"--no-{dashed}",
                dest=name,
                action=_Once,
                nargs=0,
                const="false",
                help=f"Turn {name} off.",
            )
        else:
            flags = [f"--{dashed}", *([SHORT_FLAGS[name]] if name in SHORT_FLAGS else [])]
            parser.add_argument(
                *flags, dest=name, default=None, action=_Once, metavar=name.upper(), help=text
            )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``servekit``."""
    parser = argparse.ArgumentParser(
        prog="servekit",
        description="Serve a WSGI app: werkzeug for development, embedded gunicorn for production.",
    )
    parser.add_argument("--version", action="version", version=f"servekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,explain,tune}")
    run = sub.add_parser("run", help="serve APP", description="Serve APP until SIGTERM/SIGINT.")
    run.add_argument(
        "app",
        metavar="APP",
        help="import string 'package.module:app', 'module:factory()', or 'package.module' "
        "(its 'application', else its 'app'); imported from the working directory",
    )
    _add_options(run)
    explain = sub.add_parser(
        "explain",
        help="show what would be served, and how, without serving",
        description="Resolve the config and print every option with its source, the server, "
        "the capacity and the guard warnings.",
    )
    explain.add_argument(
        "app", metavar="APP", nargs="?", default=None, help="import string (optional)"
    )
    explain.add_argument("--json", action="store_true", help="print one JSON object")
    _add_options(explain)
    add_tune_parser(sub)
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        name: getattr(args, name, None)
        for name in all_options()
        if getattr(args, name, None) is not None
    }


def render_explain(plan: Plan) -> str:
    """``explain`` for people: an aligned table, then server, capacity, notes, warnings."""
    lines = []
    head = f"app: {plan.app}" if plan.app is not None else "app: (none given)"
    lines.append(head)
    chosen = (
        plan.strategy
        if plan.requested == plan.strategy
        else f"{plan.strategy} (from {plan.requested})"
    )
    lines.append(f"strategy: {chosen}")
    server = (
        plan.server
        if plan.worker_class is None
        else f"{plan.server}, worker class {plan.worker_class}"
    )
    lines.append(f"server: {server}")
    lines.append(f"environment: {plan.env} ({plan.env_reason})")
    lines.append(f"url: {plan.url()}")
    lines.append("")
    rows = [("option", "value", "source")]
    unix = isinstance(plan.address, str)
    for name, setting in plan.settings.items():
        value = "-" if setting.value is None else str(setting.value)
        source = setting.source
        if unix and name in ("host", "port"):
            value, source = "-", "not used (unix socket)"
        rows.append((name, value, source))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    if plan.capacity is None:
        lines.append(f"capacity: no fixed limit ({plan.capacity_text})")
    else:
        noun = "request" if plan.capacity == 1 else "requests"
        lines.append(f"capacity: serves up to {plan.capacity} {noun} at once: {plan.capacity_text}")
    for note in plan.notes:
        lines.append(f"note: {note}")
    for text in plan.warnings:
        lines.append(f"WARNING: {text}")
    return "\n".join(lines)


def _all_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every flag the subcommands really take (the suggestions come only from these)."""
    flags: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags.update(f for a in sub._actions for f in a.option_strings)
    return sorted(f for f in flags if f.startswith("--"))


def _reject_unknown(parser: argparse.ArgumentParser, unknown: list[str]) -> None:
    """Exit 2 naming the first unknown argument, with the closest flag if there is one."""
    import difflib

    word = unknown[0]
    flag = word.split("=")[0]
    if flag in RENAMED_FLAGS:
        parser.exit(2, f"servekit: error: unknown option {flag!r}: use {RENAMED_FLAGS[flag]}\n")
    close = difflib.get_close_matches(flag, _all_flags(parser), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    kind = "option" if word.startswith("-") else "argument"
    parser.exit(2, f"servekit: error: unknown {kind} {word!r}{hint}\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``servekit`` command line (exit status 2 on user errors)."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _reject_unknown(parser, unknown)
    if args.command == "tune":
        run_tune(args)
        return
    log_format = str(args.log_format).strip().lower() if args.log_format else None
    try:
        if args.command == "explain":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                plan = resolve(
                    args.app, args.strategy, source="cli", enforce_guard=False, **_options(args)
                )
            if plan.app is not None:
                from servekit.loading import check_app_spec, prepare_import_path

                prepare_import_path(plan.config.chdir, plan.config.pythonpath)
                check_app_spec(plan.app)
            if args.json:
                print(json.dumps(plan.describe(), indent=2))
            else:
                print(render_explain(plan))
            return
    except ConfigError as error:
        fail(error, log_format)
        return
    run_or_exit(
        lambda: resolve(args.app, args.strategy, source="cli", **_options(args)), log_format
    )


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
