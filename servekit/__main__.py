"""``python -m servekit``."""

from servekit.cli import main

main()
