"""HTTP/WSGI conformance: every strategy held to bare gunicorn sync, on the wire (issue 10)."""
