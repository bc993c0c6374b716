"""WSGI entry point of the example Django project, as ``django-admin startproject`` writes it.

Serve it with ``servekit run examples.djangosite.wsgi:application --strategy gthread``.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.djangosite.settings")

application = get_wsgi_application()
