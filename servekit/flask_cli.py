"""``flask serve``: Flask's own app discovery, served by servekit (the ``flask`` extra).

``flask --app hello serve --strategy gthread --workers 2`` finds the app exactly as
``flask run`` does (``--app``, ``FLASK_APP``, ``wsgi.py``/``app.py``, factories) and
accepts every servekit option as a flag. With a gunicorn strategy each worker runs
Flask's discovery itself, after any gevent/eventlet monkey-patch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import click
from flask.cli import NoAppException, ScriptInfo, pass_script_info

from servekit.errors import ConfigError
from servekit.loading import prepare_import_path
from servekit.plan import Plan
from servekit.reference import option_reference
from servekit.resolver import resolve
from servekit.run import run_or_exit

__all__ = ["discovered_app", "serve_command"]

_FACTORY = "servekit.flask_cli:discovered_app()"


def discovered_app() -> Any:
    """The app Flask discovers from ``FLASK_APP`` (or ``wsgi.py``/``app.py``) in this process."""
    return ScriptInfo(app_import_path=os.environ.get("FLASK_APP") or None).load_app()


def _with_servekit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for row in reversed(option_reference()):
        dashed = row["name"].replace("_", "-")
        text = f"{row['help']} [env {row['env']}]"
        if " / " in row["flag"]:
            option = click.option(f"--{dashed}/--no-{dashed}", row["name"], default=None, help=text)
        else:
            option = click.option(f"--{dashed}", row["name"], default=None, help=text)
        command = option(command)
    return click.option(
        "--strategy", "-s", default=None, help="How to serve [env SERVEKIT_STRATEGY]."
    )(command)


@click.command("serve", help="Serve the app with servekit (werkzeug or an embedded gunicorn).")
@_with_servekit_options
@pass_script_info
def serve_command(info: ScriptInfo, /, strategy: str | None, **options: Any) -> None:
    """Resolve servekit's config for the discovered app and serve it."""
    given = {name: value for name, value in options.items() if value is not None}
    if info.app_import_path:
        os.environ["FLASK_APP"] = info.app_import_path  # workers rediscover the same app

    def make_plan() -> Plan:
        plan = resolve(_FACTORY, strategy, source="cli", **given)
        if plan.server == "werkzeug":
            prepare_import_path(plan.config.chdir, plan.config.pythonpath)
            try:
                app = info.load_app()
            except NoAppException as exc:
                msg = f"app: {exc}"
                raise ConfigError(msg, option="app") from None
            plan = dataclasses.replace(plan, app=app)
        return plan

    run_or_exit(make_plan)
