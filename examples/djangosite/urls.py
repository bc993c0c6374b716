"""URLs of the example Django project."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path


def index(request: HttpRequest) -> HttpResponse:
    """Say hello."""
    return HttpResponse("hello from django\n", content_type="text/plain")


urlpatterns = [path("", index)]
