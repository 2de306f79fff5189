"""System checks that catch, before any training, what used to fail at start-up with a
traceback or only during a retrain: each names the setting key that is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from io import StringIO
from pathlib import Path
from unittest import mock

import pytest
from django.apps import apps
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import OperationalError, connection, models
from django.test import override_settings
from django.test.utils import isolate_apps

from recommendations.checks import _unique, check_live_run
from recommendations.models import Recommendation, TrainingRun

ROOT = Path(__file__).resolve().parents[2]


def issues(**kwargs) -> list:
    """The app's issues, found the way ``manage.py check`` finds them."""
    return [e for e in checks.run_checks(**kwargs) if (e.id or "").startswith("recommendations.")]


def ids(errors) -> set[str]:
    return {e.id for e in errors}


def messages(errors) -> str:
    return " | ".join(e.msg for e in errors)


def with_settings(settings, **change):
    return override_settings(RECOMMENDATIONS={**settings.RECOMMENDATIONS, **change})


def source(**change) -> dict:
    return {"name": "purchases", "model": "bookstore.OrderLine", "user": "order__user", "item": "book", **change}


def manage(settings_module: str, *args: str, tmp_path: Path | None = None, **env) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(ROOT), str(tmp_path or "")) if p)
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module, "PYTHONPATH": path, **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120
    )


