"""JSON endpoints: the signed-in customer's list, and items similar to one item.

Each item is named by the field ``ITEM_KEY`` names (its last part: ``"sku"`` for
``"details__sku"``; for ``"pk"`` the primary key's name, e.g. ``"id"``).  ``limit`` is
clamped to 1…``LIST_SIZE`` (6 when it is not a number).  An unknown item answers 404 with
``{"error": …}``, and so does a key no item can have (NUL, or not a number for an integer
key).  An item's ``url`` is its ``get_absolute_url()``, or null when that raises
``NoReverseMatch`` (a row whose key cannot be part of its page's address): one such row
never takes a list down.  GET and HEAD only.
"""

from __future__ import annotations

from django.apps import apps
from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.urls import NoReverseMatch
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_safe

from . import cache
from .conf import app_settings


def _key_name() -> str:
    """The JSON name of an item's key: the last part of ``ITEM_KEY``, or the primary key's name."""
    name = app_settings.ITEM_KEY.rsplit("__", 1)[-1]
    if name == "pk":
        return apps.get_model(app_settings.ITEM_MODEL)._meta.pk.name
    return name


def _key_value(item) -> str | None:
    value = item
    for part in app_settings.ITEM_KEY.split("__"):
        value = getattr(value, part, None)
    return None if value is None else str(value)


def _item_json(item, rank: int, key_name: str) -> dict:
    data = {"rank": rank, key_name: _key_value(item)}
    data.setdefault("title", str(item))  # an ITEM_KEY of "title" keeps its own value
    if hasattr(item, "get_absolute_url"):
        try:
            url = item.get_absolute_url()
        except NoReverseMatch:
            url = None
        data.setdefault("url", url)
    return data


def _items_json(items) -> list[dict]:
    key_name = _key_name()
    return [_item_json(item, i, key_name) for i, item in enumerate(items, 1)]


@require_safe
def me(request: HttpRequest) -> JsonResponse:
    """``GET /recommendations/me/?limit=N``: the signed-in customer's list (never anyone
    else's); anonymous visitors get the popular list.  Private: varies on the cookie."""
    limit = _limit(request)
    user = request.user if request.user.is_authenticated else None
    items, personal = cache.recommendations_for(user, limit)
    response = JsonResponse(
        {
            "user": request.user.get_username() if user else None,
            "personal": personal,
            "items": _items_json(items),
        }
    )
    patch_cache_control(response, private=True, max_age=0, must_revalidate=True)
    patch_vary_headers(response, ["Cookie"])
    return response


@require_safe
def similar(request: HttpRequest, key: str) -> JsonResponse:
    """``GET /recommendations/similar/<key>/?limit=N``: items like that one, with the
    requested key echoed under the key's name (``{"product": key, "items": […]}``)."""
    model = apps.get_model(app_settings.ITEM_MODEL)
    item = None
    # No stored key holds NUL, and PostgreSQL refuses it even in a query: no need to ask.
    if "\x00" not in key:
        try:
            item = model._default_manager.filter(**{app_settings.ITEM_KEY: key}).only("pk").first()
        except (ValueError, ValidationError):  # "abc" for an integer key, a malformed UUID
            pass
    if item is None:
        return JsonResponse({"error": "No such item."}, status=404)
    items = cache.similar_to(item, _limit(request))
    response = JsonResponse({_key_name(): key, "items": _items_json(items)})
    patch_cache_control(response, public=True, max_age=300)
    return response


def _limit(request: HttpRequest) -> int:
    try:
        return max(1, min(int(request.GET.get("limit", 6)), app_settings.LIST_SIZE))
    except ValueError:
        return 6
