"""Template tags for "You might like" and "Readers also liked" boxes.

    {% load recommendations %}
    {% you_might_like request.user limit=6 %}
    {% similar_items book limit=6 %}
    {% recommendations_for request.user limit=6 as recs %}

Each costs at most one SQL query (the items and their ``ITEM_SELECT_RELATED`` relations in
the same query) and none when cached.  An error inside a tag is logged; the box then shows
the popular list or nothing, never an error page.
"""

from __future__ import annotations

import logging

from django import template
from django.utils.translation import gettext_lazy as _

from .. import cache

logger = logging.getLogger("recommendations")
register = template.Library()


def _safe(fn, fallback):
    try:
        return fn()
    except Exception:
        logger.exception("recommendations template tag failed; rendering the fallback")
        return fallback()


@register.inclusion_tag("recommendations/you_might_like.html", takes_context=True)
def you_might_like(context, user, limit: int = 6):
    """The customer's picks under "You might like"; for anonymous visitors and customers
    without a list, the popular list under "Popular right now".

    Usage: ``{% you_might_like request.user limit=6 %}``.  Override the template
    ``recommendations/you_might_like.html`` to change the markup.
    """
    items, personal = _safe(
        lambda: cache.recommendations_for(user, int(limit)),
        lambda: _safe(lambda: cache.recommendations_for(None, int(limit)), lambda: ([], False)),
    )
    return {
        "items": items,
        "personal": personal,
        "heading": _("You might like") if personal else _("Popular right now"),
        "request": context.get("request"),
        "user": user,
    }


@register.inclusion_tag("recommendations/similar_items.html", takes_context=True)
def similar_items(context, item, limit: int = 6):
    """Items like ``item`` under "Readers also liked"; renders nothing for an unknown item.

    Usage: ``{% similar_items book limit=6 %}``.
    """
    items = _safe(lambda: cache.similar_to(item, int(limit)), list)
    return {"items": items, "heading": _("Readers also liked"), "item": item, "request": context.get("request")}


@register.simple_tag
def recommendations_for(user, limit: int = 6) -> list:
    """The list itself, for your own markup.

    Usage: ``{% recommendations_for request.user limit=6 as recs %}{% for item in recs %}…``
    """
    items, _personal = _safe(lambda: cache.recommendations_for(user, int(limit)), lambda: ([], False))
    return items
