"""Cached reads for the widgets: per customer and per live run, never fatal.

Keys carry the live run's id (the "generation", kept in the cache itself and replaced when a
run goes live) and a per-customer version (bumped when the customer buys or is rescored),
so nothing is ever invalidated by scanning keys.  A cold read is exactly the one query of
the read path; a warm read is no query.  Any cache error (Redis down) counts as a miss.
"""

from __future__ import annotations

import hashlib
import logging
import uuid

from django.core.cache import caches
from django.db import router
from django.utils.translation import get_language

from . import ondemand
from .api import excluded_pks, without
from .conf import app_settings
from .models import Recommendation, SimilarItem

logger = logging.getLogger(__name__)

GEN_KEY = "recommendations:live-run"
# How long a process trusts its idea of the live run.  With a shared cache (Redis) a publish
# updates it at once; with a per-process cache (local memory, several server processes) a
# run published elsewhere is noticed within this many seconds, at one query per process.
GEN_TIMEOUT = 30


def _cache():
    return caches[app_settings.CACHE_ALIAS]


def _get_many(keys: list[str]) -> dict | None:
    """The cached values of ``keys``; None when the cache cannot be reached."""
    try:
        return _cache().get_many(keys)
    except Exception as exc:
        logger.warning("recommendations cache unavailable (%s); reading from the database", exc)
        return None


def _set(key: str, value, timeout: int | None = None) -> None:
    try:
        _cache().set(key, value, app_settings.CACHE_TIMEOUT if timeout is None else timeout)
    except Exception as exc:
        logger.warning("recommendations cache unavailable (%s); not caching %s", exc, key)


CATALOGUE_KEY = "recommendations:catalogue-version"


def generation(run_id: int, created) -> str:
    """A run's name in cache keys: its id and when it was created, so that a database
    recreated with a Redis that kept its keys (ids start again at 1) never meets old ones."""
    return f"{run_id}.{int(created.timestamp())}"


def published(gen: str) -> None:
    """A run went live: every cached list of older runs is now out of date."""
    _set(GEN_KEY, gen, GEN_TIMEOUT)


def _run_id(gen) -> int:
    try:
        return int(str(gen).split(".", 1)[0])
    except ValueError:
        return -1


def _new_version() -> str:
    return uuid.uuid4().hex[:12]


def _bump(key: str) -> None:
    # A fresh random token, not a counter: a token evicted from the cache comes back as a
    # new one (see _versions), never as an old value that old entries were cached under.
    try:
        _cache().set(key, _new_version(), None)
    except Exception as exc:
        logger.warning("recommendations cache unavailable (%s); %s not bumped", exc, key)


def user_changed(user_id) -> None:
    """The customer bought something or was rescored: drop their cached lists."""
    _bump(f"recommendations:user-version:{user_id}")


def claim(key: str, seconds: int) -> bool:
    """True for the first caller within ``seconds`` (and whenever the cache is down)."""
    try:
        return _cache().add(key, 1, seconds) is not False  # None: a cache that ignores its errors
    except Exception:
        return True


def catalogue_changed() -> None:
    """An item was saved or deleted (made unavailable, say): drop every cached list."""
    _bump(CATALOGUE_KEY)


def _versions(found: dict, keys: list[str]) -> list[str]:
    versions = []
    for key in keys:
        value = found.get(key)
        if value is None:
            value = _new_version()
            try:
                if not _cache().add(key, value, None):
                    value = _cache().get(key) or value
            except Exception:
                pass
        versions.append(str(value))
    return versions


def _read(key_tail: str, extra_keys: list[str], load, uncached=None):
    """``load()`` returns ``(value, generation)``; cached under the live run's generation and the
    given version keys (the catalogue's, the customer's).  Returns ``(value, generation)``.
    ``uncached()``, when given, replaces ``load()`` while the cache is down."""
    version_keys = [CATALOGUE_KEY, *extra_keys]
    found = _get_many([GEN_KEY, *version_keys])
    if found is None:  # the cache is down: read through
        return (uncached or load)()
    gen = found.get(GEN_KEY)
    parts = ":".join(_versions(found, version_keys))
    key = f"recommendations:{gen}:{key_tail}:{parts}"
    if gen is not None:
        hit = (_get_many([key]) or {}).get(key)
        if hit is not None:
            return hit, gen
    value, loaded = load()
    if loaded is not None:
        if gen != loaded:
            if gen is None or _run_id(loaded) > _run_id(gen):
                published(loaded)  # never move the generation back to an older run
            key = f"recommendations:{loaded}:{key_tail}:{parts}"
        _set(key, value)
    return value, loaded


