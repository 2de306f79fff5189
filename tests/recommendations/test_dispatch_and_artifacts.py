"""Tasks without a broker or with a dead one, artifacts that belong to their run, signals."""

from __future__ import annotations

import io
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile

from bookstore.celery import app
from bookstore.services import place_order
from recommendations import dispatch, services, signals, storage, tasks
from recommendations.models import Recommendation, TrainingRun
from tests.recommendations.helpers import planted_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def small(settings, tmp_path):
    settings.RECOMMENDATIONS = {
        **settings.RECOMMENDATIONS, "LIGHTFM": {"epochs": 10, "no_components": 16}, "LIST_SIZE": 8,
        "ARTIFACT_ROOT": str(tmp_path / "artifacts"),
    }  # fmt: skip
    return settings


@pytest.fixture
def no_broker(monkeypatch, settings):
    """A host that configured no broker and no eager tasks (a fresh startproject)."""
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "TASKS": "auto"}
    keys = ("broker_url", "broker_write_url", "task_always_eager")
    before = {key: app.conf[key] for key in keys}
    app.conf.update(broker_url=None, broker_write_url=None, task_always_eager=False)
    monkeypatch.setattr(dispatch, "_logged_auto", False)
    yield
    app.conf.update(before)


def _never_publish(*args, **kwargs):
    raise AssertionError("published to a broker the host did not configure")


# -- no broker --------------------------------------------------------------------------------
def test_without_a_broker_tasks_run_in_a_background_thread_and_it_is_logged_once(no_broker, monkeypatch, caplog):
    monkeypatch.setattr(tasks.rescore_user, "apply_async", _never_publish)
    ran = []
    monkeypatch.setattr(services, "rescore_user", lambda user_id: ran.append((user_id, threading.current_thread().name)) or 0)
    with caplog.at_level(logging.WARNING, logger="recommendations.dispatch"):
        assert dispatch.mode() == "thread"
        dispatch.send(tasks.rescore_user, [7])
        dispatch.send(tasks.rescore_user, [8])
        dispatch._Runner.get().join()
    assert ran == [(7, "recommendations-tasks"), (8, "recommendations-tasks")]
    assert sum("no Celery broker is configured" in r.getMessage() for r in caplog.records) == 1


def test_a_purchase_without_a_broker_never_publishes(small, no_broker, monkeypatch, django_capture_on_commit_callbacks):
    store = planted_store(fans=6)
    monkeypatch.setattr(tasks.rescore_user, "apply_async", _never_publish)
    ran = []
    monkeypatch.setattr(services, "rescore_user", lambda user_id: ran.append(user_id) or 0)
    fan = store["users"]["Beta"][0]
    with django_capture_on_commit_callbacks(execute=True):
        place_order(fan, [store["books"]["Beta"][-1]])
    dispatch._Runner.get().join()
    assert ran == [fan.pk]


def test_inline_and_forced_modes(small, monkeypatch):
    small.RECOMMENDATIONS = {**small.RECOMMENDATIONS, "TASKS": "inline"}
    ran = []
    monkeypatch.setattr(services, "rescore_user", lambda user_id: ran.append(threading.current_thread().name) or 0)
    dispatch.send(tasks.rescore_user, [1])
    assert ran == [threading.current_thread().name], "inline: in the caller, at once"
    small.RECOMMENDATIONS = {**small.RECOMMENDATIONS, "TASKS": "celery"}
    assert dispatch.mode() == "celery"


# -- a broker that hangs or is down ------------------------------------------------------------
def test_a_hanging_broker_holds_a_send_no_longer_than_the_publish_timeout(small, monkeypatch):
    small.RECOMMENDATIONS = {**small.RECOMMENDATIONS, "TASKS": "celery", "PUBLISH_TIMEOUT": 0.3}
    app.conf.task_always_eager = False  # put back by the eager_tasks fixture
    calls = []

    def hang(*args, **kwargs):
        calls.append(1)
        time.sleep(5)

    monkeypatch.setattr(tasks.rescore_user, "apply_async", hang)
    started = time.monotonic()
    with pytest.raises(dispatch.BrokerUnreachable, match="no answer within 0.3 s"):
        dispatch.send(tasks.rescore_user, [1])
    assert time.monotonic() - started < 3, "bounded by PUBLISH_TIMEOUT, not by the broker"
    # Right after a failure, sends are given up at once instead of piling up threads.
    with pytest.raises(dispatch.BrokerUnreachable, match="failed"):
        dispatch.send(tasks.rescore_user, [2])
    assert len(calls) == 1
    # A retrain, asked for by a person, always tries.
    monkeypatch.setattr(tasks.retrain, "apply_async", lambda *a, **k: type("R", (), {"id": "abc"})())
    assert dispatch.send(tasks.retrain, [1, False], back_off=False) == "abc"


