"""The customers' lists scored in shards: the same lists however the customers are cut, a
second delivery of a shard that does nothing, a shard that fails its run, and a publisher
that waits for every shard.  On the default path, shards run in the training process; here
some tests stop the run after training (as when the shards went to workers) and play the
scoring tasks by hand.  The real workers' version is tests/services/test_scoring_shards.py."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Count
from django.utils import timezone

from recommendations import services, storage, tasks
from recommendations.models import Recommendation, ScoringShard, TrainingRun
from tests.recommendations.helpers import planted_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def small(settings, tmp_path):
    settings.RECOMMENDATIONS = {
        **settings.RECOMMENDATIONS, "LIGHTFM": {"epochs": 10, "no_components": 16}, "LIST_SIZE": 8,
        "ARTIFACT_ROOT": str(tmp_path / "artifacts"), "SHARD_SIZE": 8,
    }  # fmt: skip
    return settings


def lists(run: TrainingRun) -> dict:
    rows = Recommendation.objects.filter(run=run, user__isnull=False).order_by("user", "rank")
    result: dict = {}
    for user, item, score in rows.values_list("user_id", "item_id", "score"):
        result.setdefault(user, []).append((item, round(score, 4)))
    return result


@pytest.fixture
def sent_to_workers(monkeypatch):
    """Retrains stop after training, their shards "sent" (to no one): the test plays them."""
    sent = []
    monkeypatch.setattr(services, "fan_out_shards", lambda run, shards: sent.append((run.pk, shards)))

    def retrain():
        run = services.retrain(evaluate=False, fan_out=True)
        assert sent[-1] == (run.pk, run.counts["shards"])
        return run

    return retrain


def test_the_lists_do_not_depend_on_how_customers_are_cut(small, settings):
    planted_store(fans=30)
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "SHARD_SIZE": 1_000_000}
    whole = services.retrain(evaluate=False)
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "SHARD_SIZE": 7}
    cut = services.retrain(evaluate=False)
    assert whole.status == cut.status == "succeeded"
    assert whole.counts["shards"] == 1 and cut.counts["shards"] == -(-cut.counts["users"] // 7) >= 5
    assert lists(cut) == lists(whole) and len(lists(cut)) == cut.counts["users"]
    assert cut.counts["recommendations"] == sum(ScoringShard.objects.filter(run=cut).values_list("rows", flat=True))
    assert set(ScoringShard.objects.filter(run=cut).values_list("status", "attempts")) == {("done", 1)}
    assert not ScoringShard.objects.filter(run=cut).exclude(artifact="").exists(), "inputs deleted once live"
    assert {"extract", "build", "score", "artifact", "store", "shards"} <= set(cut.stage_seconds)


def test_a_run_waits_for_its_shards_and_a_second_delivery_does_nothing(small, sent_to_workers):
    planted_store(fans=12)
    previous = services.retrain(evaluate=False)
    run = sent_to_workers()
    assert run.status == "running" and run.stage == "shards" and run.counts["shards"] >= 2
    assert services.publish_run(run.pk) == "pending"
    assert TrainingRun.objects.live().get() == previous, "the previous run serves meanwhile"

    for number in range(run.counts["shards"]):
        assert services.score_shard(run.pk, number) > 0
        assert services.score_shard(run.pk, number) is None, "a second delivery finds the shard done"
    run.refresh_from_db()
    assert run.progress == 1.0

    assert services.publish_run(run.pk) == "live"
    assert services.publish_run(run.pk) == "over", "the callback delivered twice publishes once"
    run.refresh_from_db()
    assert run.status == "succeeded" and run.is_live
    per_rank = Recommendation.objects.filter(run=run, user__isnull=False).values("user", "rank").annotate(n=Count("id"))
    assert {row["n"] for row in per_rank} == {1}
    assert len(lists(run)) == run.counts["users"]


def test_a_lost_shard_is_tried_again_and_fails_the_run_when_its_attempts_run_out(small, sent_to_workers, settings):
    planted_store(fans=12)
    previous = services.retrain(evaluate=False)
    run = sent_to_workers()
    # Deliveries whose workers died after claiming shard 0 (nothing committed).
    for _ in range(settings.RECOMMENDATIONS.get("SHARD_ATTEMPTS", 3)):
        assert services._claim_shard(run.pk, 0) is not None
    with pytest.raises(services.ShardFailed, match="Shard 0 was started 3 times without finishing"):
        services.score_shard(run.pk, 0)
    result = tasks.score_shard.apply(args=[run.pk, 0]).get()
    assert result["status"] == "failed"
    run.refresh_from_db()
    assert run.status == "failed" and "Shard 0 was started 3 times" in run.error and run.active is None
    assert not Recommendation.objects.filter(run=run).exists(), "nothing of the failed run is left"
    assert not ScoringShard.objects.filter(run=run).exclude(artifact="").exists()
    assert TrainingRun.objects.live().get() == previous
    assert services.score_shard(run.pk, 1) is None, "the other shards of a failed run do nothing"
    assert services.publish_run(run.pk) == "over"
    assert services.retrain(evaluate=False).status == "succeeded", "the next retrain runs"


def test_a_shard_whose_inputs_are_tampered_with_fails_its_run(small, sent_to_workers):
    planted_store(fans=12)
    previous = services.retrain(evaluate=False)
    run = sent_to_workers()
    shard = ScoringShard.objects.get(run=run, number=1)
    target = storage.artifact_storage()
    target.delete(shard.artifact)
    with target.open(shard.artifact, "wb") as fh:
        fh.write(b"PK\x03\x04 not what the run wrote")
    assert tasks.score_shard.apply(args=[run.pk, 1]).get()["status"] == "failed"
    run.refresh_from_db()
    assert run.status == "failed" and "Shard 1" in run.error and "do not load" in run.error
    assert TrainingRun.objects.live().get() == previous


def test_a_shard_that_raises_is_retried_then_fails_the_run(small, sent_to_workers, monkeypatch):
    planted_store(fans=12)
    run = sent_to_workers()
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("disk full")

    monkeypatch.setattr(storage, "store_personal", broken)
    # Called directly, the task raises where it would ask Celery for a retry.
    for _ in range(2):
        with pytest.raises(RuntimeError, match="disk full"):
            tasks.score_shard(run.pk, 0)
        assert TrainingRun.objects.get(pk=run.pk).status == "running"
    assert tasks.score_shard(run.pk, 0)["status"] == "failed"
    assert len(calls) == 3, "SHARD_ATTEMPTS deliveries"
    run.refresh_from_db()
    assert run.status == "failed" and "Shard 0 failed 3 times" in run.error and "disk full" in run.error
    shard = ScoringShard.objects.get(run=run, number=0)
    assert shard.status == "failed" and shard.attempts == 3 and "disk full" in shard.error


def test_shards_no_worker_takes_are_reported_by_the_stale_check(small, sent_to_workers, settings):
    planted_store(fans=12)
    run = sent_to_workers()
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "STALE_AFTER_SECONDS": 60, "QUEUES": {"scoring": "scoring"}}
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat=timezone.now() - dt.timedelta(seconds=61))
    assert services.mark_stale_runs() == [run.pk]
    run.refresh_from_db()
    assert run.status == "failed" and "no worker took them from the 'scoring' queue" in run.error
    assert "-Q scoring" in run.error
    assert not Recommendation.objects.filter(run=run).exists(), "what the run wrote is discarded"
    assert not ScoringShard.objects.filter(run=run).exclude(artifact="").exists() and not run.artifact


def test_which_books_exist_is_read_once_per_run_and_process_and_again_when_old(small, sent_to_workers, monkeypatch):
    """A run's shards in one process share one reading of which books still exist (tens of
    thousands of books cost a query per shard otherwise); once that reading is older than
    ``ITEMS_PRESENT_SECONDS`` the next shard reads again and leaves out a book deleted
    meanwhile."""
    from bookstore.models import Book, OrderLine

    planted_store(fans=12)
    run = sent_to_workers()
    answers = []
    existing = storage.existing

    def watched(model, keys):
        mask = existing(model, keys)
        if model is Book:
            answers.append(dict(zip(keys.tolist(), mask.tolist(), strict=True)))
        return mask

    monkeypatch.setattr(storage, "existing", watched)
    shards = run.counts["shards"]
    assert shards >= 3
    services.score_shard(run.pk, 0)
    services.score_shard(run.pk, 1)
    assert len(answers) == 1, "the second shard reused the first one's answer"
    gone = Book.objects.exclude(pk__in=OrderLine.objects.values("book")).order_by("pk").first().pk
    Book.objects.filter(pk=gone).delete()
    monkeypatch.setattr(services, "ITEMS_PRESENT_SECONDS", 0.0)
    for number in range(2, shards):
        assert services.score_shard(run.pk, number) > 0
    assert len(answers) == shards - 1
    assert answers[0][gone] is True and all(answer[gone] is False for answer in answers[1:])
    assert services.publish_run(run.pk) == "live"