# 1. A model label that names no model ---------------------------------------------------------
@pytest.mark.parametrize(
    "override, expected_id, named",
    [
        ('{**RECOMMENDATIONS, "ITEM_MODEL": "shop.Prodcut"}', "recommendations.E002", "RECOMMENDATIONS['ITEM_MODEL']"),
        (
            '{**RECOMMENDATIONS, "SOURCES": [{**RECOMMENDATIONS["SOURCES"][0], "model": "shop.Purchse"}]}',
            "recommendations.E003",
            "RECOMMENDATIONS['SOURCES'][0]['model']",
        ),
    ],
)
def test_a_misspelled_model_is_a_check_error_not_a_traceback(tmp_path, override, expected_id, named):
    (tmp_path / "misspelled_settings.py").write_text(textwrap.dedent(f"""
        from tests.otherhost.settings import *  # noqa: F403

        RECOMMENDATIONS = {override}  # noqa: F405
    """))
    result = manage("misspelled_settings", "check", tmp_path=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "SystemCheckError" in result.stderr
    assert expected_id in result.stderr and named in result.stderr, result.stderr


def test_ready_survives_a_misspelled_model(settings):
    config = apps.get_app_config("recommendations")
    with with_settings(settings, ITEM_MODEL="bookstore.Bok"):
        config.ready()  # connects what resolves; no LookupError
        assert "recommendations.E002" in ids(issues())
    with with_settings(settings, SOURCES=[source(model="bookstore.OrderLin", exclude=True)]):
        config.ready()
        found = issues()
    assert "recommendations.E003" in ids(found) and "['model']" in messages(found)


# 2-8. Settings that used to fail only in a retrain ---------------------------------------------
@pytest.mark.parametrize(
    "change, expected_id, named",
    [
        # 2. lookups are checked by building the query (no database)
        ({"SOURCES": [source(filter={"order__statuss": "paid"})]}, "recommendations.E003", "RECOMMENDATIONS['SOURCES'][0]['filter']"),
        ({"SOURCES": [source(filter={"quantity__gte": "many"})]}, "recommendations.E003", "['filter']"),
        ({"ITEM_FILTER": {"author__nme": "x"}}, "recommendations.E009", "RECOMMENDATIONS['ITEM_FILTER']"),
        ({"ITEM_FILTER": {"available__between": True}}, "recommendations.E009", "RECOMMENDATIONS['ITEM_FILTER']"),
        # 3. where artifacts go
        ({"ARTIFACT_STORAGE": "artefacts"}, "recommendations.E013", "RECOMMENDATIONS['ARTIFACT_STORAGE']"),
        ({"ARTIFACT_ROOT": "var/recommendations"}, "recommendations.E013", "RECOMMENDATIONS['ARTIFACT_ROOT']"),
        # 4. the widgets' cache
        ({"CACHE_ALIAS": "recommendations"}, "recommendations.E014", "RECOMMENDATIONS['CACHE_ALIAS']"),
        # 5. a key two items could share
        ({"ITEM_KEY": "title"}, "recommendations.E009", "RECOMMENDATIONS['ITEM_KEY']"),
        ({"ITEM_KEY": "author"}, "recommendations.E009", "RECOMMENDATIONS['ITEM_KEY']"),
        ({"ITEM_KEY": "author__name"}, "recommendations.E009", "RECOMMENDATIONS['ITEM_KEY']"),
        # 6. a timestamp that is not a date
        ({"SOURCES": [source(timestamp="book__title")]}, "recommendations.E003", "RECOMMENDATIONS['SOURCES'][0]['timestamp']"),
        ({"SOURCES": [source(timestamp="order__user")]}, "recommendations.E003", "['timestamp']"),
        ({"SOURCES": [source(timestamp="quantity")]}, "recommendations.W003", "RECOMMENDATIONS['SOURCES'][0]['timestamp']"),
        # 7. feature kinds that do not fit the field
        ({"ITEM_FEATURES": {"title": "number"}}, "recommendations.E004", "RECOMMENDATIONS['ITEM_FEATURES']['title']"),
        ({"ITEM_FEATURES": {"author": "tags"}}, "recommendations.E004", "RECOMMENDATIONS['ITEM_FEATURES']['author']"),
        ({"ITEM_FEATURES": {"genres": "category"}}, "recommendations.E004", "RECOMMENDATIONS['ITEM_FEATURES']['genres']"),
        ({"ITEM_FEATURES": {"genres__name": "category"}}, "recommendations.E004", "['genres__name']"),
        ({"ITEM_FEATURES": {"price": "category"}}, "recommendations.E004", "RECOMMENDATIONS['ITEM_FEATURES']['price']"),
        ({"ITEM_FEATURES": {"available": "year"}}, "recommendations.E004", "RECOMMENDATIONS['ITEM_FEATURES']['available']"),
        ({"USER_FEATURES": {"username": "number"}}, "recommendations.E004", "RECOMMENDATIONS['USER_FEATURES']['username']"),
        # 8. how tasks run
        ({"TASKS": "celeri"}, "recommendations.E015", "RECOMMENDATIONS['TASKS']"),
        ({"PUBLISH_TIMEOUT": 0}, "recommendations.E015", "RECOMMENDATIONS['PUBLISH_TIMEOUT']"),
        ({"PUBLISH_TIMEOUT": "2"}, "recommendations.E015", "RECOMMENDATIONS['PUBLISH_TIMEOUT']"),
        # 9. scaling out
        ({"QUEUES": {"scorin": "scoring"}}, "recommendations.E016", "RECOMMENDATIONS['QUEUES']"),
        ({"QUEUES": {"training": ""}}, "recommendations.E016", "RECOMMENDATIONS['QUEUES']"),
        ({"SHARD_SIZE": 0}, "recommendations.E016", "RECOMMENDATIONS['SHARD_SIZE']"),
        ({"SHARD_ATTEMPTS": "3"}, "recommendations.E016", "RECOMMENDATIONS['SHARD_ATTEMPTS']"),
        ({"SHARD_THREADS": 0}, "recommendations.E016", "RECOMMENDATIONS['SHARD_THREADS']"),
        ({"ACTIVE_DAYS": "90"}, "recommendations.E016", "RECOMMENDATIONS['ACTIVE_DAYS']"),
    ],
)
def test_bad_settings_are_caught_before_training(settings, change, expected_id, named):
    with with_settings(settings, **change):
        found = issues()
    assert expected_id in ids(found), messages(found)
    assert named in messages(found)


@pytest.mark.parametrize(
    "change",
    [
        {"ITEM_KEY": "pk"},
        {"ITEM_KEY": "id"},
        {"ITEM_KEY": "product"},
        {"ITEM_FILTER": {"author__name__startswith": "A", "price__lte": "20.00"}},
        {"SOURCES": [source(filter={"order__created__year__gte": 2020}, timestamp="order__created")]},
        {"ARTIFACT_STORAGE": "default", "ARTIFACT_ROOT": "/srv/recommendations"},
        {"TASKS": "inline", "PUBLISH_TIMEOUT": 0.5},
        # What sources.py reads as well: tags through a to-many path, a category through a
        # foreign key, a date as a number (its year), an integer as a year.
        {"ITEM_FEATURES": {"genres__name": "tags", "order_lines": "tags", "author__name": "category",
                           "available": "category", "created": "number", "price": "year", "id": "year"}},
    ],
)  # fmt: skip
def test_what_the_code_reads_is_accepted(settings, change):
    with with_settings(settings, **change):
        found = issues()
    assert found == [], messages(found)


@isolate_apps("tests.recommendations")
def test_a_single_field_unique_constraint_makes_a_key_unique():
    class Item(models.Model):
        code = models.CharField(max_length=10)
        partial = models.CharField(max_length=10)
        pair = models.CharField(max_length=10)
        other = models.CharField(max_length=10)

        class Meta:
            app_label = "tests_recommendations"
            constraints = [
                models.UniqueConstraint(fields=["code"], name="item_code_unique"),
                models.UniqueConstraint(fields=["partial"], condition=models.Q(other=""), name="item_partial_unique"),
                models.UniqueConstraint(fields=["pair", "other"], name="item_pair_unique"),
            ]

    field = Item._meta.get_field
    assert _unique(field("id")) and _unique(field("code"))
    assert not _unique(field("partial")), "a condition leaves rows outside it free"
    assert not _unique(field("pair")), "unique together with another field only"


# 9. ITEM_MODEL changed after a run went live --------------------------------------------------
def live_run(**params) -> TrainingRun:
    return TrainingRun.objects.create(status="succeeded", active=None, is_live=True, params=params)


@pytest.mark.django_db
def test_a_live_run_of_another_item_model_is_reported_and_not_served():
    run = live_run(item_model="bookstore.Author")
    Recommendation.objects.create(run=run, user=None, item_id=1, kind="popular", rank=1, score=1.0)
    found = check_live_run(databases=["default"])
    assert ids(found) == {"recommendations.W004"}
    assert f"ITEM_MODEL'] was 'bookstore.Author' for run #{run.pk}" in messages(found)
    assert "Retrain to replace them" in messages(found)
    assert not TrainingRun.objects.live().exists(), "the old model's keys must not be read through the new one"
    assert not Recommendation.objects.live().exists() and not Recommendation.objects.popular().exists()
    out = StringIO()
    # A warning, so that migrate can still create the new model's table first.
    call_command("check", "--database", "default", stdout=out, stderr=out)
    assert "recommendations.W004" in out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params", [{}, {"item_model": None}, {"item_model": "bookstore.Book"}, {"item_model": "bookstore.book"}]
)
def test_a_live_run_of_this_item_model_or_a_legacy_one_is_fine(params):
    run = live_run(**params, candidate="hybrid")
    assert check_live_run(databases=["default"]) == []
    assert list(TrainingRun.objects.live()) == [run]