def test_retrain_now_with_a_hanging_broker_answers_and_records_the_attempt(small, monkeypatch,
                                                                          django_capture_on_commit_callbacks):
    planted_store(fans=6)
    small.RECOMMENDATIONS = {**small.RECOMMENDATIONS, "TASKS": "celery", "PUBLISH_TIMEOUT": 0.3}
    app.conf.task_always_eager = False  # put back by the eager_tasks fixture
    monkeypatch.setattr(tasks.retrain, "apply_async", lambda *a, **k: time.sleep(5))
    failed = []
    signals.run_failed.connect(lambda sender, run, error, **kw: failed.append((run.pk, error)), weak=False,
                               dispatch_uid="test-failed")  # fmt: skip
    try:
        started = time.monotonic()
        with pytest.raises(services.BrokerUnavailable) as info, django_capture_on_commit_callbacks(execute=True):
            services.request_retrain(trigger="admin")
        assert time.monotonic() - started < 3
    finally:
        signals.run_failed.disconnect(dispatch_uid="test-failed")
    run = TrainingRun.objects.get(pk=info.value.run.pk)
    assert run.status == "failed" and "unreachable" in run.error and run.active is None
    assert failed == [(run.pk, run.error)]


# -- artifacts ---------------------------------------------------------------------------------
def test_artifacts_go_to_a_private_folder_per_database_and_are_never_overwritten(small, tmp_path):
    planted_store(fans=6)
    run = services.retrain(evaluate=False)
    folder = storage.artifact_folder()
    assert run.artifact.startswith(f"recommendations/{folder.split('/')[-1]}/run-{run.pk}-")
    assert folder.split("/")[-1].startswith("sqlite-") or folder.split("/")[-1].startswith("postgresql-")
    path = Path(storage.artifact_storage().path(run.artifact))
    assert path.is_relative_to(tmp_path / "artifacts") and path.stat().st_mode & 0o077 == 0, "private"
    with pytest.raises(ValueError, match="private"):
        storage.artifact_storage().url(run.artifact)  # nothing links to it
    again, _ = storage.save_artifact(run, {"x": np.arange(3)})
    assert again != run.artifact and path.exists()
    assert set(run.artifact_record) == {"arrays", "bytes", "sha256"}
    assert run.artifact_record["arrays"]["user_vectors"]["shape"][0] == run.counts["users"]


def test_the_default_artifact_root_is_outside_media(settings):
    from django.conf import settings as conf

    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "ARTIFACT_ROOT": None}
    root = storage.artifact_root()
    assert root.is_absolute() and root == Path(conf.BASE_DIR) / "var" / "recommendations"
    assert not root.is_relative_to(Path(conf.MEDIA_ROOT))


def _bomb_npz(record: dict) -> bytes:
    """What an attacker would write: arrays of the recorded names, but one far larger than
    the run wrote (zeros compress to almost nothing)."""
    buffer = io.BytesIO()
    arrays = {key: np.zeros(want["shape"], dtype=np.dtype(want["dtype"])) for key, want in record["arrays"].items()}
    arrays["user_biases"] = np.zeros(4 << 20, dtype=np.float32)  # 16 MiB of zeros, a few KB compressed
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def test_a_tampered_artifact_is_refused_before_it_is_read(small, caplog):
    store = planted_store(fans=6)
    run = services.retrain(evaluate=False)
    fan = store["users"]["Alpha"][0]
    services._live_model.cache_clear()  # as in another process: the shards loaded it here
    before = list(Recommendation.objects.filter(run=run, user=fan).values_list("item_id", flat=True))
    target = storage.artifact_storage()
    target.delete(run.artifact)
    target.save(run.artifact, ContentFile(_bomb_npz(run.artifact_record)))
    with caplog.at_level(logging.ERROR, logger="recommendations.storage"):
        assert storage.load_artifact(run.artifact, run.artifact_record) is None
        assert services.rescore_user(fan.pk) == 0
    assert any("refused" in r.getMessage() and "bytes where the run wrote" in r.getMessage() for r in caplog.records)
    assert list(Recommendation.objects.filter(run=run, user=fan).values_list("item_id", flat=True)) == before


