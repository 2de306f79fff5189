"""The Python API: lists of items from the live run, one query each.

    from recommendations.api import recommend_for, similar_to, popular

    recommend_for(request.user, 6)               # the customer's picks; the popular list as a fallback
    recommend_for(request.user, 6, exclude=item) # ... without the item on this page
    similar_to(item, 6)                          # "customers also liked"
    popular(6)                                   # the popular list

``exclude`` takes an item, a primary key, or a list or queryset of either; the list still
has ``limit`` items when the live run stored enough.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Manager, Model, QuerySet

from .models import Recommendation, SimilarItem


def excluded_pks(exclude) -> frozenset[str]:
    """The primary keys in ``exclude`` (an item, a primary key, or a list or queryset of
    either), as strings, so that ``5`` and ``"5"`` name the same item.

    An unevaluated queryset costs one query (of its primary keys only); pass a list, or a
    queryset already evaluated or prefetched, to avoid it.
    """
    if exclude is None or isinstance(exclude, str) and not exclude:  # "": a template variable that does not resolve
        return frozenset()
    if isinstance(exclude, Manager):
        exclude = exclude.all()
    if isinstance(exclude, QuerySet) and exclude._result_cache is None:
        exclude = exclude.values_list("pk", flat=True)
    if isinstance(exclude, (str, bytes, Model)) or not isinstance(exclude, Iterable):
        exclude = [exclude]
    pks = (getattr(x, "pk", x) for x in exclude)
    return frozenset(str(pk) for pk in pks if pk is not None and pk != "")


def without(items: Iterable, excluded: frozenset[str], limit: int) -> list:
    """The first ``limit`` of ``items`` whose primary key is not in ``excluded``."""
    return [item for item in items if str(item.pk) not in excluded][:limit]


def recommend_for(user, limit: int = 6, *, exclude=None) -> list:
    """Items for ``user`` (anonymous or ``None``: the popular list), best first."""
    from . import ondemand
    from .cache import generation

    excluded = excluded_pks(exclude)
    rows = Recommendation.objects.for_user(user).top(limit + len(excluded))
    if rows and all(row.user_id is None for row in rows) and rows[0].run_on_demand not in (None, "", "0", 0):
        # No stored list, and the run scores some customers on demand (ACTIVE_DAYS).
        items = ondemand.items_for(user, limit + len(excluded), generation(rows[0].run_id, rows[0].run_created))
        if items is not None:
            return without(items, excluded, limit)
    return without((row.item for row in rows), excluded, limit)


def similar_to(item, limit: int = 6, *, exclude=None) -> list:
    """Items like ``item`` (an instance or its primary key), best first; empty if unknown."""
    excluded = excluded_pks(exclude)
    rows = SimilarItem.objects.for_item(item)[: limit + len(excluded)]
    return without((row.similar for row in rows), excluded, limit)


def refresh_for(user) -> None:
    """Tell the app that ``user`` bought something outside a model save (``bulk_create``):
    their cached lists are dropped and their list is rescored in the background."""
    from .signals import enqueue_rescore

    enqueue_rescore(getattr(user, "pk", user))


def popular(limit: int = 6, *, recent: bool = False, exclude=None) -> list:
    """The live popular list (``recent=True``: popular lately)."""
    excluded = excluded_pks(exclude)
    rows = Recommendation.objects.popular("recent" if recent else "popular")[: limit + len(excluded)]
    return without((row.item for row in rows), excluded, limit)