@pytest.mark.django_db
def test_the_live_run_check_is_quiet_before_migrate_and_without_a_database():
    live_run(item_model="bookstore.Author")
    with mock.patch.object(connection, "ensure_connection", side_effect=OperationalError("connection refused")):
        assert check_live_run(databases=["default"]) == []
    table = TrainingRun._meta.db_table
    with connection.cursor() as cursor:  # undone with the test's transaction
        cursor.execute(f"ALTER TABLE {connection.ops.quote_name(table)} RENAME TO recommendations_run_away")
    assert check_live_run(databases=["default"]) == []
    with connection.cursor() as cursor:  # the check's failed query spoiled nothing
        cursor.execute("SELECT COUNT(*) FROM recommendations_run_away")
        assert cursor.fetchone() == (1,)


# 10. Artifacts in a storage the site serves ---------------------------------------------------
def deploy_issues() -> list:
    return [e for e in issues(include_deployment_checks=True) if e.id == "recommendations.W002"]


@pytest.mark.parametrize("alias", ["default", "staticfiles"])
def test_artifacts_in_a_served_storage_are_a_deploy_warning(settings, alias):
    with with_settings(settings, ARTIFACT_STORAGE=alias):
        found = deploy_issues()
        assert [e.id for e in found] == ["recommendations.W002"]
        assert f"RECOMMENDATIONS['ARTIFACT_STORAGE'] = {alias!r}" in messages(found)
        assert all(e.id != "recommendations.W002" for e in issues()), "a deploy check only"


def test_artifacts_in_a_served_directory_are_a_deploy_warning(settings, tmp_path):
    (tmp_path / "assets").mkdir()
    settings.MEDIA_ROOT, settings.STATICFILES_DIRS = str(tmp_path / "media"), [("assets", str(tmp_path / "assets"))]
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                      "OPTIONS": {"location": str(tmp_path / "media" / "models")}},
    }  # fmt: skip
    with with_settings(settings, ARTIFACT_ROOT=str(tmp_path / "media" / "recommendations")):
        found = deploy_issues()
        assert "RECOMMENDATIONS['ARTIFACT_ROOT']" in messages(found) and "MEDIA_ROOT" in messages(found)
    with with_settings(settings, ARTIFACT_STORAGE="artifacts"):
        found = deploy_issues()
        assert "RECOMMENDATIONS['ARTIFACT_STORAGE']" in messages(found) and "MEDIA_ROOT" in messages(found)
    with with_settings(settings, ARTIFACT_ROOT=str(tmp_path / "assets" / "models")):
        assert "STATICFILES_DIRS" in messages(deploy_issues())
    with with_settings(settings, ARTIFACT_ROOT=str(tmp_path / "private")):
        assert deploy_issues() == []


# The shipped configurations ---------------------------------------------------------------------
@pytest.mark.django_db
def test_the_demo_settings_pass_every_check():
    out = StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()
    call_command("check", "--database", "default", stdout=out)
    assert deploy_issues() == []


def test_the_other_host_settings_pass_every_check():
    result = manage("tests.otherhost.settings", "check", "--database", "default")
    assert result.returncode == 0 and "no issues" in result.stdout, result.stdout + result.stderr
    deploy = manage("tests.otherhost.settings", "check", "--deploy")
    assert "recommendations." not in deploy.stdout + deploy.stderr
