"""The Celery tasks and what they rely on: single flight, claims, stale runs, rescoring."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from bookstore.models import Access, Book, Order, OrderLine, User
from bookstore.services import place_order
from recommendations import services, tasks
from recommendations.api import recommend_for
from recommendations.models import Recommendation, TrainingRun
from tests.recommendations.helpers import planted_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def store(settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "LIGHTFM": {"epochs": 10, "no_components": 16}, "LIST_SIZE": 8}
    return planted_store(fans=12)


def test_a_second_request_while_one_is_in_flight_is_refused(store):
    first = services.start_run(trigger="admin")
    with pytest.raises(services.AlreadyRunning) as info:
        services.request_retrain(trigger="beat")
    assert info.value.run == first
    with pytest.raises(services.AlreadyRunning):
        services.retrain()
    assert TrainingRun.objects.count() == 1


def test_a_duplicate_delivery_does_nothing(store):
    run = services.start_run(trigger="admin")
    assert tasks.retrain.apply(args=[run.pk]).get()["status"] == "succeeded"
    again = tasks.retrain.apply(args=[run.pk]).get()
    assert again == {"id": run.pk, "status": "succeeded", "duplicate": True}
    assert TrainingRun.objects.filter(status="succeeded").count() == 1


def test_beat_requests_a_run_through_the_same_single_flight(store):
    result = tasks.retrain.apply().get()
    assert result["status"] == "queued"
    assert TrainingRun.objects.get(pk=result["id"]).status == "succeeded"  # eager: already ran
    services.start_run(trigger="admin")
    assert tasks.retrain.apply().get()["status"] == "already running"


def test_a_silent_running_run_is_marked_failed_and_the_next_one_works(store, settings):
    live = services.retrain(evaluate=False)
    dead = services.start_run(trigger="admin")
    TrainingRun.objects.filter(pk=dead.pk).update(status="running", heartbeat=timezone.now() - timedelta(hours=1))
    fresh = services.request_retrain(trigger="admin")  # finds the dead one first
    dead.refresh_from_db()
    assert dead.status == "failed" and "signs of life" in dead.error and dead.active is None
    assert fresh.status == "succeeded" and fresh.is_live
    live.refresh_from_db()
    assert not live.is_live


def test_a_run_marked_stale_cannot_go_live_afterwards(store, monkeypatch):
    from recommendations import storage

    real_publish = storage.publish

    def publish_after_being_declared_dead(run):
        TrainingRun.objects.filter(pk=run.pk).update(status="failed", error="declared dead", active=None)
        real_publish(run)

    monkeypatch.setattr(storage, "publish", publish_after_being_declared_dead)
    run = services.retrain(evaluate=False)
    assert run.status == "failed" and "not publishing" in run.error
    assert not TrainingRun.objects.live().exists()


def test_soft_time_limit_marks_the_run_timed_out(store, monkeypatch):
    live = services.retrain(evaluate=False)
    import recommendations.services as svc

    def slow(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(svc, "train", slow)
    run = services.start_run(trigger="admin")
    result = tasks.retrain.apply(args=[run.pk]).get()
    assert result["status"] == "timed_out"
    run.refresh_from_db()
    assert run.status == "timed_out" and run.active is None and "time limit" in run.error
    live.refresh_from_db()
    assert live.is_live


def test_buying_rescores_the_customer_without_a_retrain(store, django_capture_on_commit_callbacks):
    run = services.retrain(evaluate=False)
    fan = store["users"]["Alpha"][0]
    before = [b.pk for b in recommend_for(fan, 8)]
    book = Book.objects.get(pk=before[0])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        place_order(fan, [book])  # eager tasks: the rescore runs when the order commits
    assert callbacks
    rows = Recommendation.objects.filter(run=run, user=fan)
    assert rows.count() == 8 and not rows.filter(item=book).exists()
    assert TrainingRun.objects.count() == 1, "no retrain"
    assert [b.pk for b in recommend_for(fan, 7)] == [pk for pk in before if pk != book.pk][:7]


def test_a_customer_new_since_the_run_gets_a_list_from_their_history(store, django_capture_on_commit_callbacks):
    services.retrain(evaluate=False)
    newcomer = User.objects.create(username="newcomer")
    alpha_books = store["books"]["Alpha"]
    for book in alpha_books[:3]:
        Access.objects.create(user=newcomer, book=book, count=2)
    with django_capture_on_commit_callbacks(execute=True):
        place_order(newcomer, [alpha_books[3]])
    picks = recommend_for(newcomer, 6)
    assert len(picks) == 6
    assert sum(b.product.startswith("A") for b in picks) >= 5
    assert alpha_books[3].pk not in [b.pk for b in picks]
    assert Recommendation.objects.live().filter(user=newcomer).count() == 8


def test_rescore_without_a_usable_artifact_keeps_the_stored_list(store):
    run = services.retrain(evaluate=False)
    fan = store["users"]["Alpha"][0]
    before = list(Recommendation.objects.filter(run=run, user=fan).values_list("item_id", flat=True))
    from recommendations import storage

    with storage.artifact_storage().open(run.artifact, "wb") as fh:
        fh.write(b"garbage")
    services._live_model.cache_clear()
    assert services.rescore_user(fan.pk) == 0
    assert list(Recommendation.objects.filter(run=run, user=fan).values_list("item_id", flat=True)) == before


def test_a_purchase_never_fails_because_the_broker_is_down(store, monkeypatch, django_capture_on_commit_callbacks):
    services.retrain(evaluate=False)

    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.rescore_user, "delay", down)
    fan = store["users"]["Beta"][0]
    with django_capture_on_commit_callbacks(execute=True):
        order = place_order(fan, [store["books"]["Beta"][-1]])
    assert Order.objects.filter(pk=order.pk).exists() and OrderLine.objects.filter(order=order).exists()


def test_a_hung_run_past_its_time_limit_is_marked_failed(store, settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "TASK_TIME_LIMIT": 60, "STALE_AFTER_SECONDS": 60}
    hung = services.start_run(trigger="admin")
    TrainingRun.objects.filter(pk=hung.pk).update(
        status="running", started=timezone.now() - timedelta(minutes=5), heartbeat=timezone.now()
    )
    assert services.mark_stale_runs() == [hung.pk]
    hung.refresh_from_db()
    assert hung.status == "failed" and "time limit" in hung.error


def test_a_request_inside_the_callers_transaction_is_sent_when_it_commits(store, django_capture_on_commit_callbacks):
    from django.db import transaction

    sent = []
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        with transaction.atomic():
            run = services.request_retrain(trigger="admin")
            sent.append(TrainingRun.objects.get(pk=run.pk).status)
    assert sent == ["queued"] and callbacks, "nothing is sent before the commit"
    for callback in callbacks:
        callback()
    run.refresh_from_db()
    assert run.status == "succeeded"
