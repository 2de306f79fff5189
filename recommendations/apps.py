"""The app's configuration: registers the system checks and connects the rescore signals."""

import logging

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

logger = logging.getLogger(__name__)


class RecommendationsConfig(AppConfig):
    name = "recommendations"
    verbose_name = _("Recommendations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, signals  # noqa: F401  (registers the checks)

        try:
            signals.connect()
        except (LookupError, ValueError, TypeError, AttributeError) as exc:
            # A model label that names no model, or a malformed source: what resolved before it
            # stays connected, and the checks name the key (recommendations.E002, E003).  A
            # traceback here would stop every command, ``check`` and runserver's reloader too.
            logger.warning("Recommendations: signals not all connected (%s); run manage.py check.", exc)
