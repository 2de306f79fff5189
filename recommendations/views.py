"""JSON endpoints: the signed-in customer's list, and items similar to one item."""

from __future__ import annotations

from django.apps import apps
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_GET

from . import cache
from .conf import app_settings


def _item_json(item, rank: int) -> dict:
    data = {"rank": rank, "product": str(getattr(item, app_settings.ITEM_KEY)), "title": str(item)}
    if hasattr(item, "get_absolute_url"):
        data["url"] = item.get_absolute_url()
    return data


@require_GET
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
            "items": [_item_json(item, i) for i, item in enumerate(items, 1)],
        }
    )
    patch_cache_control(response, private=True, max_age=0, must_revalidate=True)
    patch_vary_headers(response, ["Cookie"])
    return response


@require_GET
def similar(request: HttpRequest, key: str) -> JsonResponse:
    """``GET /recommendations/similar/<product>/?limit=N``: items like that one."""
    model = apps.get_model(app_settings.ITEM_MODEL)
    try:
        item = model._default_manager.filter(**{app_settings.ITEM_KEY: key}).only("pk").first()
    except (ValueError, ValidationError):  # "abc" for an integer key, a malformed UUID
        item = None
    if item is None:
        raise Http404("No such item")
    items = cache.similar_to(item, _limit(request))
    response = JsonResponse({"product": key, "items": [_item_json(x, i) for i, x in enumerate(items, 1)]})
    patch_cache_control(response, public=True, max_age=300)
    return response


def _limit(request: HttpRequest) -> int:
    try:
        return max(1, min(int(request.GET.get("limit", 6)), app_settings.LIST_SIZE))
    except ValueError:
        return 6
