"""Unknown /api/ and /env/ paths answer JSON 404s in the API's error shape; pages get error pages with
the navigation bar (DEBUG off, as deployed), never Django's URL list."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/nope", "/api/batches/not-a-uuid", "/env/nope", "/api/sessions/x/y/z"])
def test_an_unknown_api_path_is_a_json_404_in_the_error_shape(anon: Any, path: str) -> None:
    r = anon.get(path)
    assert r.status_code == 404
    assert r["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"detail", "errors"} and path in body["detail"] and "/api/schema/" in body["detail"]


def test_a_known_api_path_without_its_trailing_slash_still_redirects(anon: Any) -> None:
    r = anon.get("/api/leaderboard")  # exists without a slash: served, not redirected
    assert r.status_code != 404
    r = anon.get("/api/schema")  # exists only as /api/schema/
    assert r.status_code == 301 and r["Location"] == "/api/schema/"


def test_known_endpoints_still_answer(anon: Any) -> None:
    assert anon.get("/api/health").status_code in (200, 503)
    assert anon.get("/api/batches").status_code == 401  # exists; needs a token


@override_settings(DEBUG=False)
def test_pages_get_a_404_page_with_the_navigation_and_no_url_list(user: Any) -> None:
    web = Client()
    web.force_login(user)
    r = web.get("/analytics/no-such-page/")
    html = r.content.decode()
    assert r.status_code == 404
    assert 'class="top"' in html and "Batches" in html and "404" in html
    assert "URLconf" not in html and "urlpatterns" not in html


@override_settings(DEBUG=False)
def test_a_server_error_page_renders_without_the_database() -> None:
    from analytics.views import page_error

    r = page_error(None)  # type: ignore[arg-type]
    assert r.status_code == 500 and "/api/health" in r.content.decode()
