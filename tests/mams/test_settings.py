"""Settings are read from the environment through django-environ (mams/settings/base.py), with the two
house rules the hand-written reader had: an empty variable counts as unset, and a value is taken as
written (a secret that starts with '$' is not read as a reference to another variable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PROBE = ("import json, django; from django.conf import settings as s; print(json.dumps({'key': s.SECRET_KEY, "
         "'hosts': s.ALLOWED_HOSTS, 'analysis': s.MAMS_ANALYSIS_ENABLED, 'runs': s.MAMS_MAX_RUNS_PER_BATCH, "
         "'timeout': s.LLM_TIMEOUT_SECONDS, 'galileo': s.GALILEO_API_KEY, 'prices': s.MAMS_MODEL_PRICES['x']}))")


def settings_with(**variables: str) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mams.settings.local", **variables}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_variables_are_cast_and_empty_ones_take_the_default():
    got = settings_with(MAMS_SECRET_KEY="$NOT_A_REFERENCE$x\\$y", MAMS_ALLOWED_HOSTS="a.example,,b.example",
                        MAMS_ANALYSIS_ENABLED="no", MAMS_MAX_RUNS_PER_BATCH="", MAMS_LLM_TIMEOUT="7.5",
                        GALILEO_API_KEY="", MAMS_MODEL_PRICES_JSON='{"x": {"input": 1, "output": 2}}')
    assert got == {"key": "$NOT_A_REFERENCE$x\\$y", "hosts": ["a.example", "b.example"], "analysis": False,
                   "runs": 10000, "timeout": 7.5, "galileo": None, "prices": {"input": 1, "output": 2}}
