"""The app's configuration: registers the system checks and connects the rescore signals."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RecommendationsConfig(AppConfig):
    name = "recommendations"
    verbose_name = _("Recommendations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, signals  # noqa: F401  (registers the checks)

        signals.connect()  # connects what the settings name rightly; the checks name the rest
