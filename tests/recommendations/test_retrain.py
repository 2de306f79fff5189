"""retrain() end to end on the ORM: what goes live, what stays live when something fails."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError

from bookstore.models import Access, Book, Order, OrderLine, User
from recommendations import services, storage
from recommendations.api import popular, recommend_for, similar_to
from recommendations.models import Recommendation, SimilarItem, TrainingRun
from tests.recommendations.helpers import planted_store

pytestmark = pytest.mark.django_db

FAST = {"LIGHTFM": {"epochs": 20, "no_components": 16}, "EVALUATION": {"min_users": 10, "k": 5}}


@pytest.fixture
def fast(settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, **FAST, "LIST_SIZE": 8}
    return settings


def live_lists() -> dict[int, list[int]]:
    lists: dict[int, list[int]] = {}
    for user_id, item_id in Recommendation.objects.live().filter(user__isnull=False).values_list("user_id", "item_id"):
        lists.setdefault(user_id, []).append(item_id)
    return lists


def test_planted_tastes_are_learned_and_a_new_book_reaches_its_fans(fast):
    # Within a genre these fans choose at random, so the holdout cannot tell the candidates
    # apart; keep the hybrid one, whose metadata is what a brand-new book can be found by.
    fast.RECOMMENDATIONS = {**fast.RECOMMENDATIONS, "CANDIDATES": [{"name": "hybrid"}]}
    store = planted_store()
    newcomer = Book.objects.create(product="A-new", title="Alpha newcomer", format="printedbook", price=Decimal("11"))
    newcomer.genres.add(store["genres"]["Alpha"])

    run = services.retrain()
    assert run.status == "succeeded", run.error
    assert run.decision == "model"
    assert run.metric("model", "precision@5") > run.metric("popularity", "precision@5")

    alpha_ids = set(Book.objects.filter(genres__name="Alpha").values_list("pk", flat=True))
    lists = live_lists()
    alpha_fans = [u.pk for u in store["users"]["Alpha"]]
    beta_fans = [u.pk for u in store["users"]["Beta"]]
    share = lambda fans, wanted: np.mean([np.mean([(i in alpha_ids) == wanted for i in lists[u]]) for u in fans])  # noqa: E731
    assert share(alpha_fans, True) > 0.9 and share(beta_fans, False) > 0.9
    reached = np.mean([newcomer.pk in lists[u] for u in alpha_fans])
    assert reached >= 0.5, f"the new Alpha book reached {reached:.0%} of Alpha fans"
    assert not any(newcomer.pk in lists[u] for u in beta_fans)

    # What a customer bought is never recommended to them.
    fan = store["users"]["Alpha"][0]
    bought = set(OrderLine.objects.filter(order__user=fan).values_list("book_id", flat=True))
    assert bought and not bought & set(lists[fan.pk])
    assert {b.pk for b in recommend_for(fan, 8)} <= alpha_ids
    book = store["books"]["Beta"][0]
    assert {b.pk for b in similar_to(book, 5)} and not {b.pk for b in similar_to(book, 5)} & alpha_ids


def test_run_records_stages_counts_metrics_and_an_artifact(fast):
    planted_store(fans=12)
    run = services.retrain()
    assert run.status == "succeeded" and run.is_live
    assert set(run.stage_seconds) >= {"extract", "build", "evaluate", "fit", "score", "store"}
    assert run.counts["users"] == 24 and run.counts["recommendations"] == 24 * 8
    assert run.counts["similar_items"] > 0 and run.counts["popular_items"] > 0
    assert {"precision@5", "recall@5", "ndcg@5", "auc", "coverage"} <= set(run.metrics["model"])
    assert run.metrics["trials"] and run.metrics["chosen"]["candidate"]
    assert {"precision@5", "share_of_slots", "buyers"} <= set(run.metrics["cold"]) or "skipped" in run.metrics["cold"]
    arrays = storage.load_artifact(run.artifact, run.artifact_record)
    assert arrays is not None and arrays["user_vectors"].shape[0] == 24
    assert arrays["item_keys"].dtype.kind in "iu" and arrays["item_feature_names"].dtype.kind == "U"
    assert popular(3) and len(popular(3)) == 3


def test_a_failure_while_storing_leaves_the_previous_run_live(fast, monkeypatch):
    planted_store(fans=12)
    first = services.retrain()
    before = live_lists()

    def broken(*args, **kwargs):
        raise IntegrityError("duplicate key value violates unique constraint (injected)")

    monkeypatch.setattr(storage, "store_similar", broken)  # after the personal rows are written
    second = services.retrain()
    assert second.status == "failed" and "IntegrityError" in second.error
    assert not second.is_live and second.artifact == ""
    first.refresh_from_db()
    assert first.is_live
    assert live_lists() == before
    assert not Recommendation.objects.filter(run=second).exists()
    assert TrainingRun.objects.live().count() == 1


def test_a_newer_run_replaces_the_old_one_and_old_runs_are_pruned(fast):
    planted_store(fans=12)
    fast.RECOMMENDATIONS = {**fast.RECOMMENDATIONS, "KEEP_RUNS": 2}
    runs = [services.retrain(evaluate=False) for _ in range(3)]
    assert [r.status for r in runs] == ["succeeded"] * 3
    assert TrainingRun.objects.live().get() == runs[-1]
    assert not Recommendation.objects.filter(run=runs[0]).exists()
    assert Recommendation.objects.filter(run=runs[1]).exists()
    runs[0].refresh_from_db()
    assert runs[0].pruned and runs[0].artifact == "" and runs[0].metrics, "history stays"


def test_deleted_and_renamed_customers_and_books(fast):
    store = planted_store(fans=12)
    services.retrain(evaluate=False)
    gone_user, renamed = store["users"]["Alpha"][0], store["users"]["Alpha"][1]
    gone_pk = gone_user.pk
    before = [b.pk for b in recommend_for(renamed, 8)]
    victim = Book.objects.get(pk=before[0])
    Access.objects.filter(book=victim).delete()
    OrderLine.objects.filter(book=victim).delete()
    victim_pk = victim.pk
    victim.delete()
    gone_user.delete()
    renamed.username = "renamed-reader"
    renamed.save()

    assert not Recommendation.objects.filter(user_id=gone_pk).exists()
    after = [b.pk for b in recommend_for(renamed, 7)]
    assert after == [pk for pk in before if pk != victim_pk][:7], "a renamed customer keeps their own list"
    assert all(victim_pk not in [b.pk for b in recommend_for(u, 8)] for u in User.objects.all())
    run = services.retrain(evaluate=False)
    assert run.status == "succeeded"
    assert set(live_lists()) == set(User.objects.filter(accesses__isnull=False).values_list("pk", flat=True))


def test_a_book_made_unavailable_disappears_at_read_time(fast):
    store = planted_store(fans=12)
    services.retrain(evaluate=False)
    fan = store["users"]["Alpha"][0]
    first = recommend_for(fan, 5)[0]
    Book.objects.filter(pk=first.pk).update(available=False)
    assert first.pk not in [b.pk for b in recommend_for(fan, 5)]


def test_empty_store_is_not_enough_data_and_keeps_nothing_live(fast):
    run = services.retrain()
    assert run.status == "not_enough_data" and "no interactions" in run.error
    assert not TrainingRun.objects.live().exists()
    assert recommend_for(None, 5) == []


def test_empty_store_keeps_the_previous_run_live(fast):
    planted_store(fans=12)
    first = services.retrain(evaluate=False)
    Access.objects.all().delete()
    OrderLine.objects.all().delete()
    second = services.retrain()
    assert second.status == "not_enough_data"
    first.refresh_from_db()
    assert first.is_live


def test_one_customer_one_book_and_views_only(fast):
    user = User.objects.create(username="solo")
    books = [Book.objects.create(product=str(i), title=f"B{i}") for i in range(3)]
    Access.objects.create(user=user, book=books[0], count=2)
    run = services.retrain()
    assert run.status == "succeeded", run.error
    assert run.decision == "model (not evaluated)" and "skipped" in run.metrics
    assert {b.pk for b in recommend_for(user, 5)} <= {b.pk for b in books}

    Book.objects.exclude(pk=books[0].pk).delete()
    run = services.retrain()
    assert run.status == "not_enough_data"


def test_nan_weights_fail_the_run_with_a_clear_message(fast, settings):
    planted_store(fans=12)
    first = services.retrain(evaluate=False)
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "SOURCE_CLASS": "tests.recommendations.test_retrain.NaNSource"}
    run = services.retrain()
    assert run.status == "failed"
    assert "'views'" in run.error and "nan" in run.error.lower()
    first.refresh_from_db()
    assert first.is_live


class NaNSource:
    """A source (the swappable SOURCE_CLASS) whose views carry a NaN weight."""

    def __init__(self, config):
        from recommendations.sources import ModelSource

        self.inner = ModelSource(config)

    def read(self, chunk_size):
        raw = self.inner.read(chunk_size)
        if raw.name == "views":
            raw.values[0] = float("nan")
        return raw


def test_a_diverging_model_fails_the_run(fast, settings):
    planted_store(fans=12)
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "LIGHTFM": {"learning_rate": 1e30, "epochs": 3}}
    run = services.retrain(evaluate=False)
    assert run.status == "failed"
    assert "finite" in run.error or "diverged" in run.error


def test_no_candidate_beats_popularity_serves_popularity(fast, settings):
    # Everybody picks from the same bestsellers, by popularity alone: nothing to personalise.
    import random

    from django.utils import timezone

    rng = random.Random(3)
    books = [Book.objects.create(product=str(i), title=f"B{i}") for i in range(30)]
    weights = [1 / (i + 1) ** 1.5 for i in range(30)]
    for u in range(80):
        user = User.objects.create(username=f"u{u}")
        picks: set[int] = set()
        while len(picks) < 6:
            picks.add(rng.choices(range(30), weights)[0])
        for i in picks:
            order = Order.objects.create(user=user, created=timezone.now() - timezone.timedelta(hours=rng.randint(1, 5000)))
            OrderLine.objects.create(order=order, book=books[i], quantity=1, unit_price=1)
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "EVALUATION": {"min_users": 5, "k": 5}}
    run = services.retrain()
    assert run.status == "succeeded"
    assert run.decision == "popularity", run.metrics
    assert run.metric("model", "precision@5") <= run.metric("popularity", "precision@5")
    assert run.counts["recommendations"] == 0, "no personal lists: readers get the popular list"
    customer = User.objects.get(username="u0")
    owned = set(OrderLine.objects.filter(order__user=customer).values_list("book_id", flat=True))
    expected = [b.pk for b in popular(30) if b.pk not in owned][:3]
    assert [b.pk for b in recommend_for(customer, 3)] == expected


class TestCommands:
    def test_retrain_sync_json(self, fast):
        planted_store(fans=12)
        out = StringIO()
        call_command("retrain_recommendations", "--sync", "--json", stdout=out)
        data = json.loads(out.getvalue())
        assert data["status"] == "succeeded" and data["id"]
        assert {"extract", "fit", "score", "store"} <= set(data["seconds"])
        family = data["candidate"]["family"]
        parts = ["als", "lightfm"] if family == "blend" else [family]
        assert all(data["hyperparameters"][p] for p in parts), data["hyperparameters"]
        assert "precision@5" in data["metrics"]["model"] and "precision@5" in data["metrics"]["popularity"]
        assert data["metrics"]["trials"] and "cold" in data["metrics"], "warm and cold figures side by side"
        assert data["counts"]["recommendations"] > 0

    def test_retrain_if_none_live(self, fast):
        planted_store(fans=12)
        call_command("retrain_recommendations", "--sync", "--no-evaluate", "--if-none-live", stdout=StringIO())
        out = StringIO()
        call_command("retrain_recommendations", "--sync", "--if-none-live", stdout=out)
        assert "already live" in out.getvalue() and TrainingRun.objects.count() == 1

    def test_retrain_no_evaluate(self, fast):
        planted_store(fans=12)
        out = StringIO()
        call_command("retrain_recommendations", "--sync", "--no-evaluate", stdout=out)
        assert "succeeded" in out.getvalue()
        assert TrainingRun.objects.get().decision == "model (not evaluated)"

    def test_retrain_failure_exits_non_zero(self, fast):
        with pytest.raises(CommandError, match="no interactions"):
            call_command("retrain_recommendations", "--sync", stdout=StringIO())

    def test_export_format_and_formula_injection(self, fast):
        store = planted_store(fans=12)
        services.retrain(evaluate=False)
        evil = store["users"]["Alpha"][0]
        evil.username = "=HYPERLINK(\"http://x\")"
        evil.save()
        out = StringIO()
        call_command("export_recommendations", "--limit", "3", stdout=out)
        lines = out.getvalue().splitlines()
        assert lines[0] == "username,product,rank,score"
        import csv

        rows = list(csv.reader(lines[1:]))
        assert len(rows) == 24 * 3
        per_user: dict[str, list[int]] = {}
        for name, product, rank, score in rows:
            per_user.setdefault(name, []).append(int(rank))
            float(score)
            assert Book.objects.filter(product=product).exists()
        assert all(ranks == [1, 2, 3] for ranks in per_user.values())
        assert "'=HYPERLINK(\"http://x\")" in per_user
        scores = [float(r[3]) for r in rows if r[0] == rows[0][0]]
        assert scores == sorted(scores, reverse=True), "rank 1 is best"

    def test_export_without_a_live_run(self, fast):
        with pytest.raises(CommandError, match="No live recommendations"):
            call_command("export_recommendations", stdout=StringIO())


def test_read_path_costs_one_query_each(fast, django_assert_num_queries):
    store = planted_store(fans=12)
    services.retrain(evaluate=False)
    fan = store["users"]["Alpha"][0]
    book = store["books"]["Alpha"][0]
    with django_assert_num_queries(1):
        assert [b.author.name for b in recommend_for(fan, 5)]
    with django_assert_num_queries(1):
        assert [b.author.name for b in similar_to(book, 5)]
    with django_assert_num_queries(1):
        assert [b.author.name for b in popular(5)]
    newcomer = User.objects.create(username="newcomer")
    expected = [b.pk for b in popular(5)]
    with django_assert_num_queries(1):
        assert [b.pk for b in recommend_for(newcomer, 5)] == expected, "no list yet: the popular list"


def test_a_book_bought_after_the_run_is_left_out_at_read_time(fast):
    store = planted_store(fans=12)
    services.retrain(evaluate=False)
    fan = store["users"]["Alpha"][0]
    first = recommend_for(fan, 5)[0]
    order = Order.objects.create(user=fan)
    OrderLine.objects.create(order=order, book=first, quantity=1, unit_price=1)
    assert first.pk not in [b.pk for b in recommend_for(fan, 5)]
    assert len(recommend_for(fan, 5)) == 5


def test_corrupt_artifact_loads_as_none(fast, tmp_path):
    planted_store(fans=12)
    run = services.retrain(evaluate=False)
    with storage.artifact_storage().open(run.artifact, "wb") as fh:
        fh.write(b"not an npz at all")
    assert storage.load_artifact(run.artifact, run.artifact_record) is None
    assert recommend_for(User.objects.filter(username__startswith="alpha").first(), 3)


def test_artifacts_are_plain_npz_without_pickle(fast):
    planted_store(fans=12)
    run = services.retrain(evaluate=False)
    with storage.artifact_storage().open(run.artifact, "rb") as fh:
        with np.load(fh, allow_pickle=False) as npz:
            assert all(npz[key].dtype != object for key in npz.files)
    with pytest.raises(TypeError, match="pickle"):
        storage.save_artifact(run, {"bad": np.array([object()], dtype=object)})


def test_similar_items_never_include_the_book_itself(fast):
    planted_store(fans=12)
    services.retrain(evaluate=False)
    assert SimilarItem.objects.exists()
    assert not SimilarItem.objects.filter(item_id=models_F("similar_id")).exists()


def models_F(name):
    from django.db.models import F

    return F(name)


def test_a_failure_after_going_live_never_undoes_it(fast, monkeypatch):
    planted_store(fans=12)

    def broken_prune(*args, **kwargs):
        raise RuntimeError("prune failed (injected)")

    monkeypatch.setattr(storage, "prune", broken_prune)
    run = services.retrain(evaluate=False)
    assert run.status == "succeeded" and run.is_live
    assert Recommendation.objects.live().filter(user__isnull=False).count() == run.counts["recommendations"] > 0


def test_users_and_books_deleted_during_a_retrain_are_left_out(fast, monkeypatch):
    store = planted_store(fans=12)
    from recommendations import sources

    real_build = sources.build
    gone_user, gone_book = store["users"]["Alpha"][0], store["books"]["Beta"][0]
    gone_ids = (gone_user.pk, gone_book.pk)

    def build_then_delete(extracted):
        data = real_build(extracted)
        OrderLine.objects.filter(book=gone_book).delete()
        gone_book.delete()
        gone_user.delete()
        return data

    monkeypatch.setattr(sources, "build", build_then_delete)
    run = services.retrain(evaluate=False)
    assert run.status == "succeeded", run.error
    assert not Recommendation.objects.filter(user_id=gone_ids[0]).exists()
    assert not Recommendation.objects.filter(item_id=gone_ids[1]).exists()
    assert not SimilarItem.objects.filter(similar_id=gone_ids[1]).exists()
    assert run.counts["recommendations"] == Recommendation.objects.filter(run=run, user__isnull=False).count()
    assert run.counts["recommendations"] > 20 * 8, "everyone else keeps a full list, minus the deleted book"


def test_an_als_run_serves_rescores_and_brings_a_new_book_to_its_fans(fast, django_capture_on_commit_callbacks):
    # ALS chosen (the only family), evaluated: new books come from the metadata tower.
    fast.RECOMMENDATIONS = {
        **fast.RECOMMENDATIONS,
        "CANDIDATES": [{"name": "ALS", "family": "als", "hyper": {"factors": 16, "regularization": 0.1}}],
        "SEARCH": {"trials": 1, "seconds": 600, "families": ["als"]},
        "EVALUATION": {"min_users": 10, "k": 5, "min_cold_buyers": 5},
    }
    store = planted_store(fans=60)
    # No price: in this store prices are shared across genres, and a price bucket would link
    # the new Alpha book to Beta fans as strongly as its genre links it to Alpha fans.
    newcomer = Book.objects.create(product="A-new", title="Alpha newcomer", format="printedbook")
    newcomer.genres.add(store["genres"]["Alpha"])
    run = services.retrain()
    assert run.status == "succeeded", run.error
    assert run.params["family"] == "als" and run.params["hyperparameters"]["als"]["factors"] == 16
    assert run.metrics["new_items"]["mode"] == "calibrated", run.metrics.get("cold")
    lists = live_lists()
    alpha_fans = [u.pk for u in store["users"]["Alpha"]]
    beta_fans = [u.pk for u in store["users"]["Beta"]]
    assert np.mean([newcomer.pk in lists[u] for u in alpha_fans]) >= 0.5
    assert not any(newcomer.pk in lists[u] for u in beta_fans)
    assert SimilarItem.objects.live().filter(item=newcomer).exists(), "a new book has similar books by its metadata"

    # A purchase rescores the customer from the artifact: ALS solves their vector again.
    fan = store["users"]["Alpha"][0]
    bought = Book.objects.get(pk=lists[fan.pk][0])
    with django_capture_on_commit_callbacks(execute=True):
        order = Order.objects.create(user=fan)
        OrderLine.objects.create(order=order, book=bought, quantity=1, unit_price=1)
    after = list(Recommendation.objects.filter(run=run, user=fan).values_list("item_id", flat=True))
    assert after and bought.pk not in after and TrainingRun.objects.count() == 1


def test_an_artifact_with_wrong_shapes_is_no_model(fast):
    planted_store(fans=12)
    run = services.retrain(evaluate=False)
    arrays = storage.load_artifact(run.artifact, run.artifact_record)
    arrays["user_vectors"] = arrays["user_vectors"][:3]  # rewritten, record and all: fewer rows than users
    run.artifact, run.artifact_record = storage.save_artifact(run, arrays)
    run.save(update_fields=["artifact", "artifact_record"])
    services._live_model.cache_clear()
    fan = User.objects.filter(username__startswith="alpha").first()
    before = list(Recommendation.objects.filter(run=run, user=fan).values_list("item_id", flat=True))
    assert services.rescore_user(fan.pk) == 0
    assert list(Recommendation.objects.filter(run=run, user=fan).values_list("item_id", flat=True)) == before
