"""Gunicorn worker classes that servekit ships itself."""
