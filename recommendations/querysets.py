"""The one read path: the live run's lists, filtered as the settings say, in one query."""

from __future__ import annotations

from django.db import models
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.fields.json import KeyTextTransform

from .conf import app_settings


def _prefixed(lookups: dict, prefix: str) -> dict:
    return {f"{prefix}__{key}": value for key, value in lookups.items()}


def _related(prefix: str) -> list[str]:
    return [prefix, *(f"{prefix}__{path}" for path in app_settings.ITEM_SELECT_RELATED)]


def owned_items(user_pk, item_ref: str) -> list[Exists]:
    """``Exists`` subqueries: the item is one the user must not be offered (e.g. bought it).

    One per source marked ``"exclude"``; this is how books bought after a run are left
    out at read time, without waiting for the next run.
    """
    from .sources import ModelSource  # the source's own queryset: its model, manager and filter

    checks = []
    for source in app_settings.SOURCES:
        if source.get("exclude"):
            owned = ModelSource(source).queryset().filter(**{source["user"]: user_pk, source["item"]: OuterRef(item_ref)})
            checks.append(Exists(owned))
    return checks


def of_this_item_model(prefix: str = "") -> Q:
    """Runs trained for the current ``ITEM_MODEL``: a run of another one (the setting changed
    after it) holds the old model's keys, which must never be read through the new model
    (``checks.check_live_run`` reports it).  Runs that did not record the model count as
    current."""
    field = f"{prefix}params__item_model"
    return (
        Q(**{f"{field}__isnull": True})  # no such key
        | Q(**{field: None})  # JSON null
        | Q(**{f"{field}__iexact": app_settings.ITEM_MODEL})  # "shop.product" names shop.Product too
    )


class TrainingRunQuerySet(models.QuerySet):
    def live(self):
        """The live run, unless it was trained for another ``ITEM_MODEL``."""
        return self.filter(of_this_item_model(), is_live=True)

    def active(self):
        return self.filter(status__in=["queued", "running"])

    def finished(self):
        return self.exclude(status__in=["queued", "running"])


class RecommendationQuerySet(models.QuerySet):
    def live(self):
        # run_created names the run in cache keys (see cache.generation); the join is there anyway.
        return self.filter(of_this_item_model("run__"), run__is_live=True).annotate(run_created=F("run__created"))

    def popular(self, kind: str = "popular"):
        """The live popular list (``"popular"`` overall, ``"recent"`` lately)."""
        return (
            self.live()
            .filter(user__isnull=True, kind=kind, **_prefixed(app_settings.ITEM_FILTER, "item"))
            .select_related(*_related("item"))
            .order_by("rank")
        )

    def for_user(self, user):
        """The user's live list, then the popular list as a fallback, in one query.

        Personal rows come first; items the user owns (sources with ``"exclude"``) and items
        that no longer pass ``ITEM_FILTER`` are left out.  Anonymous users get the popular
        list.  Use ``.top(n)`` to read it.
        """
        qs = self.live().filter(**_prefixed(app_settings.ITEM_FILTER, "item")).select_related(*_related("item"))
        # Whether the run scores some customers on demand (ACTIVE_DAYS): read with the rows,
        # so that a customer without a stored list costs no query to find out.
        qs = qs.annotate(run_on_demand=KeyTextTransform("customers_on_demand", "run__counts"))
        popular = Q(user__isnull=True, kind="popular")
        if user is None or not getattr(user, "is_authenticated", False):
            return qs.filter(popular).order_by("rank")
        qs = qs.filter(Q(user_id=user.pk) | popular)
        for owned in owned_items(user.pk, "item_id"):
            qs = qs.exclude(owned)
        return qs.order_by(F("user_id").asc(nulls_last=True), "rank")

    def top(self, n: int) -> list:
        """The first ``n`` rows, without repeating an item (popular rows top up a short list)."""
        seen, result = set(), []
        for row in self[: 2 * n]:
            if row.item_id not in seen:
                seen.add(row.item_id)
                result.append(row)
                if len(result) == n:
                    break
        return result


class SimilarItemQuerySet(models.QuerySet):
    def live(self):
        return self.filter(of_this_item_model("run__"), run__is_live=True).annotate(run_created=F("run__created"))

    def for_item(self, item):
        """Items like ``item`` in the live run, best first."""
        pk = getattr(item, "pk", item)
        return (
            self.live()
            .filter(item_id=pk, **_prefixed(app_settings.ITEM_FILTER, "similar"))
            .select_related(*_related("similar"))
            .order_by("rank")
        )


def items_for_user(user_pk, pks: list):
    """The items ``pks`` the user may be offered (``ITEM_FILTER``, not owned now), in one
    query, with ``ITEM_SELECT_RELATED``: a list scored on demand, read like a stored one."""
    from django.apps import apps

    model = apps.get_model(app_settings.ITEM_MODEL)
    qs = model._default_manager.filter(pk__in=pks, **app_settings.ITEM_FILTER)
    if app_settings.ITEM_SELECT_RELATED:
        qs = qs.select_related(*app_settings.ITEM_SELECT_RELATED)
    for owned in owned_items(user_pk, "pk"):
        qs = qs.exclude(owned)
    return qs
