"""A Flask app whose entrypoint is servekit: the strategy is the operator's choice.

python examples/flask_app.py                          # development: threaded werkzeug
SERVEKIT_STRATEGY=gthread SERVEKIT_WORKERS=2 python examples/flask_app.py
SERVEKIT_ENV=production python examples/flask_app.py  # auto -> gthread, JSON logs
"""

from __future__ import annotations

import time

from flask import Flask, request

from servekit import serve

app = Flask(__name__)


@app.get("/")
def index() -> str:
    """Say hello."""
    return "hello from flask\n"


@app.get("/sleep")
def sleep() -> str:
    """Wait ``s`` seconds (an I/O-bound request)."""
    seconds = min(float(request.args.get("s", "0.1")), 10.0)
    time.sleep(seconds)
    return f"slept {seconds}\n"


@app.get("/healthz")
def healthz() -> tuple[str, int]:
    """Readiness and liveness probe."""
    return "ok\n", 200


if __name__ == "__main__":
    # An app object is imported before gevent/eventlet could patch it; for those
    # strategies run `servekit run examples.flask_app:app` (servekit warns otherwise).
    serve(app)
