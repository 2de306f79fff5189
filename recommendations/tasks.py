"""Celery tasks: ids as arguments, the work in ``services``."""

from __future__ import annotations

from celery import shared_task

from . import services
from .models import TrainingRun


@shared_task(name="recommendations.retrain")
def retrain(run_id: int | None = None, evaluate: bool | None = None) -> dict:
    """Run a queued training run (or a new one) to its end; return its summary."""
    run = TrainingRun.objects.filter(pk=run_id).first() if run_id else None
    if run_id and run is None:
        return {"id": run_id, "status": "missing"}
    run = services.retrain(run=run, evaluate=evaluate, trigger="task")
    return {"id": run.pk, "status": run.status}