def test_array_headers_are_checked_against_the_record_before_the_data():
    buffer = io.BytesIO()
    np.savez_compressed(buffer, a=np.zeros((3000, 4), np.float32))
    record = {"arrays": {"a": {"dtype": "<f4", "shape": [3, 4]}}}
    with pytest.raises(storage.ArtifactMismatch, match=r"'a' is <f4 \[3000, 4\], the run wrote <f4 \[3, 4\]"):
        storage._read_checked(buffer.getvalue(), record["arrays"])
    with pytest.raises(storage.ArtifactMismatch, match="holds arrays"):
        storage._read_checked(buffer.getvalue(), {"b": record["arrays"]["a"]})


def test_an_artifact_without_a_record_is_not_loaded(small, caplog):
    planted_store(fans=6)
    run = services.retrain(evaluate=False)
    with caplog.at_level(logging.WARNING, logger="recommendations.storage"):
        assert storage.load_artifact(run.artifact, {}) is None
    assert "no record" in caplog.text


def test_a_failed_load_is_tried_again_later(small, monkeypatch):
    store = planted_store(fans=6)
    run = services.retrain(evaluate=False)
    fan = store["users"]["Alpha"][0]
    services._live_model.cache_clear()  # as in another process: the shards loaded it here
    target = storage.artifact_storage()
    with target.open(run.artifact, "rb") as fh:
        content = fh.read()
    target.delete(run.artifact)
    assert services.rescore_user(fan.pk) == 0, "missing: nothing to rescore from"
    target.save(run.artifact, ContentFile(content))
    assert services.rescore_user(fan.pk) == 0, "remembered for a while"
    monkeypatch.setattr(services._LiveModels, "RETRY_SECONDS", 0.0)
    services._live_model._failed.clear()
    assert services.rescore_user(fan.pk) == 8, "loaded once it is back"


def test_pruning_removes_orphans_of_this_database_only(small):
    planted_store(fans=6)
    first = services.retrain(evaluate=False)
    target = storage.artifact_storage()
    folder = storage.artifact_folder()
    orphan = target.save(f"{folder}/run-{first.pk + 50}-0123456789ab.npz", ContentFile(b"left by a killed run"))
    other_db = target.save(f"recommendations/postgresql-other-0123456789/run-1-0123456789ab.npz", ContentFile(b"x"))
    services.retrain(evaluate=False)
    assert not target.exists(orphan)
    assert target.exists(other_db) and target.exists(first.artifact)


def test_runs_of_another_item_model_are_pruned_once_a_new_run_is_live(small):
    planted_store(fans=6)
    old = services.retrain(evaluate=False)
    TrainingRun.objects.filter(pk=old.pk).update(params={**old.params, "item_model": "shop.Product"})
    services.retrain(evaluate=False)
    old.refresh_from_db()
    assert old.pruned and not Recommendation.objects.filter(run=old).exists()


# -- signals and stage seconds ---------------------------------------------------------------------
def test_run_live_and_run_failed_are_sent_after_commit(small, monkeypatch, django_capture_on_commit_callbacks):
    planted_store(fans=6)
    got = []
    signals.run_live.connect(lambda sender, run, **kw: got.append(("live", run.pk, run.is_live)), weak=False,
                             dispatch_uid="test-live")  # fmt: skip
    signals.run_failed.connect(lambda sender, run, error, **kw: got.append(("failed", run.pk, error)), weak=False,
                               dispatch_uid="test-failed")  # fmt: skip

    def broken_receiver(sender, run, **kwargs):
        raise RuntimeError("a receiver's bug")

    signals.run_live.connect(broken_receiver, weak=False, dispatch_uid="test-broken")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            live = services.retrain(evaluate=False)
        assert got == [("live", live.pk, True)]
        monkeypatch.setattr(storage, "store_similar", lambda *a, **k: 1 / 0)
        with django_capture_on_commit_callbacks(execute=True):
            failed = services.retrain(evaluate=False)
    finally:
        for uid in ("test-live", "test-failed", "test-broken"):
            signals.run_live.disconnect(dispatch_uid=uid)
            signals.run_failed.disconnect(dispatch_uid=uid)
    assert live.status == "succeeded" and failed.status == "failed"
    assert got == [("live", live.pk, True), ("failed", failed.pk, failed.error)]


def test_every_stage_is_recorded_including_store(small):
    planted_store(fans=6)
    run = services.retrain()
    run.refresh_from_db()
    assert {"extract", "build", "score", "store"} <= set(run.stage_seconds)
    assert run.stage_seconds["store"] > 0
