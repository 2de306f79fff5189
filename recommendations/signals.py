"""The app's signals for the host, and how a purchase rescores its customer.

Signals (``sender`` is :class:`~recommendations.models.TrainingRun`), sent once the run's
state is committed; a receiver that raises is logged and never undoes the run::

    from django.dispatch import receiver
    from recommendations.signals import run_failed, run_live

    @receiver(run_live)
    def announce(sender, run, **kwargs):        # run: the TrainingRun now serving
        ...

    @receiver(run_failed)
    def alert(sender, run, error, **kwargs):    # run.status: failed, timed_out or not_enough_data
        ...

Rescoring: a saved row of an ``"exclude"`` source (an order line) drops the customer's
cached lists and, once the transaction commits, sends ``rescore_user`` (see ``dispatch``).
Connected in ``AppConfig.ready()`` when ``RESCORE_ON_SAVE`` is on.  ``bulk_create`` sends
no signals: after a bulk import, call ``recommendations.api.refresh_for(user)`` yourself.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction
from django.db.models.constants import LOOKUP_SEP
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal

from .conf import app_settings, installed_model

logger = logging.getLogger(__name__)

run_live = Signal()  # run=
run_failed = Signal()  # run=, error=


def send_after_commit(signal: Signal, run, **kwargs) -> None:
    """Send ``signal`` for ``run`` once the current transaction commits (at once outside one)."""

    def send() -> None:
        for receiver, result in signal.send_robust(sender=type(run), run=run, **kwargs):
            if isinstance(result, Exception):
                logger.error("A receiver of %s (%r) raised for run #%s: %r", "run_live" if signal is run_live else
                             "run_failed", receiver, run.pk, result, exc_info=result)  # fmt: skip

    transaction.on_commit(send)


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
    from . import cache, dispatch, tasks

    cache.user_changed(user_id)

    def send():
        cache.user_changed(user_id)
        # An order of several lines saves several rows: one rescore is enough.
        if not cache.claim(f"recommendations:rescore-queued:{user_id}", seconds=2):
            return
        try:
            # Bounded by PUBLISH_TIMEOUT: a purchase must not wait for (or fail because of) the broker.
            dispatch.send(tasks.rescore_user, [user_id])
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


def _model(label):
    """The model named ``label``, or None (logged): the system checks report the key, and a
    traceback here would stop every command, runserver's reloader too."""
    model = installed_model(label)
    if model is None:
        logger.warning("recommendations: %r is not an installed model; run manage.py check.", label)
    return model


def connect() -> None:
    """Connect what the settings name; whatever they name wrongly is left for the checks."""
    # An item saved (made unavailable, repriced) or deleted: cached boxes are re-read.
    item_model = _model(app_settings.ITEM_MODEL)
    if item_model is not None:
        post_save.connect(_on_item_change, sender=item_model, weak=False, dispatch_uid="recommendations-item-saved")
        post_delete.connect(_on_item_change, sender=item_model, weak=False, dispatch_uid="recommendations-item-deleted")
    sources = app_settings.SOURCES
    if not app_settings.RESCORE_ON_SAVE or not isinstance(sources, (list, tuple)):
        return
    for source in sources:
        if isinstance(source, dict) and source.get("exclude") and (model := _model(source.get("model"))) is not None:
            post_save.connect(
                partial(_on_save, path=source.get("user", "")), sender=model, weak=False,
                dispatch_uid=f"recommendations-rescore-{source.get('name')}",
            )  # fmt: skip
