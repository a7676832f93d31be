"""The settings a newcomer runs with (`make demo`, `make up`, README commands: mams.settings.local with no
MAMS_DEBUG set) never show Django's debug page with the URL list, and still serve the static files.

pytest-django turns DEBUG off for every test, so the check runs in a fresh interpreter that loads the
local settings exactly as manage.py and the WSGI entry point do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment(debug=settings.DEBUG)  # keeps DEBUG as the settings say; allows the test host
web = Client()
page = web.get("/analytics/no-such-page/")
static = web.get("/static/admin/css/base.css")
print(json.dumps({"debug": settings.DEBUG, "status": page.status_code, "html": page.content.decode(),
                  "static": static.status_code}))
"""


def probe(**env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("MAMS_DEBUG", "DJANGO_SETTINGS_MODULE")}
    environ.update(DJANGO_SETTINGS_MODULE="mams.settings.local", **env)
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_local_default_shows_the_404_page_not_the_url_list() -> None:
    out = probe()
    assert out["debug"] is False
    assert out["status"] == 404
    assert 'class="top"' in out["html"] and "Batches" in out["html"]  # the navigation bar
    assert "URLconf" not in out["html"] and "urlpatterns" not in out["html"]
    assert out["static"] == 200  # whitenoise serves the apps' static files with DEBUG off, no collectstatic


def test_debug_pages_only_when_asked_for() -> None:
    out = probe(MAMS_DEBUG="1")
    assert out["debug"] is True and out["status"] == 404 and "URLconf" in out["html"]
