"""A project made by ``django-admin startproject``, migrated, with a superuser: its admin login
works under ``servekit run mysite.wsgi:application`` for every strategy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.user.conftest import (
    STRATEGIES,
    Reply,
    Server,
    ServerGroup,
    Venv,
    http_request,
    run_command,
    sizing_flags,
)

pytestmark = [pytest.mark.user, pytest.mark.server, pytest.mark.timeout(300)]

USER, PASSWORD = "admin", "a-Long-pass-phrase-9"
SUPERUSER = ["--noinput", "--username", USER, "--email", "admin@example.com"]
LOGIN = "/admin/login/?next=/admin/"


def cookies(reply: Reply) -> dict[str, str]:
    """The cookies a response sets, by name."""
    jar: SimpleCookie = SimpleCookie()
    for header in reply.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


@pytest.fixture(scope="module")
def django_project(user_venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``django-admin startproject mysite .``, migrated, with a superuser."""
    project = tmp_path_factory.mktemp("django-project")
    env = user_venv.env({"DJANGO_SUPERUSER_PASSWORD": PASSWORD})
    steps = [
        [user_venv.exe("django-admin"), "startproject", "mysite", "."],
        [user_venv.exe("python"), "manage.py", "migrate", "--noinput"],
        [user_venv.exe("python"), "manage.py", "createsuperuser", *SUPERUSER],
    ]
    for argv in steps:
        proc = run_command(argv, project, env, timeout=120)
        assert proc.returncode == 0, f"{argv}:\n{proc.stdout}\n{proc.stderr}"
    return project


@pytest.fixture(scope="module")
def servers(
    user_venv: Venv, django_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """Every strategy serving ``mysite.wsgi:application``."""
    with ServerGroup(tmp_path_factory.mktemp("django-servers")) as group:
        for strategy in STRATEGIES:
            port = group.free_port()
            argv = [user_venv.exe("servekit"), "run", "mysite.wsgi:application"]
            argv += ["--strategy", strategy, "--port", str(port), *sizing_flags(strategy)]
            group.start(strategy, argv, port, django_project, user_venv.env())
        group.wait_ready("/admin/login/")
        yield group.servers


def login_page(server: Server) -> tuple[Reply, str, str]:
    """GET the admin login page; return it, its csrftoken cookie and the form's token."""
    page = server.get(LOGIN)
    assert page.status == 200, f"GET {LOGIN}: {page.status}\n{page.text()[:3000]}"
    csrf = cookies(page).get("csrftoken", "")
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text())
    return page, csrf, found.group(1) if found else ""


def log_in(server: Server) -> Reply:
    """POST the login form with the page's CSRF cookie and token."""
    _, csrf, token = login_page(server)
    form = {"csrfmiddlewaretoken": token, "username": USER, "password": PASSWORD, "next": "/admin/"}
    return http_request(
        server.require(),
        "POST",
        LOGIN,
        body=urlencode(form).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf}",
        },
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_login_page_sets_csrf_cookie(servers: dict[str, Server], strategy: str) -> None:
    """``GET /admin/login/`` answers 200, sets the csrftoken cookie and puts a token in the form."""
    page, csrf, token = login_page(servers[strategy])
    assert csrf, f"no csrftoken cookie: {page.headers.get_all('Set-Cookie')}"
    assert token, "no csrfmiddlewaretoken in the login form"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_login_post_with_csrf_token(servers: dict[str, Server], strategy: str) -> None:
    """The login POST carrying the CSRF cookie and token is accepted (200 or 302, never 403/500)."""
    reply = log_in(servers[strategy])
    assert reply.status in (200, 302), f"{reply.status}\n{reply.text()[:3000]}"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_logged_in_session_opens_admin(servers: dict[str, Server], strategy: str) -> None:
    """The session cookie from a successful login opens the admin index."""
    server = servers[strategy]
    reply = log_in(server)
    assert reply.status == 302, f"{reply.status}\n{reply.text()[:3000]}"
    session = cookies(reply).get("sessionid")
    assert session, f"no sessionid cookie: {reply.headers.get_all('Set-Cookie')}"
    index = server.get("/admin/", headers={"Cookie": f"sessionid={session}"})
    assert index.status == 200, f"{index.status}\n{index.text()[:3000]}"
    assert b"Site administration" in index.body
