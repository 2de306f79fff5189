"""The Python API: lists of items from the live run, one query each.

    from recommendations.api import recommend_for, similar_to, popular

    recommend_for(request.user, 6)   # the customer's picks; the popular list as a fallback
    similar_to(book, 6)              # "readers also liked"
    popular(6)                       # the popular list
"""

from __future__ import annotations

from .models import Recommendation, SimilarItem


def recommend_for(user, limit: int = 6) -> list:
    """Items for ``user`` (anonymous or ``None``: the popular list), best first."""
    return [row.item for row in Recommendation.objects.for_user(user).top(limit)]


def similar_to(item, limit: int = 6) -> list:
    """Items like ``item`` (an instance or its primary key), best first; empty if unknown."""
    return [row.similar for row in SimilarItem.objects.for_item(item)[:limit]]


def refresh_for(user) -> None:
    """Tell the app that ``user`` bought something outside a model save (``bulk_create``):
    their cached lists are dropped and their list is rescored in the background."""
    from .signals import enqueue_rescore

    enqueue_rescore(getattr(user, "pk", user))


def popular(limit: int = 6, *, recent: bool = False) -> list:
    """The live popular list (``recent=True``: popular lately)."""
    return [row.item for row in Recommendation.objects.popular("recent" if recent else "popular")[:limit]]
