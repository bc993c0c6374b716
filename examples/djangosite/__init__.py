"""A minimal Django project served by ``servekit run examples.djangosite.wsgi:application``."""
