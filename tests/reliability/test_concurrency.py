"""Two retrains at once (RELIABILITY 3), proven on PostgreSQL with real threads: the
database is the lock, and going live is guarded in the database too."""

from __future__ import annotations

import pytest

from recommendations import services, storage
from recommendations.models import TrainingRun
from tests.reliability.conftest import at_once

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_simultaneous_requests_start_one_run(postgres):
    results = at_once(8, lambda i: services.start_run(trigger=f"click-{i}"))
    started = [r for r in results if isinstance(r, TrainingRun)]
    refused = [r for r in results if isinstance(r, services.AlreadyRunning)]
    assert len(started) == 1 and len(refused) == 7, results
    assert all(r.run is None or r.run.pk == started[0].pk for r in refused)
    assert TrainingRun.objects.filter(active=True).count() == 1


def test_publishing_is_guarded_in_the_database(postgres):
    """Two runs reach "go live" at the same moment (as when a Redis lock expired while its
    holder still ran): exactly one run is live afterwards, and never the older one over the
    newer one."""
    older = TrainingRun.objects.create(status="running", active=None)
    newer = TrainingRun.objects.create(status="running", active=None)

    def go_live(i: int):
        from django.db import transaction

        run = (older, newer)[i]
        with transaction.atomic():
            storage.publish(run)
        return run.pk

    for _ in range(5):
        TrainingRun.objects.update(is_live=None)
        results = at_once(2, go_live)
        live = list(TrainingRun.objects.filter(is_live=True).values_list("pk", flat=True))
        assert live == [newer.pk], results
        # Either the older one went live first and was replaced, or it was refused.
        assert results[1] == newer.pk and results[0] in (older.pk,) or isinstance(results[0], storage.PublishConflict)


def test_a_run_marked_failed_cannot_go_live(postgres):
    from django.db import transaction

    run = TrainingRun.objects.create(status="failed", active=None)
    with pytest.raises(storage.PublishConflict):
        with transaction.atomic():
            storage.publish(run)
    assert not TrainingRun.objects.filter(is_live=True).exists()
