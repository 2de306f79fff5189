"""The admin: the run list with its chart, "Retrain now" (POST, CSRF, permission), read-only lists
that still let customers and books be deleted, and the "live" filters."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db.models import Q
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from bookstore.models import Access, Book, Order, OrderLine, User
from recommendations import services, tasks
from recommendations.models import PopularItem, Recommendation, SimilarItem, TrainingRun
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


def test_without_a_broker_retrain_now_answers_at_once_and_the_list_follows_the_run(
    client, fast, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The demo's default path (RELIABILITY 13.10): the retrain runs in a background thread of
    the web process, so the click answers at once; the run list refreshes itself meanwhile."""
    from recommendations import dispatch

    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "TASKS": "thread"}
    submitted = []
    monkeypatch.setattr(dispatch._Runner, "submit", lambda self, task, args: submitted.append((task, args)) or "t")
    client.force_login(staff(can_retrain=True))
    response = client.post(reverse(RETRAIN), follow=True)
    run = TrainingRun.objects.get()
    assert run.status == "queued" and f"Retrain queued (run #{run.pk})" in messages_of(response)
    assert [(task.name, args) for task, args in submitted] == [("recommendations.retrain", [run.pk, None])]
    assert b'<meta http-equiv="refresh" content="5">' in response.content
    task, args = submitted[0]
    dispatch._run(task, args, "t")  # what the background thread does
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert b'http-equiv="refresh"' not in client.get(reverse(LIST)).content


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


def test_a_run_shows_its_scoring_shards(client, fast, settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "SHARD_SIZE": 10}
    run = services.retrain(evaluate=False)
    assert run.status == "succeeded" and run.counts["shards"] >= 2, run.error
    client.force_login(staff(can_retrain=False))
    page = client.get(reverse("admin:recommendations_trainingrun_change", args=[run.pk])).content.decode()
    assert "Scoring shards" in page
    for shard in run.shards.all():
        assert f"score {shard.seconds['score']:.2f}" in page
    assert page.count(">done<") >= run.counts["shards"]


# -- deleting customers and books that have stored lists ------------------------------------------
def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def staff_who_may_only(codename: str):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def a_customer_with_lists():
    """A fan with stored lists and nothing else of theirs (no orders, no page views), so that
    deleting them needs no permission on the store's other tables."""
    fan = User.objects.get(username="alpha-fan-0")
    Order.objects.filter(user=fan).delete()
    Access.objects.filter(user=fan).delete()
    assert Recommendation.objects.filter(user=fan).exists()
    return fan


