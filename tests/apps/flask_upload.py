"""A Flask app that reads uploads as Flask apps do (``request.get_data()``, ``request.files``).

Flask turns an exception raised while it reads the body into its own 500 page: servekit's
``max_body_size`` must still answer 413 for a chunked upload past it.
"""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.post("/upload")
def upload() -> str:
    """The body's length (read whole)."""
    return str(len(request.get_data()))


@app.post("/form")
def form() -> str:
    """The uploaded files' total size (multipart, parsed by werkzeug)."""
    return str(sum(len(f.read()) for f in request.files.values()))
