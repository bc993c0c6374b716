"""``servekit run`` with granian's own per-request glue instead of servekit's WSGI layer.

Only for the benchmarks: it splits servekit-granian's overhead over bare granian into
what servekit's socket, drain and signals cost and what its WSGI layer costs. Usage is
that of ``servekit run``: ``python -m benchmarks.granian_glue APP --strategy granian ...``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import servekit.backends.granian.runner as runner
from servekit.cli import main


def _granian_glue(plan: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    from granian.wsgi import _callback_wrapper

    return lambda app: _callback_wrapper(app, {}, None)


if __name__ == "__main__":
    runner._handler_factory = _granian_glue
    sys.argv = ["servekit", *sys.argv[1:]]
    main()
