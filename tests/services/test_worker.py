"""The production path with a real `celery worker` process, Redis and PostgreSQL.

The admin button queues a retrain that the worker completes; a second press while it runs
says "already running"; a worker killed with SIGKILL mid-retrain leaves the previous run
live, its run is marked failed, and the next retrain succeeds; a duplicate delivery does
nothing; the soft time limit marks a run timed out.
"""

from __future__ import annotations

import json
import os
import re
import signal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from recommendations import services, tasks
from recommendations.api import recommend_for
from recommendations.models import TrainingRun
from tests.factories import UserFactory
from tests.services.conftest import wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SEED = ["--users", "1500", "--books", "800", "--interactions", "60000", "--until", "2026-06-30"]


@pytest.fixture
def store():
    call_command("seed_demo", *SEED, stdout=StringIO())


def run_status(pk: int) -> str:
    return TrainingRun.objects.filter(pk=pk).values_list("status", flat=True).first()


def test_admin_button_queues_a_retrain_that_the_worker_completes(client, worker, store):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="recommendations"))
    client.force_login(staff)
    url = reverse("admin:recommendations_trainingrun_retrain")
    first = client.post(url, follow=True)
    text = " ".join(str(m) for m in first.context["messages"])
    match = re.search(r"Retrain queued \(run #(\d+)\)", text)
    assert match, text
    run_id = int(match.group(1))

    second = client.post(url, follow=True)
    assert f"already running (run #{run_id})" in " ".join(str(m) for m in second.context["messages"])

    wait_for(lambda: run_status(run_id) not in ("queued", "running"), 300, "the worker to finish the run")
    run = TrainingRun.objects.get(pk=run_id)
    assert run.status == "succeeded", run.error
    assert run.is_live and "pid" in run.worker and run.task_id
    assert run.metric("model") > run.metric("popularity")
    assert TrainingRun.objects.count() == 1, "the second press queued nothing"


@override_settings()
def test_sigkill_mid_retrain_keeps_the_old_run_live_and_the_next_retrain_works(worker, store, settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "STALE_AFTER_SECONDS": 5}
    previous = services.retrain(evaluate=False)
    assert previous.status == "succeeded"
    customer = get_user_model().objects.get(username="demo")
    before = [b.pk for b in recommend_for(customer, 6)]

    doomed = services.request_retrain(trigger="admin")
    wait_for(
        lambda: TrainingRun.objects.filter(pk=doomed.pk, status="running", stage__in=["evaluate", "fit"]).exists(),
        120, "the retrain to be training",
    )  # fmt: skip
    worker_field = TrainingRun.objects.get(pk=doomed.pk).worker
    pid = int(worker_field.rsplit("pid ", 1)[1])
    os.kill(pid, signal.SIGKILL)  # the process doing the retrain dies, as under the OOM killer

    wait_for(lambda: services.mark_stale_runs() or run_status(doomed.pk) == "failed", 60, "the stale run to be marked")
    doomed.refresh_from_db()
    assert doomed.status == "failed" and "signs of life" in doomed.error
    previous.refresh_from_db()
    assert previous.is_live
    assert [b.pk for b in recommend_for(customer, 6)] == before

    after = services.request_retrain(trigger="admin")
    wait_for(lambda: run_status(after.pk) not in ("queued", "running"), 300, "the next retrain")
    after.refresh_from_db()
    assert after.status == "succeeded" and after.is_live, after.error


def test_a_duplicate_delivery_runs_once(worker, store):
    run = services.start_run(trigger="beat")
    first = tasks.retrain.apply_async(args=[run.pk, False])
    second = tasks.retrain.apply_async(args=[run.pk, False])  # as if Redis redelivered it
    results = [first.get(timeout=300), second.get(timeout=300)]
    assert sorted(r.get("duplicate", False) for r in results) == [False, True]
    # The training task ends once its scoring shards are sent; the chord publishes the run.
    wait_for(lambda: run_status(run.pk) not in ("queued", "running"), 120, "the shards and the publishing")
    assert run_status(run.pk) == "succeeded"
    assert TrainingRun.objects.live().get().pk == run.pk


def test_soft_time_limit_marks_the_run_timed_out(worker, store):
    previous = services.retrain(evaluate=False)
    run = services.start_run(trigger="beat")
    result = tasks.retrain.apply_async(args=[run.pk], soft_time_limit=2, time_limit=60)
    assert result.get(timeout=120)["status"] == "timed_out"
    run.refresh_from_db()
    assert run.status == "timed_out" and not run.is_live and run.active is None
    previous.refresh_from_db()
    assert previous.is_live


def test_the_command_queues_and_waits(worker, store):
    out = StringIO()
    call_command("retrain_recommendations", "--no-evaluate", stdout=out)
    match = re.fullmatch(r"Queued run #(\d+)\.\n", out.getvalue())
    assert match, out.getvalue()
    wait_for(lambda: run_status(int(match.group(1))) == "succeeded", 300, "the queued run")

    out, err = StringIO(), StringIO()
    call_command("retrain_recommendations", "--wait", "--json", "--no-evaluate", stdout=out, stderr=err)
    data = json.loads(out.getvalue())
    assert data["status"] == "succeeded" and data["live"] is True
    assert data["id"] == TrainingRun.objects.live().get().pk