def test_a_superuser_deletes_a_customer_with_stored_lists(client, fast):
    services.retrain(evaluate=False)
    fan = User.objects.get(username="alpha-fan-0")
    assert Recommendation.objects.filter(user=fan).exists()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(admin_url(User, "delete", fan.pk))
    assert page.status_code == 200 and not page.context["perms_lacking"]
    response = client.post(admin_url(User, "delete", fan.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=fan.pk).exists()
    assert not Recommendation.objects.filter(user_id=fan.pk).exists()


def test_staff_who_may_delete_customers_delete_one_with_stored_lists(client, fast):
    services.retrain(evaluate=False)
    fan = a_customer_with_lists()
    client.force_login(staff_who_may_only("delete_user"))
    page = client.get(admin_url(User, "delete", fan.pk))
    assert page.status_code == 200 and not page.context["perms_lacking"], page.context["perms_lacking"]
    assert client.post(admin_url(User, "delete", fan.pk), {"post": "yes"}).status_code == 302
    assert not User.objects.filter(pk=fan.pk).exists()
    assert not Recommendation.objects.filter(user_id=fan.pk).exists()


def test_staff_who_may_delete_books_delete_one_that_is_in_stored_lists(client, fast):
    services.retrain(evaluate=False)
    book_id = Recommendation.objects.filter(user__isnull=False).values_list("item_id", flat=True).first()
    book = Book.objects.get(pk=book_id)
    OrderLine.objects.filter(book=book).delete()  # sold books are protected: the store's own rule
    Access.objects.filter(book=book).delete()
    assert SimilarItem.objects.filter(Q(item=book) | Q(similar=book)).exists()
    client.force_login(staff_who_may_only("delete_book"))
    page = client.get(admin_url(Book, "delete", book.pk))
    assert page.status_code == 200 and not page.context["perms_lacking"], page.context["perms_lacking"]
    assert client.post(admin_url(Book, "delete", book.pk), {"post": "yes"}).status_code == 302
    assert not Book.objects.filter(pk=book.pk).exists()
    assert not Recommendation.objects.filter(item_id=book.pk).exists()
    assert not SimilarItem.objects.filter(Q(item_id=book.pk) | Q(similar_id=book.pk)).exists()


@pytest.mark.parametrize("model", [Recommendation, PopularItem, SimilarItem])
def test_the_lists_offer_no_delete_of_their_own(client, fast, model):
    services.retrain(evaluate=False)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(admin_url(model, "changelist"))
    assert page.status_code == 200
    assert b"delete_selected" not in page.content and page.context["action_form"] is None
    row = model.objects.filter(user__isnull=False).first() if model is Recommendation else model.objects.first()
    assert client.get(admin_url(model, "delete", row.pk)).status_code == 403
    assert client.post(admin_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=row.pk).exists()
    detail = client.get(admin_url(model, "change", row.pk))
    assert detail.status_code == 200 and b"deletelink" not in detail.content
    index = client.get(reverse("admin:app_list", args=["recommendations"]))
    assert not index.context["app_list"][0]["models"][0]["perms"]["delete"]


def test_a_run_whose_lists_are_stored_is_not_deleted_from_the_admin(client, fast):
    live = services.retrain(evaluate=False)
    failed = TrainingRun.objects.create(status="failed", active=None)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert client.post(admin_url(TrainingRun, "delete", live.pk), {"post": "yes"}).status_code == 403
    assert Recommendation.objects.filter(run=live).exists()
    assert client.post(admin_url(TrainingRun, "delete", failed.pk), {"post": "yes"}).status_code == 302
    assert not TrainingRun.objects.filter(pk=failed.pk).exists()


# -- the "live" filters ---------------------------------------------------------------------------
def listed(response) -> list:
    return list(response.context["cl"].result_list)


def test_the_live_filter_of_the_runs(client):
    live = TrainingRun.objects.create(status="succeeded", is_live=True, active=None)
    old = TrainingRun.objects.create(status="succeeded", active=None)
    failed = TrainingRun.objects.create(status="failed", active=None)
    client.force_login(staff(can_retrain=False))
    assert listed(client.get(reverse(LIST), {"live": "yes"})) == [live]
    assert set(listed(client.get(reverse(LIST), {"live": "no"}))) == {old, failed}
    assert len(listed(client.get(reverse(LIST)))) == 3
    cl = client.get(reverse(LIST)).context["cl"]
    live_filter = next(spec for spec in cl.filter_specs if spec.title == "live")
    assert [str(choice["display"]) for choice in live_filter.choices(cl)] == ["All", "Yes", "No"]


@pytest.mark.parametrize("model", [Recommendation, PopularItem, SimilarItem])
def test_the_live_run_filter_of_the_lists(client, fast, model):
    live = services.retrain(evaluate=False)
    old = TrainingRun.objects.create(status="succeeded", active=None)
    rows = model.objects.filter(run=live)
    for row in (rows.filter(user__isnull=False) if model is Recommendation else rows)[:3]:
        row.pk, row.run = None, old
        row.save(force_insert=True)
    client.force_login(staff(can_retrain=False))
    url = admin_url(model, "changelist")
    assert {row.run_id for row in listed(client.get(url, {"live": "yes"}))} == {live.pk}
    assert {row.run_id for row in listed(client.get(url, {"live": "no"}))} == {old.pk}


# -- the run list fits a laptop screen --------------------------------------------------------------
def test_the_run_list_has_compact_columns(client):
    metrics = {"k": 10, "model": {"precision@10": 0.0525}, "popularity": {"precision@10": 0.0104},
               "cold": {"precision@10": 0.0147}}  # fmt: skip
    now = timezone.now()
    TrainingRun.objects.create(status="succeeded", is_live=True, active=None, metrics=metrics, trigger="beat",
                               started=now - timedelta(seconds=50), finished=now)  # fmt: skip
    TrainingRun.objects.create(status="running", stage="evaluate", progress=0.4, started=now)
    client.force_login(staff(can_retrain=False))
    page = client.get(reverse(LIST)).content.decode()
    columns = re.findall(r'<th scope="col" class="[^"]*column-(\w+)', page)
    assert columns == ["id", "status_badge", "started_short", "duration_display", "precisions"]
    assert "P@k model · pop. · new" in page
    assert re.search(r'<span title="model p@k">0\.052</span> · <span title="popularity p@k">0\.010</span> · '
                     r'<span title="new books p@k">0\.015</span>', page)  # fmt: skip
    status = re.findall(r'<td class="field-status_badge">(.*?)</td>', page)
    assert len(status) == 2 and all('style="white-space:nowrap"' in cell for cell in status)
    assert 'title="running: evaluate 40%"' in status[0] and ">evaluate 40%<" in status[0] and ">live<" not in status[0]
    assert ">live<" in status[1] and ">succeeded<" in status[1]
    started = timezone.localtime(now - timedelta(seconds=50))
    assert "50.0 s" in page and f"{started:%b} {started.day} {started:%H:%M}" in page
