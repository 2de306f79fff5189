"""A retrain as a Celery workflow over real workers: one training task, scoring shards on two
scoring workers, one of them killed mid-shard, and the publishing chord callback.

PostgreSQL, Redis and `celery worker` processes, as in production: one worker on the training
queue, then two on the scoring queue.  The test holds the run's row locked before the scoring
workers start, so each shard is caught inside its write transaction (its rows written, not
committed) when one worker's process is killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import uuid
from io import StringIO

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.models import Count

from recommendations import services, storage, tasks
from recommendations.api import recommend_for
from recommendations.models import Recommendation, ScoringShard, TrainingRun
from tests.services.conftest import ARTIFACTS, Worker, require_production_path, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHARD_SIZE = 300


def status_of(pk: int) -> str:
    return TrainingRun.objects.filter(pk=pk).values_list("status", flat=True).first()


def connect() -> psycopg.Connection:
    s = connection.settings_dict
    return psycopg.connect(f"postgresql://{s.get('USER') or 'postgres'}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}")


def shards_waiting_to_commit(run_id: int) -> int:
    """Sessions that wrote into the run's bare table of lists and now wait for a lock (asked
    on a connection in autocommit: a transaction would see one snapshot of the statistics)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT a.pid) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
            "WHERE a.wait_event_type = 'Lock' AND l.granted AND l.relation = to_regclass(%s)",
            [storage.partition_name(Recommendation, run_id)],
        )
        return cursor.fetchone()[0]


def test_two_scoring_workers_one_killed_mid_shard(transactional_db):
    require_production_path()
    call_command("seed_demo", "--users", "1500", "--books", "600", "--interactions", "50000", stdout=StringIO())
    previous = services.retrain(evaluate=False)  # in this process, as `--sync` does
    assert previous.status == "succeeded" and previous.is_live
    customer = get_user_model().objects.get(username="demo")
    before = [b.pk for b in recommend_for(customer, 6)]

    queue = f"shards-{uuid.uuid4().hex[:8]}"  # queues of their own: no other worker takes these tasks
    env = {"TEST_SHARD_SIZE": str(SHARD_SIZE)}
    trainer = Worker(ARTIFACTS / f"worker-train-{queue}.log", queue=queue, env=env, kinds=("", ".training"))
    scorers = [
        Worker(ARTIFACTS / f"worker-score{n}-{queue}.log", queue=queue, env=env, kinds=(".scoring",)) for n in (1, 2)
    ]
    blocker = connect()
    try:
        trainer.start()
        run = services.start_run(trigger="test")
        trained = tasks.retrain.apply_async(args=[run.pk, False], queue=f"{queue}.training").get(timeout=180)
        assert trained == {"id": run.pk, "status": "running"}, "training ends once the shards are sent"
        run.refresh_from_db()
        assert run.stage == "shards" and run.counts["shards"] == -(-run.counts["users"] // SHARD_SIZE) >= 4
        # Hold the run's row: a shard commits its rows with the run's progress, so each one
        # will wait inside its write transaction, its rows written but not committed.
        blocker.execute("SELECT 1 FROM recommendations_trainingrun WHERE id = %s FOR UPDATE", [run.pk])
        for scorer in scorers:
            scorer.start()
        shards = ScoringShard.objects.filter(run=run)
        wait_for(lambda: shards_waiting_to_commit(run.pk) == 2, 120, "both scoring workers inside a write")
        assert shards.filter(status="running").count() == 2

        # Until the switch, the previous run serves.
        assert TrainingRun.objects.live().get().pk == previous.pk
        assert [b.pk for b in recommend_for(customer, 6)] == before

        victim = shards.filter(status="running").order_by("number").first()
        pid = int(victim.worker.rsplit("pid ", 1)[1])
        assert pid not in [w.proc.pid for w in (trainer, *scorers)], "the pool process, not a worker's main process"
        os.kill(pid, signal.SIGKILL)  # as the OOM killer would
        blocker.rollback()

        wait_for(lambda: status_of(run.pk) not in ("queued", "running"), 180, "the shards and the publishing")
    finally:
        blocker.close()
        for worker in (trainer, *scorers):
            worker.stop()

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.is_live and TrainingRun.objects.live().get().pk == run.pk
    previous.refresh_from_db()
    assert not previous.is_live

    victim.refresh_from_db()
    assert victim.status == "done" and victim.attempts == 2, "the lost shard went back to the queue once"
    assert set(shards.values_list("status", flat=True)) == {"done"}

    # Every customer's list is there, once.
    rows = Recommendation.objects.filter(run=run, user__isnull=False)
    assert rows.count() == run.counts["recommendations"] == sum(shards.values_list("rows", flat=True))
    assert not rows.values("user", "rank").annotate(n=Count("id")).filter(n__gt=1).exists(), "no list twice"
    per_user = dict(rows.values_list("user").annotate(n=Count("id")))
    assert len(per_user) == run.counts["users"]
    assert set(per_user.values()) == {20}
    assert recommend_for(customer, 6), "the customer is served from the new run"
    assert run.stage_seconds["shards"] > 0 and run.stage_seconds["score"] > 0
    # The shards' inputs are deleted once the run is live.
    assert not shards.exclude(artifact="").exists()
