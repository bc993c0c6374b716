"""The ``servekit`` command: ``run`` and ``explain``. Flags derive from the config models."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from servekit import __version__
from servekit.errors import ConfigError
from servekit.plan import ENV_PREFIX, Plan, all_options, resolve
from servekit.reference import option_reference
from servekit.run import fail, run_or_exit

__all__ = ["build_parser", "main"]


def _add_options(parser: argparse.ArgumentParser) -> None:
    strategies = (
        "auto, dev (werkzeug), threaded, processes, sync, gthread, gevent, eventlet, tornado"
    )
    parser.add_argument(
        "--strategy",
        "-s",
        default=None,
        help=f"how to serve: {strategies} [env {ENV_PREFIX}STRATEGY]",
    )
    for row in option_reference():
        name = row["name"]
        dashed = name.replace("_", "-")
        text = f"{row['help']} Default: {row['default']}. [env {row['env']}]"
        if " / " in row["flag"]:
            group = parser.add_mutually_exclusive_group()
            group.add_argument(
                f"--{dashed}", dest=name, action="store_const", const="true", help=text
            )
            group.add_argument(
                f"--no-{dashed}",
                dest=name,
                action="store_const",
                const="false",
                help=argparse.SUPPRESS,
            )
        else:
            parser.add_argument(
                f"--{dashed}", dest=name, default=None, metavar=name.upper(), help=text
            )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``servekit``."""
    parser = argparse.ArgumentParser(
        prog="servekit",
        description="Serve a WSGI app: werkzeug for development, embedded gunicorn for production.",
    )
    parser.add_argument("--version", action="version", version=f"servekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,explain}")
    run = sub.add_parser("run", help="serve APP", description="Serve APP until SIGTERM/SIGINT.")
    run.add_argument(
        "app", metavar="APP", help="import string 'package.module:app' or 'module:factory()'"
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
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in all_options() if getattr(args, name) is not None}


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
    for name, setting in plan.settings.items():
        value = "-" if setting.value is None else str(setting.value)
        rows.append((name, value, setting.source))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    if plan.capacity is None:
        lines.append(f"capacity: no fixed limit: {plan.capacity_text}")
    else:
        noun = "request" if plan.capacity == 1 else "requests"
        lines.append(f"capacity: serves up to {plan.capacity} {noun} at once: {plan.capacity_text}")
    for note in plan.notes:
        lines.append(f"note: {note}")
    for text in plan.warnings:
        lines.append(f"WARNING: {text}")
    return "\n".join(lines)


def _reject_unknown(parser: argparse.ArgumentParser, unknown: list[str]) -> None:
    """Exit 2 naming the first unknown argument, with the closest flag if there is one."""
    import difflib

    word = unknown[0]
    flags = ["--strategy", "--json", *(f"--{n.replace('_', '-')}" for n in all_options())]
    flags += [f"--no-{n.replace('_', '-')}" for n in all_options()]
    close = difflib.get_close_matches(word.split("=")[0], flags, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    kind = "option" if word.startswith("-") else "argument"
    parser.exit(2, f"servekit: error: unknown {kind} {word!r}{hint}\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``servekit`` command line (exit status 2 on user errors)."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _reject_unknown(parser, unknown)
    try:
        if args.command == "explain":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                plan = resolve(
                    args.app, args.strategy, source="cli", enforce_guard=False, **_options(args)
                )
            if plan.app is not None:
                from servekit.loading import check_app_spec

                check_app_spec(plan.app)
            if args.json:
                print(json.dumps(plan.describe(), indent=2))
            else:
                print(render_explain(plan))
            return
    except ConfigError as error:
        fail(error)
        return

    def make_plan() -> Plan:
        from servekit.loading import check_app_spec

        check_app_spec(args.app)
        return resolve(args.app, args.strategy, source="cli", **_options(args))

    run_or_exit(make_plan)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
