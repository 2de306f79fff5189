"""Celery tasks: ids as arguments, the work in ``services``.

``retrain`` runs a queued :class:`~recommendations.models.TrainingRun`: a duplicate
delivery finds the run already claimed and does nothing.  ``rescore_user`` refreshes one
customer's list from the live run's artifact.  ``mark_stale_runs`` fails runs whose worker
died.  The project owns the Celery app; these are ``shared_task``s.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from . import services
from .conf import app_settings
from .models import TrainingRun

logger = logging.getLogger(__name__)


@shared_task(
    name="recommendations.retrain",
    bind=True,
    acks_late=True,
    # A killed worker's message is not redelivered (Celery acknowledges it): the stale-run
    # check marks the run failed, and the next request starts afresh.  Redelivery after the
    # broker's visibility timeout finds the run claimed and does nothing.
    reject_on_worker_lost=False,
    soft_time_limit=app_settings.TASK_SOFT_TIME_LIMIT,
    time_limit=app_settings.TASK_TIME_LIMIT,
)
def retrain(self, run_id: int | None = None, evaluate: bool | None = None) -> dict:
    """Run queued run ``run_id`` (or request a new one, for beat) to its end."""
    if run_id is None:
        try:
            run = services.request_retrain(trigger="beat", evaluate=evaluate)
        except services.AlreadyRunning as exc:
            return {"status": "already running", "id": exc.run.pk if exc.run else None}
        return {"status": "queued", "id": run.pk}
    try:
        run = services.run_queued(run_id, task_id=self.request.id or "", evaluate=evaluate)
    except TrainingRun.DoesNotExist as exc:
        # Sent before the request's transaction committed: try again shortly.
        raise self.retry(exc=exc, countdown=2, max_retries=5) from exc
    except SoftTimeLimitExceeded:
        return {"id": run_id, "status": TrainingRun.Status.TIMED_OUT}
    if run is None:
        current = TrainingRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        logger.info("Run #%s was not queued (%s): duplicate delivery ignored", run_id, current)
        return {"id": run_id, "status": current or "missing", "duplicate": True}
    return {"id": run.pk, "status": run.status}


@shared_task(name="recommendations.rescore_user", acks_late=True)
def rescore_user(user_id) -> int:
    return services.rescore_user(user_id)


@shared_task(name="recommendations.mark_stale_runs")
def mark_stale_runs() -> list[int]:
    return services.mark_stale_runs()
