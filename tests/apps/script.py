"""An entrypoint script: serve() and then code that must run once, in the main process only."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from servekit import serve
from tests.apps.slow import app

if __name__ == "__main__":
    serve(app, port=0, log_format="json")
    marker = os.environ["AFTER_SERVE_MARKER"]
    with open(marker, "a") as fh:
        fh.write(f"{os.getpid()}\n")
