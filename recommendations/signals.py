"""Rescore a customer when they buy: a saved row of an ``"exclude"`` source (an order line)
drops their cached lists and, once the transaction commits, enqueues ``rescore_user``.

Connected in ``AppConfig.ready()`` when ``RESCORE_ON_SAVE`` is on.  ``bulk_create`` sends
no signals: after a bulk import, call ``recommendations.api.refresh_for(user)`` yourself.
"""

from __future__ import annotations

import logging
from functools import partial

from django.apps import apps
from django.db import transaction
from django.db.models.constants import LOOKUP_SEP
from django.db.models.signals import post_delete, post_save

from .conf import app_settings

logger = logging.getLogger(__name__)


def user_id_of(instance, path: str):
    """Follow a ``__`` path from a saved row to its user's primary key (``order__user``)."""
    *hops, last = path.split(LOOKUP_SEP)
    obj = instance
    for hop in hops:
        obj = getattr(obj, hop, None)
        if obj is None:
            return None
    field = obj._meta.get_field(last)
    return getattr(obj, field.attname) if field.is_relation else getattr(obj, last)


def enqueue_rescore(user_id) -> None:
    """Drop the customer's cached lists (now, and again once the purchase is committed, so
    that a list read in between is not kept); then rescore them in the background."""
    from . import cache, tasks

    cache.user_changed(user_id)

    def send():
        cache.user_changed(user_id)
        # An order of several lines saves several rows: one rescore is enough.
        if not cache.claim(f"recommendations:rescore-queued:{user_id}", seconds=2):
            return
        try:
            # One quick attempt: a purchase must not wait for (or fail because of) the broker.
            tasks.rescore_user.apply_async(args=[user_id], retry=False)
        except Exception as exc:
            logger.warning("Could not queue rescore_user(%s): %s", user_id, exc)

    transaction.on_commit(send)


def _on_save(sender, instance, created, *, path: str, **kwargs) -> None:
    try:
        user_id = user_id_of(instance, path)
    except Exception as exc:
        logger.warning("recommendations: cannot find the user of %r (%s)", instance, exc)
        return
    if user_id is not None:
        enqueue_rescore(user_id)


def _on_item_change(sender, **kwargs) -> None:
    from . import cache

    cache.catalogue_changed()
    transaction.on_commit(cache.catalogue_changed)  # again: a box read before the commit is not kept


def connect() -> None:
    # An item saved (made unavailable, repriced) or deleted: cached boxes are re-read.
    item_model = apps.get_model(app_settings.ITEM_MODEL)
    post_save.connect(_on_item_change, sender=item_model, weak=False, dispatch_uid="recommendations-item-saved")
    post_delete.connect(_on_item_change, sender=item_model, weak=False, dispatch_uid="recommendations-item-deleted")
    if not app_settings.RESCORE_ON_SAVE:
        return
    for source in app_settings.SOURCES:
        if source.get("exclude"):
            model = apps.get_model(source["model"])
            post_save.connect(
                partial(_on_save, path=source["user"]), sender=model, weak=False,
                dispatch_uid=f"recommendations-rescore-{source['name']}",
            )  # fmt: skip
