"""The admin: the run list with its chart, "Retrain now" (POST, CSRF, permission), read-only lists."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from kombu.exceptions import OperationalError

from recommendations import services, tasks
from recommendations.models import TrainingRun
from tests.factories import UserFactory
from tests.recommendations.helpers import planted_store

pytestmark = pytest.mark.django_db
LIST = "admin:recommendations_trainingrun_changelist"
RETRAIN = "admin:recommendations_trainingrun_retrain"


@pytest.fixture
def fast(settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "LIGHTFM": {"epochs": 10, "no_components": 16}, "LIST_SIZE": 8}
    planted_store(fans=12)


def staff(*, can_retrain: bool):
    user = UserFactory(is_staff=True)
    perms = Permission.objects.filter(content_type__app_label="recommendations", codename__startswith="view_")
    user.user_permissions.add(*perms)
    if can_retrain:
        user.user_permissions.add(Permission.objects.get(codename="retrain"))
    return user


def messages_of(response) -> str:
    return " | ".join(str(m) for m in response.context["messages"])


def test_retrain_button_queues_and_reports(client, fast):
    client.force_login(staff(can_retrain=True))
    page = client.get(reverse(LIST))
    assert b"Retrain now" in page.content
    response = client.post(reverse(RETRAIN), follow=True)
    run = TrainingRun.objects.get()
    assert run.trigger == "admin" and run.status == "succeeded"  # eager tasks on this path
    assert f"Run #{run.pk} finished and is live" in messages_of(response)
    page = client.get(reverse(LIST))
    assert b"<svg" in page.content and b"popularity" in page.content
    assert client.get(reverse("admin:recommendations_trainingrun_change", args=[run.pk])).status_code == 200


def test_get_never_retrains(client, fast):
    client.force_login(staff(can_retrain=True))
    assert client.get(reverse(RETRAIN)).status_code == 405
    assert not TrainingRun.objects.exists()


def test_staff_without_the_permission_get_403_and_nothing_is_queued(client, fast, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.retrain, "apply_async", lambda *a, **k: sent.append(a))
    client.force_login(staff(can_retrain=False))
    assert client.post(reverse(RETRAIN)).status_code == 403
    page = client.get(reverse(LIST))
    assert page.status_code == 200 and b"Retrain now" not in page.content
    client.post(reverse(LIST), {"action": "retrain_now", "_selected_action": []})
    assert not TrainingRun.objects.exists() and not sent


def test_the_button_needs_the_csrf_token(fast):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff(can_retrain=True))
    assert strict.post(reverse(RETRAIN)).status_code == 403
    assert not TrainingRun.objects.exists()


def test_already_running(client, fast):
    running = TrainingRun.objects.create(status="running", trigger="beat")
    client.force_login(staff(can_retrain=True))
    response = client.post(reverse(RETRAIN), follow=True)
    assert f"already running (run #{running.pk})" in messages_of(response)
    assert TrainingRun.objects.count() == 1


def test_broker_unreachable_is_a_message_not_a_500(client, fast, monkeypatch):
    def down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    real = tasks.retrain.apply_async
    monkeypatch.setattr(tasks.retrain, "apply_async", down)
    client.force_login(staff(can_retrain=True))
    response = client.post(reverse(RETRAIN), follow=True)
    assert response.status_code == 200
    run = TrainingRun.objects.get()
    assert "broker is unreachable" in messages_of(response) and f"Run #{run.pk}" in messages_of(response)
    assert run.status == "failed" and "unreachable" in run.error and run.active is None
    # The request is recorded, and the next one is not blocked by it.
    monkeypatch.setattr(tasks.retrain, "apply_async", real)
    assert services.request_retrain(trigger="admin").status == "succeeded"


def test_admin_action_retrains(client, fast):
    client.force_login(staff(can_retrain=True))
    old = TrainingRun.objects.create(status="failed", active=None)
    response = client.post(reverse(LIST), {"action": "retrain_now", "_selected_action": [old.pk]}, follow=True)
    assert "finished and is live" in messages_of(response)
    assert TrainingRun.objects.filter(status="succeeded").count() == 1


def test_read_only_lists(client, fast):
    services.retrain(evaluate=False)
    client.force_login(staff(can_retrain=False))
    fan = "alpha-fan-0"
    page = client.get(reverse("admin:recommendations_recommendation_changelist"), {"q": fan})
    assert page.status_code == 200 and fan.encode() in page.content
    assert client.get(reverse("admin:recommendations_similaritem_changelist")).status_code == 200
    assert client.get(reverse("admin:recommendations_popularitem_changelist")).status_code == 200
    assert client.get(reverse("admin:recommendations_recommendation_add")).status_code == 403


def test_a_run_shows_known_and_new_books_side_by_side_and_every_trial(client, fast, settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "SEARCH": {"trials": 3, "seconds": 600, "blend": True},
                                "EVALUATION": {"min_users": 10, "k": 5, "min_cold_buyers": 3}}  # fmt: skip
    run = services.retrain()
    assert run.status == "succeeded", run.error
    client.force_login(staff(can_retrain=False))
    page = client.get(reverse("admin:recommendations_trainingrun_change", args=[run.pk])).content.decode()
    for text in ("known books", "new books", "overall without new books", "popularity", "Search", "configuration"):
        assert text in page, text
    for trial in run.metrics["trials"]:
        assert trial["candidate"] in page
    for blend in run.metrics.get("blends", []):
        assert " + ".join(blend["parts"]) in page
    listing = client.get(reverse(LIST)).content.decode()
    assert "new books p@k" in listing.lower()
