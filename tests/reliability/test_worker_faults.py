"""The worker dies in the middle of writing a run (RELIABILITY 1), and a long retrain is
redelivered by Redis after its visibility timeout (RELIABILITY 2): real worker processes,
PostgreSQL and Redis."""

from __future__ import annotations

import os
import signal
import uuid
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from recommendations import services, tasks
from recommendations.models import Recommendation, SimilarItem, TrainingRun
from tests.services.conftest import ARTIFACTS, Worker, require_production_path, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def status_of(pk: int) -> str:
    return TrainingRun.objects.filter(pk=pk).values_list("status", flat=True).first()


@override_settings()
def test_sigkill_while_the_run_is_being_written(worker, settings):
    """A competing lock holds the similar-items table, so the worker is caught inside its
    store transaction (customers' lists already written) when it is killed."""
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "STALE_AFTER_SECONDS": 5}
    call_command("seed_demo", "--users", "800", "--books", "400", "--interactions", "25000", stdout=StringIO())
    previous = services.retrain(evaluate=False)
    live_rows = Recommendation.objects.filter(run=previous).count()

    s = connection.settings_dict
    blocker = psycopg.connect(f"postgresql://{s.get('USER') or 'postgres'}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}")
    try:
        blocker.execute("LOCK TABLE recommendations_similaritem IN ACCESS EXCLUSIVE MODE")
        doomed = services.request_retrain(trigger="admin", evaluate=False)
        wait_for(lambda: TrainingRun.objects.filter(pk=doomed.pk, stage="store").exists(), 120, "the store stage")
        wait_for(
            lambda: blocker.execute(
                "SELECT count(*) FROM pg_locks WHERE relation = 'recommendations_similaritem'::regclass AND NOT granted"
            ).fetchone()[0], 30, "the worker to wait for the table",
        )  # fmt: skip
        pid = int(TrainingRun.objects.get(pk=doomed.pk).worker.rsplit("pid ", 1)[1])
        os.kill(pid, signal.SIGKILL)
    finally:
        blocker.rollback()
        blocker.close()

    wait_for(lambda: services.mark_stale_runs() or status_of(doomed.pk) == "failed", 60, "the stale run to be marked")
    previous.refresh_from_db()
    assert previous.is_live
    assert Recommendation.objects.filter(run=previous).count() == live_rows
    assert not Recommendation.objects.filter(run_id=doomed.pk).exists(), "nothing half-written survives"
    assert not SimilarItem.objects.filter(run_id=doomed.pk).exists()

    after = services.request_retrain(trigger="admin", evaluate=False)
    wait_for(lambda: status_of(after.pk) not in ("queued", "running"), 300, "the next retrain")
    assert status_of(after.pk) == "succeeded"


def test_a_retrain_redelivered_after_the_visibility_timeout_runs_once(transactional_db, settings):
    """With a 2-second visibility timeout Redis hands the unacknowledged retrain to the
    worker's second process while the first still runs it; the duplicate finds the run
    claimed and does nothing, and exactly one run is published."""
    require_production_path()
    call_command("seed_demo", "--users", "2500", "--books", "1000", "--interactions", "90000", stdout=StringIO())
    log = ARTIFACTS / f"worker-redelivery-{uuid.uuid4().hex[:6]}.log"
    queue = f"redelivery-{uuid.uuid4().hex[:8]}"  # its own queue: no other worker may take the copy
    redelivering = Worker(
        log, concurrency=2, queue=queue,
        env={"CELERY_VISIBILITY_TIMEOUT": "2", "CELERY_RESTORE_INTERVAL": "1", "CELERY_RESTORE_THROTTLE": "1"},
    )  # fmt: skip
    redelivering.start()
    try:
        run = services.start_run(trigger="beat")
        result = tasks.retrain.apply_async(args=[run.pk, True], queue=queue)
        wait_for(lambda: status_of(run.pk) not in ("queued", "running"), 600, "the retrain")
        wait_for(lambda: "duplicate delivery ignored" in log.read_text(), 60, "the redelivered copy", interval=1)
    finally:
        redelivering.stop()
    assert status_of(run.pk) == "succeeded"
    assert TrainingRun.objects.filter(is_live=True).get().pk == run.pk
    assert TrainingRun.objects.count() == 1
    assert log.read_text().count(f"Run #{run.pk} was not queued") >= 1
    assert result.id
