"""Template tags for the "You might like" and "Customers also liked" boxes.

    {% load recommendations %}
    {% you_might_like request.user limit=6 %}
    {% similar_items item limit=6 exclude=item heading="Readers also liked" %}
    {% recommendations_for request.user limit=6 exclude=item as recs %}

``exclude=`` takes an item, a primary key, or a list or queryset of either: those items are
left out and the box still shows ``limit`` items when the live run stored enough.
``heading=`` replaces the box's heading.

Each costs at most one SQL query (the items and their ``ITEM_SELECT_RELATED`` relations in
the same query) and none when cached.  The boxes' HTML is cached too, per customer (or item),
live run, excluded items, heading and language, since rendering a dozen item cards costs
more than the query it replaces; set ``RECOMMENDATIONS["CACHE_RENDERED_BOXES"] = False`` if
your override of the templates shows per-request data.

In production an error inside a tag is logged and the box shows the popular list or nothing,
never an error page.  With ``DEBUG`` (or the template engine's ``debug`` option) on, the
error is raised instead, so that a mistake in an overridden box template shows.
"""

from __future__ import annotations

import logging

from django import template
from django.conf import settings
from django.template import Context
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from .. import cache
from ..conf import app_settings

logger = logging.getLogger("recommendations")
register = template.Library()

YOU_MIGHT_LIKE = "recommendations/you_might_like.html"
SIMILAR_ITEMS = "recommendations/similar_items.html"

# The app's default headings: neutral, for any shop.  A shop says its own with ``heading=``
# or in its override of the templates.
PERSONAL_HEADING = _("You might like")
POPULAR_HEADING = _("Popular right now")
SIMILAR_HEADING = _("Customers also liked")


def _debug(context) -> bool:
    engine = getattr(getattr(context, "template", None), "engine", None)
    return settings.DEBUG or getattr(engine, "debug", False)


def _safe(context, fn, fallback):
    try:
        return fn()
    except Exception:
        if _debug(context):
            raise
        logger.exception("recommendations template tag failed; rendering the fallback")
        return fallback()


def _render(context, name: str, values: dict) -> str:
    """Render an app template the way an inclusion tag does (no context processors)."""
    tpl = context.template.engine.get_template(name)
    return tpl.render(Context(values, autoescape=context.autoescape))


def _box(context, user, items, personal, heading) -> str:
    if heading is None:
        heading = PERSONAL_HEADING if personal else POPULAR_HEADING
    return _render(context, YOU_MIGHT_LIKE, {
        "items": items,
        "personal": personal,
        "heading": heading,
        "request": context.get("request"),
        "user": user,
    })  # fmt: skip


@register.simple_tag(takes_context=True)
def you_might_like(context, user, limit: int = 6, exclude=None, heading=None):
    """The customer's picks under "You might like"; for anonymous visitors and customers
    without a list, the popular list under "Popular right now".

    Usage: ``{% you_might_like request.user limit=6 exclude=item heading="Picked for you" %}``.
    ``exclude`` and ``heading`` are optional; ``heading`` replaces both headings.  Override
    the template ``recommendations/you_might_like.html`` to change the markup.
    """

    def personal_box() -> str:
        n = int(limit)
        if app_settings.CACHE_RENDERED_BOXES:
            return cache.rendered_for_user(
                "you_might_like", user, n, lambda items, personal: _box(context, user, items, personal, heading),
                exclude=exclude, heading=heading,
            )  # fmt: skip
        items, personal = cache.recommendations_for(user, n, exclude)
        return _box(context, user, items, personal, heading)

    def popular_box() -> str:
        items, personal = cache.recommendations_for(None, int(limit), exclude)
        return _box(context, user, items, personal, heading)

    return mark_safe(_safe(context, personal_box, lambda: _safe(context, popular_box, str)))


@register.simple_tag(takes_context=True)
def similar_items(context, item, limit: int = 6, exclude=None, heading=None):
    """Items like ``item`` under "Customers also liked"; renders nothing for an unknown item.

    Usage: ``{% similar_items item limit=6 exclude=item heading="Readers also liked" %}``;
    ``exclude`` and ``heading`` are optional.  Override the template
    ``recommendations/similar_items.html`` to change the markup.
    """

    def render(items) -> str:
        return _render(context, SIMILAR_ITEMS, {
            "items": items, "heading": SIMILAR_HEADING if heading is None else heading, "item": item,
            "request": context.get("request"),
        })  # fmt: skip

    def box() -> str:
        n = int(limit)
        if app_settings.CACHE_RENDERED_BOXES:
            return cache.rendered_similar("similar_items", item, n, render, exclude=exclude, heading=heading)
        return render(cache.similar_to(item, n, exclude))

    return mark_safe(_safe(context, box, str))


@register.simple_tag(takes_context=True)
def recommendations_for(context, user, limit: int = 6, exclude=None) -> list:
    """The list itself, for your own markup.

    Usage: ``{% recommendations_for request.user limit=6 exclude=item as recs %}{% for item in recs %}…``
    """
    items, _personal = _safe(context, lambda: cache.recommendations_for(user, int(limit), exclude), lambda: ([], False))
    return items
