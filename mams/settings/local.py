"""Local development and the demo: debug on, a throwaway key, everything on loopback."""

from .base import *  # noqa: F403
from .base import env

# MAMS_DEBUG=0 runs a process as a deployment would (the benchmarks' workers do): Django's debug cursor
# times, formats and keeps every query, which is a large part of a turn's cost.
DEBUG = env.bool("MAMS_DEBUG", True)
SECRET_KEY = env.str("MAMS_SECRET_KEY", "local-dev-only-not-secret")

# Serve static files straight from the apps in development, without collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