def _user_keys(user) -> tuple[str, list[str]]:
    if user is not None and getattr(user, "is_authenticated", False):
        return f"user:{user.pk}", [f"recommendations:user-version:{user.pk}"]
    return "popular", []


# -- plain values only ---------------------------------------------------------------------------
# A cache holds plain values (lists, strings, numbers), never pickled objects: a host's Redis
# cache may use a JSON serializer, and a pickle read from a shared cache runs whatever code
# whoever could write to it put there.  Items travel as their concrete fields' values (and
# those of their ITEM_SELECT_RELATED relations) and are rebuilt with ``Model.from_db``, as
# the ORM builds them from rows: no query.  Written by hand: Django's serializers build
# unsaved objects through ``__init__``, lose loaded relations and take ten times as long.


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)  # Decimal, UUID: to_python reads them back


def _pack(obj, paths: list[str]) -> list:
    fields = obj._meta.concrete_fields
    related = {}
    for head in dict.fromkeys(path.split("__", 1)[0] for path in paths):
        rest = [p.split("__", 1)[1] for p in paths if p.startswith(f"{head}__")]
        cached = obj._state.fields_cache.get(head) if hasattr(obj._state, "fields_cache") else None
        if cached is not None:
            related[head] = _pack(cached, rest)
    return [[_plain(f.value_from_object(obj)) for f in fields], related]


def _unpack(model, packed: list):
    values, related = packed
    fields = model._meta.concrete_fields
    obj = model.from_db(router.db_for_read(model), [f.attname for f in fields],
                        [f.to_python(v) for f, v in zip(fields, values, strict=True)])  # fmt: skip
    for name, data in related.items():
        field = model._meta.get_field(name)
        field.set_cached_value(obj, _unpack(field.related_model, data))
    return obj


def _pack_items(items: list) -> list:
    return [_pack(item, list(app_settings.ITEM_SELECT_RELATED)) for item in items]


def _unpack_items(packed: list) -> list:
    from django.apps import apps

    model = apps.get_model(app_settings.ITEM_MODEL)
    return [_unpack(model, data) for data in packed]


def _load_for_user(user, limit: int):
    """``((packed items, personal_count), generation)``: the personal rows come first.

    A customer the live run scores on demand (``ACTIVE_DAYS``) is recognised before the query
    when the live run and its details are cached (as publishing leaves them), so their items
    are the one query; otherwise the stored list's query comes first, and finds none of theirs.
    """
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    known = (_get_many([GEN_KEY]) or {}).get(GEN_KEY) if authenticated else None
    if known is not None:
        items = ondemand.items_for(user, limit, known, read=False)
        if items is not None:
            return [_pack_items(items), len(items)], known
    rows = Recommendation.objects.for_user(user).top(limit)
    personal = sum(row.user_id is not None for row in rows)
    gen = generation(rows[0].run_id, rows[0].run_created) if rows else None
    if authenticated and rows and not personal and rows[0].run_on_demand not in (None, "", "0", 0):
        items = ondemand.items_for(user, limit, gen)
        if items is not None:
            return [_pack_items(items), len(items)], gen
    return [_pack_items([row.item for row in rows]), personal], gen


def _pick(loaded: tuple[list, int], excluded: frozenset[str], limit: int) -> tuple[list, bool]:
    """``(items, personal)`` from a loaded list, without the excluded items."""
    items, personal_count = loaded
    kept = [(i, item) for i, item in enumerate(items) if str(item.pk) not in excluded][:limit]
    return [item for _i, item in kept], any(i < personal_count for i, _item in kept)


