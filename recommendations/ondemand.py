"""Lists of customers without a stored list (``ACTIVE_DAYS``), scored when they first ask.

The live run's model is loaded once per run and process; one customer's top N then takes a
fraction of a millisecond, and reading their items is the read path's one query.  The run's
artifact and whether it has such customers are cached per run (one query when not).
"""

from __future__ import annotations

import logging

from django.core.cache import caches

from .conf import app_settings

logger = logging.getLogger(__name__)


def _info_key(gen: str) -> str:
    return f"recommendations:run-info:{gen}"


def remember(gen: str, run) -> None:
    """Cache what :func:`run_info` returns for a run going live (no query on the next read)."""
    info = {"id": run.pk, "artifact": run.artifact, "record": run.artifact_record,
            "on_demand": bool((run.counts or {}).get("customers_on_demand"))}  # fmt: skip
    try:
        caches[app_settings.CACHE_ALIAS].set(_info_key(gen), info, app_settings.CACHE_TIMEOUT)
    except Exception as exc:
        logger.warning("recommendations cache unavailable (%s); the run's details are read when needed", exc)


def run_info(gen: str, *, read: bool = True) -> dict | None:
    """``{"id", "artifact", "record", "on_demand"}`` of the run named ``gen``, cached (put
    there when the run went live); read from the database when not cached, unless ``read``
    is False (a reader that would otherwise cost every customer a query)."""
    from .models import TrainingRun

    cache = caches[app_settings.CACHE_ALIAS]
    try:
        found = cache.get(_info_key(gen))
    except Exception:
        found = None
    if isinstance(found, dict) and {"id", "artifact", "record", "on_demand"} <= set(found):
        return found
    if not read:
        return None
    try:
        run_id = int(str(gen).split(".", 1)[0])
    except ValueError:
        return None
    row = TrainingRun.objects.filter(pk=run_id).values("artifact", "artifact_record", "counts").first()
    if row is None:
        return None
    info = {"id": run_id, "artifact": row["artifact"], "record": row["artifact_record"],
            "on_demand": bool((row["counts"] or {}).get("customers_on_demand"))}  # fmt: skip
    try:
        cache.set(_info_key(gen), info, app_settings.CACHE_TIMEOUT)
    except Exception:
        pass
    return info


def items_for(user, limit: int, gen: str | None, *, read: bool = True) -> list | None:
    """The customer's items scored on demand, best first (at most ``limit``); None when the
    customer has a stored list, or the live run has no customers scored on demand (or, with
    ``read`` False, when the run's details are not cached)."""
    from . import services
    from .querysets import items_for_user

    if gen is None or user is None or not getattr(user, "is_authenticated", False):
        return None
    info = run_info(gen, read=read)
    if not info or not info["on_demand"]:
        return None
    try:
        picks = services.on_demand_picks(info["id"], info["artifact"], info["record"], user.pk)
    except Exception:  # a model that does not fit: the stored path (popular) rather than an error page
        logger.exception("recommendations: scoring customer %s on demand failed", user.pk)
        return None
    if picks is None:
        return None
    keys, _scores = picks
    rank = {str(key): i for i, key in enumerate(keys.tolist())}
    items = sorted(items_for_user(user.pk, keys.tolist()), key=lambda item: rank.get(str(item.pk), len(rank)))
    return items[:limit] or None
