"""The user's-eye layer: servekit's built wheel in fresh venvs, driven from project directories."""