def _load_similar(pk, limit: int):
    rows = list(SimilarItem.objects.for_item(pk)[:limit])
    gen = generation(rows[0].run_id, rows[0].run_created) if rows else None
    return _pack_items([row.similar for row in rows]), gen


# The lists are cached by length only: a box that excludes n items reads the list of
# limit + n and filters it here, so pages that exclude different items share one entry.
# A box's HTML is read from the list's entry when it is not cached itself, so a page that
# excludes something new costs a rendering, not a query.


def _list_for_user(user, n: int):
    who, versions = _user_keys(user)
    load = lambda: _load_for_user(user, n)  # noqa: E731
    return _unpacked(_read(f"list:{who}:{n}", versions, load), load, personal=True)


def _similar_list(pk, n: int):
    load = lambda: _load_similar(pk, n)  # noqa: E731
    return _unpacked(_read(f"similar:{pk}:{n}", [], load), load, personal=False)


def _unpacked(value_and_gen, load, *, personal: bool):
    """The items of a cached (or just loaded) list; a cached value of the wrong shape (written
    by something else) is read again from the database, never an error page."""
    value, gen = value_and_gen
    for attempt in (1, 2):
        try:
            if personal:
                packed, count = value
                return (_unpack_items(packed), int(count)), gen
            return _unpack_items(value), gen
        except Exception as exc:
            if attempt == 2:
                raise
            logger.warning("recommendations: a cached list does not read (%s: %s); reading the database",
                           type(exc).__name__, exc)  # fmt: skip
            value, gen = load()
    raise AssertionError("unreachable")


def recommendations_for(user, limit: int, exclude=None) -> tuple[list, bool]:
    """``(items, personal)``: the customer's picks (or the popular list, ``personal`` False),
    without the items in ``exclude``."""
    excluded = excluded_pks(exclude)
    loaded, _gen = _list_for_user(user, limit + len(excluded))
    return _pick(loaded, excluded, limit)


def similar_to(item, limit: int, exclude=None) -> list:
    """Items like ``item``, without the items in ``exclude``."""
    excluded = excluded_pks(exclude)
    items, _gen = _similar_list(getattr(item, "pk", item), limit + len(excluded))
    return without(items, excluded, limit)


def _variant(excluded: frozenset[str], heading) -> str:
    """A short, cache-safe name for what else shapes a rendered box (the excluded items, the
    heading, the language): any text may be in them, and memcached refuses spaces and long keys."""
    parts = (sorted(excluded), None if heading is None else str(heading), get_language())
    return hashlib.blake2b(repr(parts).encode(), digest_size=8).hexdigest()


def rendered_for_user(name: str, user, limit: int, render, exclude=None, heading=None) -> str:
    """A box's HTML for ``user``, cached like the list it shows: ``render(items, personal)``.
    Keyed also by the excluded items, the heading and the active language."""
    excluded = excluded_pks(exclude)
    n = limit + len(excluded)
    who, versions = _user_keys(user)

    def rendered(list_and_gen):
        loaded, gen = list_and_gen
        return render(*_pick(loaded, excluded, limit)), gen

    def uncached():
        (packed, personal), gen = _load_for_user(user, n)
        return rendered(((_unpack_items(packed), personal), gen))

    html, _gen = _read(
        f"html:{name}:{who}:{limit}:{_variant(excluded, heading)}", versions,
        lambda: rendered(_list_for_user(user, n)), uncached=uncached,
    )  # fmt: skip
    return html


def rendered_similar(name: str, item, limit: int, render, exclude=None, heading=None) -> str:
    """The similar box's HTML for ``item``: ``render(items)``; keyed like ``rendered_for_user``."""
    excluded = excluded_pks(exclude)
    n = limit + len(excluded)
    pk = getattr(item, "pk", item)

    def rendered(list_and_gen):
        items, gen = list_and_gen
        return render(without(items, excluded, limit)), gen

    def uncached():
        packed, gen = _load_similar(pk, n)
        return rendered((_unpack_items(packed), gen))

    html, _gen = _read(
        f"html:{name}:{pk}:{limit}:{_variant(excluded, heading)}", [],
        lambda: rendered(_similar_list(pk, n)), uncached=uncached,
    )  # fmt: skip
    return html
