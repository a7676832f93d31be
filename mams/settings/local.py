"""Local development and the demo: a throwaway key, everything on loopback, static files served from the apps.

DEBUG is off unless MAMS_DEBUG=1: with it on, an unknown page shows Django's debug page, which lists
every URL pattern, and that is not what a newcomer running `make demo` or `make up` should see. The
custom 403/404/500 pages (with the navigation bar) need DEBUG off; whitenoise serves the static files
either way, straight from the apps (no collectstatic).
"""

from .base import *  # noqa: F403
from .base import env

# MAMS_DEBUG=1 for Django's debug pages while developing. Off also spares the debug cursor, which times,
# formats and keeps every query (a large part of a turn's cost; the benchmarks' workers always run with 0).
DEBUG = env.bool("MAMS_DEBUG", False)
SECRET_KEY = env.str("MAMS_SECRET_KEY", "local-dev-only-not-secret")

# Serve static files straight from the apps in development, without collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
