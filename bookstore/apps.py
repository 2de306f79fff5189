"""The store app of the demo project."""

import logging

from django.apps import AppConfig
from django.conf import settings
from django.core import checks

logger = logging.getLogger("bookstore")


class BookstoreConfig(AppConfig):
    name = "bookstore"
    verbose_name = "Bookstore"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if not getattr(settings, "REDIS_URL", ""):
            logger.info("REDIS_URL is not set: retrains and rescores run in a background thread of this process, "
                        "other Celery tasks eagerly, and the cache is local memory.")  # fmt: skip


@checks.register(checks.Tags.staticfiles, deploy=True)
def static_files_collected(app_configs=None, **kwargs) -> list:
    """With DEBUG off the pages use hashed static files: say so until collectstatic has run."""
    from django.contrib.staticfiles.storage import staticfiles_storage

    if settings.DEBUG or not hasattr(staticfiles_storage, "collected") or staticfiles_storage.collected():
        return []
    return [checks.Warning(
        f"Static files are not collected in STATIC_ROOT ({settings.STATIC_ROOT}): pages serve them unhashed "
        "and uncompressed.", hint="Run: python manage.py collectstatic --noinput", id="bookstore.W001",
    )]  # fmt: skip
