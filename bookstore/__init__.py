"""The demo bookstore: a Django project and the store app that lives in it."""

from .celery import app as celery_app

__all__ = ("celery_app",)
