"""The store app of the demo project."""

import logging

from django.apps import AppConfig
from django.conf import settings

logger = logging.getLogger("bookstore")


class BookstoreConfig(AppConfig):
    name = "bookstore"
    verbose_name = "Bookstore"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
            logger.info("REDIS_URL is not set: Celery tasks run eagerly in this process and the cache is local memory.")
