"""MAMS project package: settings, the Celery app, URLs and queue names."""

from .celery import app as celery_app

__all__ = ["celery_app"]
