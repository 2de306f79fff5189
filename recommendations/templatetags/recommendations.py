"""Template tags for "You might like" and "Readers also liked" boxes.

    {% load recommendations %}
    {% you_might_like request.user limit=6 %}
    {% similar_items book limit=6 %}
    {% recommendations_for request.user limit=6 as recs %}

Each costs at most one SQL query (the items and their ``ITEM_SELECT_RELATED`` relations in
the same query) and none when cached.  The boxes' HTML is cached too, per customer (or item)
and live run, since rendering a dozen item cards costs more than the query it replaces; set
``RECOMMENDATIONS["CACHE_RENDERED_BOXES"] = False`` if your override of the templates shows
per-request data.  An error inside a tag is logged; the box then shows the popular list or
nothing, never an error page.
"""

from __future__ import annotations

import logging

from django import template
from django.template import Context
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from .. import cache
from ..conf import app_settings

logger = logging.getLogger("recommendations")
register = template.Library()

YOU_MIGHT_LIKE = "recommendations/you_might_like.html"
SIMILAR_ITEMS = "recommendations/similar_items.html"


def _safe(fn, fallback):
    try:
        return fn()
    except Exception:
        logger.exception("recommendations template tag failed; rendering the fallback")
        return fallback()


def _render(context, name: str, values: dict) -> str:
    """Render an app template the way an inclusion tag does (no context processors)."""
    tpl = context.template.engine.get_template(name)
    return tpl.render(Context(values, autoescape=context.autoescape))


def _box(context, user, items, personal) -> str:
    return _render(context, YOU_MIGHT_LIKE, {
        "items": items,
        "personal": personal,
        "heading": _("You might like") if personal else _("Popular right now"),
        "request": context.get("request"),
        "user": user,
    })  # fmt: skip


@register.simple_tag(takes_context=True)
def you_might_like(context, user, limit: int = 6):
    """The customer's picks under "You might like"; for anonymous visitors and customers
    without a list, the popular list under "Popular right now".

    Usage: ``{% you_might_like request.user limit=6 %}``.  Override the template
    ``recommendations/you_might_like.html`` to change the markup.
    """
    limit = int(limit)

    def personal_box() -> str:
        if app_settings.CACHE_RENDERED_BOXES:
            return cache.rendered_for_user(
                "you_might_like", user, limit, lambda items, personal: _box(context, user, items, personal)
            )
        items, personal = cache.recommendations_for(user, limit)
        return _box(context, user, items, personal)

    def popular_box() -> str:
        items, personal = cache.recommendations_for(None, limit)
        return _box(context, user, items, personal)

    return mark_safe(_safe(personal_box, lambda: _safe(popular_box, str)))


@register.simple_tag(takes_context=True)
def similar_items(context, item, limit: int = 6):
    """Items like ``item`` under "Readers also liked"; renders nothing for an unknown item.

    Usage: ``{% similar_items book limit=6 %}``.
    """
    limit = int(limit)

    def render(items) -> str:
        return _render(context, SIMILAR_ITEMS, {
            "items": items, "heading": _("Readers also liked"), "item": item, "request": context.get("request"),
        })  # fmt: skip

    def box() -> str:
        if app_settings.CACHE_RENDERED_BOXES:
            return cache.rendered_similar("similar_items", item, limit, render)
        return render(cache.similar_to(item, limit))

    return mark_safe(_safe(box, str))


@register.simple_tag
def recommendations_for(user, limit: int = 6) -> list:
    """The list itself, for your own markup.

    Usage: ``{% recommendations_for request.user limit=6 as recs %}{% for item in recs %}…``
    """
    items, _personal = _safe(lambda: cache.recommendations_for(user, int(limit)), lambda: ([], False))
    return items
