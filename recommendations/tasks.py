"""Celery tasks: ids as arguments, the work in ``services``.

``retrain`` runs a queued :class:`~recommendations.models.TrainingRun` (on the ``training``
queue): a duplicate delivery finds the run already claimed and does nothing.  With workers
to fan out to, it ends by sending a chord: ``score_shard`` tasks (the ``scoring`` queue, any
number of workers) and ``publish_run``, which switches the run live once every shard is in.
``rescore_user`` refreshes one customer's list from the live run's artifact.
``mark_stale_runs`` fails runs whose worker died.  The project owns the Celery app; these
are ``shared_task``s, routed by ``RECOMMENDATIONS["QUEUES"]`` when they are sent.
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
        run = services.run_queued(run_id, task_id=self.request.id or "", evaluate=evaluate,
                                  fan_out=services.can_fan_out())  # fmt: skip
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


@shared_task(
    name="recommendations.score_shard",
    bind=True,
    acks_late=True,
    # A worker lost mid-shard (killed, out of memory) hands the shard back to the queue for
    # another worker: its rows were not committed.  SHARD_ATTEMPTS bounds the deliveries.
    reject_on_worker_lost=True,
    soft_time_limit=app_settings.TASK_SOFT_TIME_LIMIT,
    time_limit=app_settings.TASK_TIME_LIMIT,
)
def score_shard(self, run_id: int, number: int) -> dict:
    """Score shard ``number`` of run ``run_id``; a shard that fails is tried again, and fails
    its run once its attempts are used up."""
    try:
        written = services.score_shard(run_id, number, threads=app_settings.SHARD_THREADS)
    except services.ShardFailed as exc:
        services.fail_run(run_id, str(exc))
        return {"id": run_id, "shard": number, "status": "failed"}
    except SoftTimeLimitExceeded:
        services.fail_run(run_id, f"Shard {number} hit its time limit.", TrainingRun.Status.TIMED_OUT)
        return {"id": run_id, "shard": number, "status": TrainingRun.Status.TIMED_OUT}
    except Exception as exc:
        logger.exception("Shard %s of run #%s failed", number, run_id)
        if services.shard_failed(run_id, number, f"{type(exc).__name__}: {exc}"):
            return {"id": run_id, "shard": number, "status": "failed"}
        raise self.retry(exc=exc, countdown=2 * (self.request.retries + 1), max_retries=None) from exc
    return {"id": run_id, "shard": number, "status": "done" if written is not None else "skipped", "rows": written}


@shared_task(name="recommendations.publish_run", bind=True, acks_late=True,
             soft_time_limit=app_settings.TASK_SOFT_TIME_LIMIT, time_limit=app_settings.TASK_TIME_LIMIT)  # fmt: skip
def publish_run(self, run_id: int) -> dict:
    """The chord's callback: switch the run live once every shard is in."""
    outcome = services.publish_run(run_id)
    if outcome == "pending":
        # A second delivery of a finished shard can complete the chord's count early: the
        # rest are still coming.  The stale-run check ends this if they never do.
        raise self.retry(countdown=5, max_retries=None)
    return {"id": run_id, "status": outcome}


@shared_task(name="recommendations.rescore_user", acks_late=True)
def rescore_user(user_id) -> int:
    return services.rescore_user(user_id)


@shared_task(name="recommendations.mark_stale_runs")
def mark_stale_runs() -> list[int]:
    return services.mark_stale_runs()
