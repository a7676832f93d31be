"""The edges every endpoint shares: malformed and oversize bodies, auth, the published schema and
its docs pages, and the command that makes an API user."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from negotiation.models import Session
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/sessions", "/api/sessions/import", "/api/batches", "/api/negotiations/start"])
def test_malformed_json_is_400(api: Any, path: str) -> None:
    r = api.post(path, data='{"description": "oops",', content_type="application/json")
    assert r.status_code == 400
    assert "JSON parse error" in r.json()["errors"]["body"][0]


def test_nan_is_not_json(api: Any) -> None:
    r = api.post("/api/sessions", data='{"description": NaN}', content_type="application/json")
    assert r.status_code == 400


def test_an_oversize_body_is_413_and_writes_nothing(api: Any, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = '{"description": "' + "x" * 2000 + '"}'
    r = api.post("/api/sessions", data=big, content_type="application/json")
    assert r.status_code == 413 and "larger than the 1000 bytes" in r.json()["detail"]
    assert not Session.objects.exists()


def test_an_oversize_body_without_content_length_is_413(api: Any, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = ('{"description": "' + "x" * 2000 + '"}').encode()
    r = api.generic("POST", "/api/sessions", big, content_type="application/json", CONTENT_LENGTH="10")
    # a lying Content-Length reads only what it declares: the truncated JSON is a 400, never a 500
    assert r.status_code == 400


def test_a_form_body_is_415(api: Any) -> None:
    r = api.post("/api/sessions", {"description": "x"}, format="multipart")
    assert r.status_code == 415 and r.json()["detail"]


def test_anonymous_and_bad_tokens_are_401(anon: Any) -> None:
    for path in ["/api/sessions", "/api/batches", "/api/negotiations", "/api/schema/"]:
        r = anon.get(path)
        assert r.status_code == 401 and r["WWW-Authenticate"].startswith("Token"), path
    anon.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert anon.get("/api/sessions").status_code == 401


def test_unknown_ids_are_404_in_the_error_shape(api: Any) -> None:
    r = api.get("/api/sessions/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404 and r.json() == {"detail": "No session with this id.", "errors": {}}
    assert api.get("/api/batches/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.get("/api/negotiations/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.delete("/api/batches").status_code == 405


def test_the_schema_is_published_to_users(api: Any) -> None:
    r = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert r.status_code == 200
    schema = r.json()
    paths = schema["paths"]
    for path in ["/api/sessions", "/api/sessions/{session_id}", "/api/sessions/{session_id}/buyer-config",
                 "/api/sessions/{session_id}/sellers", "/api/sessions/import", "/api/sessions/{session_id}/export",
                 "/api/batches", "/api/batches/{batch_id}", "/api/batches/{batch_id}/cancel",
                 "/api/batches/{batch_id}/results.csv", "/api/batches/{batch_id}/results.jsonl",
                 "/api/negotiations/{run_id}", "/api/negotiations/{run_id}/messages",
                 "/api/negotiations/{run_id}/analytics", "/api/negotiations/start",
                 "/api/negotiations/{run_id}/message", "/api/negotiations/{run_id}/decide",
                 "/api/negotiations/{run_id}/stream"]:
        assert path in paths, path
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])
    assert "400" in paths["/api/batches"]["post"]["responses"]


def test_docs_pages_need_login_and_load_no_cdn(client: Any, user: Any) -> None:
    r = client.get("/api/docs/")
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")
    # ReDoc's bundle fetches a logo from the internet: its old address leads to Swagger UI, which does not
    assert client.get("/api/redoc/", follow=True).redirect_chain[0] == ("/api/docs/", 302)
    user.refresh_from_db()  # the factory's password was never saved; log in as the stored user
    client.force_login(user)
    r = client.get("/api/docs/")
    html = r.content.decode()
    assert r.status_code == 200 and "drf_spectacular_sidecar" in html
    assert "cdn." not in html and "unpkg" not in html and "googleapis" not in html
    assert client.get("/api/redoc/")["Location"] == "/api/docs/"
    assert client.get("/api/schema/").status_code == 200  # the docs fetch it with the session cookie
    assert client.get("/api/sessions").status_code == 200


def test_create_api_user_prints_a_token_and_reuses_the_user() -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_user", "carol", "--staff", "--password", "s3cret-pass", stdout=out, stderr=err)
    key = out.getvalue().strip()
    token = Token.objects.get(key=key)
    assert token.user.username == "carol" and token.user.is_staff and token.user.check_password("s3cret-pass")
    out2 = io.StringIO()
    call_command("create_api_user", "carol", stdout=out2, stderr=io.StringIO())
    assert out2.getvalue().strip() == key and "reusing" not in out2.getvalue()
    out3 = io.StringIO()
    call_command("create_api_user", "carol", "--rotate", stdout=out3, stderr=io.StringIO())
    assert out3.getvalue().strip() != key
    assert client_for(token.user).get("/api/sessions").status_code == 200


ZERO = "00000000-0000-0000-0000-000000000000"
EVERY_ENDPOINT = [
    ("get", "/api/sessions"), ("post", "/api/sessions"), ("post", "/api/sessions/import"),
    ("get", f"/api/sessions/{ZERO}"), ("patch", f"/api/sessions/{ZERO}"), ("delete", f"/api/sessions/{ZERO}"),
    ("post", f"/api/sessions/{ZERO}/buyer-config"), ("post", f"/api/sessions/{ZERO}/sellers"),
    ("delete", f"/api/sessions/{ZERO}/sellers/{ZERO}"), ("get", f"/api/sessions/{ZERO}/export"),
    ("get", "/api/batches"), ("post", "/api/batches"), ("get", f"/api/batches/{ZERO}"),
    ("post", f"/api/batches/{ZERO}/cancel"), ("get", f"/api/batches/{ZERO}/results.csv"),
    ("get", f"/api/batches/{ZERO}/results.jsonl"), ("get", "/api/negotiations"),
    ("post", "/api/negotiations/start"), ("get", f"/api/negotiations/{ZERO}"),
    ("get", f"/api/negotiations/{ZERO}/messages"), ("get", f"/api/negotiations/{ZERO}/analytics"),
    ("post", f"/api/negotiations/{ZERO}/message"), ("post", f"/api/negotiations/{ZERO}/decide"),
    ("get", f"/api/negotiations/{ZERO}/stream"), ("get", "/api/schema/"),
]


@pytest.mark.parametrize(("method", "path"), EVERY_ENDPOINT)
def test_every_endpoint_refuses_anonymous_callers(anon: Any, method: str, path: str) -> None:
    r = getattr(anon, method)(path, {}, format="json", HTTP_ACCEPT="application/json")
    assert r.status_code == 401, r.content
    assert "Authentication credentials were not provided." in r.content.decode()
