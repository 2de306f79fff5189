"""PostgreSQL: the list tables are partitioned by run (migration 0003, storage.RunRows)."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import connection

from recommendations import services, storage
from recommendations.api import recommend_for, similar_to
from recommendations.models import Recommendation, SimilarItem
from tests.recommendations.helpers import planted_store
from tests.recommendations.test_retrain import FAST

pytestmark = pytest.mark.services

MIGRATION = importlib.import_module("recommendations.migrations.0003_partitioned_lists")


@pytest.fixture
def fast(settings, postgres):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, **FAST, "LIST_SIZE": 8, "KEEP_RUNS": 1}
    return settings


def partitions(model) -> dict[str, str]:
    """Partition name -> bound (``FOR VALUES IN ('7')``, ``DEFAULT``)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s)",
            [connection.ops.quote_name(model._meta.db_table)],
        )
        return dict(cursor.fetchall())


def index_columns(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = to_regclass(%s)", [table])
        return [row[0][row[0].index("(") :] for row in cursor.fetchall()]


def test_each_run_gets_an_indexed_partition_that_pruning_drops(fast):
    store = planted_store(fans=12)
    first = services.retrain(evaluate=False)
    assert first.status == "succeeded"
    for model in (Recommendation, SimilarItem):
        assert storage.is_partitioned(model)
        name = storage.partition_name(model, first.pk)
        assert partitions(model)[name] == f"FOR VALUES IN ('{first.pk}')"
        assert index_columns(name) == index_columns(model._meta.db_table), "the parent's indexes, built on the partition"
    assert index_columns(storage.partition_name(Recommendation, first.pk)) == ["(user_id, run_id)"]
    ids = list(Recommendation.objects.filter(run=first).values_list("id", flat=True))
    assert ids and all(i >> 32 == first.pk for i in ids), "ids are run id · 2³² + n"
    fan = store["users"]["Alpha"][0]
    assert recommend_for(fan, 5) and similar_to(store["books"]["Alpha"][0], 5)

    second = services.retrain(evaluate=False)
    assert second.status == "succeeded"
    for model in (Recommendation, SimilarItem):
        names = partitions(model)
        assert storage.partition_name(model, first.pk) not in names, "KEEP_RUNS = 1: the first run's partition dropped"
        assert storage.partition_name(model, second.pk) in names
    assert not Recommendation.objects.filter(run=first).exists()
    assert recommend_for(fan, 5)


def test_rows_written_one_by_one_go_to_the_live_partition_or_the_default_one(fast):
    store = planted_store(fans=12)
    run = services.retrain(evaluate=False)
    fan, book = store["users"]["Alpha"][0], store["books"]["Beta"][0]
    row = Recommendation.objects.create(run=run, user=fan, item=book, rank=99, score=0.0)
    assert row.id < 1 << 32, "the sequence's ids stay below the bulk-written ones"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {connection.ops.quote_name(storage.partition_name(Recommendation, run.pk))} WHERE id = %s",
            [row.id],
        )
        assert cursor.fetchone()[0] == 1
    other = services.request_retrain(trigger="test")  # a queued run: no partition of its own yet
    stray = Recommendation.objects.create(run=other, user=fan, item=book, rank=1, score=0.0)
    assert Recommendation.objects.filter(pk=stray.pk).exists()


def test_migration_0003_converts_both_ways_keeping_rows_indexes_and_ids(fast):
    planted_store(fans=12)
    run = services.retrain(evaluate=False)
    rows = sorted(Recommendation.objects.values_list("id", "run_id", "user_id", "item_id", "rank"))
    table = Recommendation._meta.db_table

    with connection.schema_editor() as editor:
        MIGRATION.unpartition(apps, editor)
    assert not storage.is_partitioned(Recommendation) and not storage.is_partitioned(SimilarItem)
    assert sorted(Recommendation.objects.values_list("id", "run_id", "user_id", "item_id", "rank")) == rows
    assert "(user_id, run_id)" in index_columns(table) and "(id)" in index_columns(table)
    added = Recommendation.objects.create(run=run, user=None, item_id=rows[0][3], kind="popular", rank=999, score=0.0)

    with connection.schema_editor() as editor:
        MIGRATION.partition(apps, editor)
    assert storage.is_partitioned(Recommendation)
    assert storage.partition_name(Recommendation, run.pk) in partitions(Recommendation)
    assert Recommendation.objects.filter(pk=added.pk).exists()
    assert Recommendation.objects.count() == len(rows) + 1
    assert Recommendation.objects.create(run=run, user=None, item_id=rows[0][3], kind="popular", rank=1000, score=0.0).pk > added.pk
    assert services.retrain(evaluate=False).status == "succeeded", "a run stores into the rebuilt tables"
