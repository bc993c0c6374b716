"""``reload`` on werkzeug: a broken save is logged and served as a 500 while the reloader watches.

werkzeug's reloader runs the server in a child process and restarts it when a
watched file changes. Without this, an import error in the child ended the child
with status 2, and the watching parent with it: one typo saved during development
stopped the server. Now the child logs the error (the user's file and line), answers
500 with the message, and watches the file that failed, so the next good save
serves again (what ``flask run`` does).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.serving import is_running_from_reloader

from servekit.errors import ConfigError
from servekit.loading import failure_location, load_app
from servekit.logs import get_logger

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from servekit.plan import Plan

__all__ = ["load_for_reload"]


def _failed_app(message: str) -> Any:
    body = f"The app failed to load; fix the file and save it to reload.\n\n{message}\n".encode()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response(
            "500 Internal Server Error",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def _never_called(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    raise RuntimeError("the reloader's watching process does not serve")  # pragma: no cover


def load_for_reload(plan: Plan) -> tuple[Any, list[str]]:
    """The app to serve under ``reload``, and the extra files the reloader must watch.

    In the watching parent nothing is imported: it never serves, and an import
    error there would end the watch before it began.

    Raises:
        ConfigError: a failure that no saved file can fix (no such module, a bad
            import string).
    """
    if not is_running_from_reloader():
        return _never_called, []
    try:
        return load_app(plan.app), []
    except ConfigError as error:
        if error.__cause__ is None:
            raise
        where = failure_location(error.__cause__)
        watched = [where[0]] if where else []
        get_logger().error(
            "app failed to load",
            message=error.message,
            watching=watched[0] if watched else None,
            action="serving 500 until the file is fixed",
        )
        return _failed_app(error.message), watched
